#!/usr/bin/env python3
"""Prompt lookup's draft policy, simulated over recorded greedy outputs.

Greedy output does not depend on drafting, so one plain greedy run per prompt
fixes what every round of a speculative run would verify. This script records
those outputs (SmolLM2-135M-Instruct, the bundled Q4_1, chat-formatted, up to
``--max-tokens``) for the benchmark's prompts (bench_speculative.py) and for
held-out ones of the same kinds (rewrites, extraction, code edits, open chat),
then prints:

- how often the lookup's next token is the model's greedy one, by the length m
  of the agreement between the sequence's end and the copied source (the
  curve the session's priors 1 - 1.1 / (m + 0.35) were fitted to, on the
  held-out sets);
- the decode speed-up each policy would give (plain steps / speculative cost)
  under a round cost of 1 + c0 + c1 * k steps for k drafted tokens: ``old``
  (the latest match of the longest n-gram of 3 down to 1, one acceptance
  estimate per n-gram length starting at 0.5) and ``new`` (session.cpp: the
  longest agreement up to 16, an estimate per agreement length chained along
  the draft), and an ``oracle`` that drafts exactly the lookup's tokens that
  will be accepted.

    cd /tmp && python /path/to/benchmarks/draft_policy_sim.py --cost 0.13 0.41
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Callable

import bluelm_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import model_path  # noqa: E402
from bench_speculative import GROUNDED, OPEN_CHAT  # noqa: E402

LETTER = (
    "Dear Mr. Thompson, thank you for your letter of 14 May. We are sorry to hear that the "
    "washing machine you bought from our shop in Leeds stopped working after two weeks. Please "
    "bring it back to the shop with your receipt and we will repair or replace it free of charge. "
    "Yours sincerely, Anna Patel, Customer Service."
)
RECIPE = (
    "To make pancakes, mix two cups of flour, two eggs, one cup of milk and a pinch of salt in a "
    "large bowl. Heat a little butter in a pan over medium heat. Pour a small amount of batter "
    "into the pan and cook until bubbles appear, then flip and cook for another minute."
)
JS = """function countWords(text) {
  const words = text.split(" ");
  let count = 0;
  for (const word of words) {
    if (word.length > 0) {
      count = count + 1;
    }
  }
  return count;
}
"""
PY = """class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()

    def is_empty(self):
        return len(self.items) == 0
"""
CSV = "name,age,city\nAlice,34,Paris\nBob,28,Berlin\nCarla,45,Madrid\nDavid,39,Rome\n"
NEWS = (
    "A small bakery in the village of Millbrook has won a national award for its sourdough "
    "bread. The owner, James Carter, opened the bakery five years ago after leaving his job as an "
    "engineer. He says the secret is patience: each loaf rises for at least eighteen hours before "
    "it is baked."
)
GROUNDED_HELD_OUT = [
    f"Rewrite this letter so that it is more formal, keeping all the details:\n\n{LETTER}",
    f"Copy the following letter, but change the city Leeds to York:\n\n{LETTER}",
    f"Rewrite these instructions as a numbered list of steps:\n\n{RECIPE}",
    f"Repeat this text exactly, replacing 'pancakes' with 'crepes':\n\n{RECIPE}",
    "Rename the variable count to total in this JavaScript function and show the whole "
    f"function:\n\n```javascript\n{JS}```",
    f"Add comments to this code and show the whole code:\n\n```javascript\n{JS}```",
    "Add a method peek that returns the top item to this class and show the whole class:\n\n"
    f"```python\n{PY}```",
    f"Convert this CSV to a JSON list of objects:\n\n{CSV}",
    f"Convert this CSV to a markdown table:\n\n{CSV}",
    f"Extract the names of all people and places from this article:\n\n{NEWS}",
    f"Rewrite this article in the present tense:\n\n{NEWS}",
    "Fix any spelling mistakes in this text and show the corrected text: Teh quick brown fox "
    "jumpd over the lazy dog. It was a sunny day and the dog was sleeping under a big tree near "
    "the river.",
]
OPEN_HELD_OUT = [
    "Write a short poem about the sea.",
    "What is the difference between a virus and a bacterium?",
    "Give me three tips for learning a new language.",
    "How do airplanes stay in the air?",
    "Describe your ideal weekend.",
    "What should I cook for dinner tonight?",
    "Explain what a computer program is to a child.",
    "List some fun things to do on a rainy day.",
]
SETS = {
    "bench input-grounded": GROUNDED,
    "bench open chat": OPEN_CHAT,
    "held-out input-grounded": GROUNDED_HELD_OUT,
    "held-out open chat": OPEN_HELD_OUT,
}
Lookup = Callable[[list[int]], tuple[int, int]]  # -> (source start, agreement) or (-1, 0)


def longest_agreement(seq: list[int], cap: int) -> tuple[int, int]:
    """prompt_lookup.cpp's rule: the earlier position of the last token whose
    preceding tokens agree longest with the sequence's end (up to cap), the
    latest among equals; returns where its continuation starts and the length."""
    best_c, best_m = -1, 0
    for e in range(len(seq) - 2, -1, -1):
        if seq[e] != seq[-1]:
            continue
        m = 1
        while m < cap and e - m >= 0 and seq[e - m] == seq[len(seq) - 1 - m]:
            m += 1
        if m > best_m:
            best_c, best_m = e + 1, m
        if best_m >= cap:
            break
    return best_c, best_m


class Policy:
    """A draft policy: the lookup (agreement capped at ``cap``), an acceptance
    estimate per kind (weight 0.2 per verified draft token, 5% back to the
    prior per skipped draft) and the draft length that maximises expected
    tokens per round over 1 + c0 + c1 * k (session.cpp's draft_length)."""

    def __init__(
        self, cap: int, chained: bool, prior: Callable[[int], float], cost: tuple[float, float]
    ):
        self.cap, self.chained, self.prior, self.cost = cap, chained, prior, cost

    def kind(self, m: int, j: int) -> int:
        return min(m + j, 16) if self.chained else m

    def start(self) -> None:
        self.a = [self.prior(k) for k in range(40)]

    def propose(self, seq: list[int], room: int, eog: set[int]) -> tuple[list[int], int]:
        c, m = longest_agreement(seq, self.cap)
        if m == 0:
            return [], 0
        d: list[int] = []
        for t in seq[c:]:
            if len(d) >= room:
                break
            d.append(t)
            if t in eog:
                break
        c0, c1 = self.cost
        best, tokens, pk, k_best = 1.0, 1.0, 1.0, 0
        for k in range(1, len(d) + 1):
            pk *= self.a[self.kind(m, k - 1)]
            tokens += pk
            if tokens / (1 + c0 + c1 * k) > best:
                best, k_best = tokens / (1 + c0 + c1 * k), k
        if d and k_best == 0:
            b = self.kind(m, 0)
            self.a[b] += 0.05 * (self.prior(b) - self.a[b])
        return d[:k_best], m

    def feedback(self, m: int, n: int, accepted: int) -> None:
        for j in range(min(accepted + 1, n)):
            b = self.kind(m, j)
            self.a[b] += 0.2 * ((1.0 if j < accepted else 0.0) - self.a[b])


def simulate(
    policy: Policy | None,
    prompt: list[int],
    out: list[int],
    eog: set[int],
    n_draft: int,
    max_tokens: int,
    cost: tuple[float, float],
) -> tuple[float, float, int, int]:
    """(plain steps, speculative cost in steps, drafted, accepted); policy None: the oracle."""
    seq, pos = [*prompt, out[0]], 1
    spec = drafted = accepted = 0.0
    if policy:
        policy.start()
    while pos < len(out):
        room = max(0, min(n_draft, max_tokens - pos - 1))
        if policy:
            d, m = policy.propose(seq, room, eog) if room else ([], 0)
        else:
            c, m = longest_agreement(seq, 16)
            d = seq[c : c + room] if m else []
        i = 0
        while i < len(d) and pos + i < len(out) and d[i] == out[pos + i]:
            i += 1
        if not policy:
            d = d[:i]
        spec += 1.0 + (cost[0] + cost[1] * len(d) if d else 0.0)
        if d:
            drafted += len(d)
            accepted += i
            if policy:
                policy.feedback(m, len(d), i)
        got = min(i + 1, len(out) - pos)
        seq += out[pos : pos + got]
        pos += got
    ended = len(out) < max_tokens  # the end token's round: a plain step in both
    plain = len(out) - 1 + ended
    return plain, spec + ended, int(drafted), int(accepted)


def new_prior(m: int) -> float:
    return 0.5 if m == 0 else 1.0 - 1.1 / (m + 0.35)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--n-draft", type=int, default=8)
    ap.add_argument(
        "--cost",
        type=float,
        nargs=2,
        default=(0.13, 0.41),
        metavar=("C0", "C1"),
        help="the true round cost 1 + C0 + C1 * k the speed-ups are computed with",
    )
    args = ap.parse_args(argv)
    m = bluelm_cpp.Model(model_path("smollm2-q4_1"), n_ctx=2048, n_threads=args.threads)
    eog = set(m.tokenizer.eog_ids)
    runs = {}
    for name, prompts in SETS.items():
        runs[name] = []
        for p in prompts:
            ids = m.tokenize(m.format_chat([{"role": "user", "content": p}]), parse_special=True)
            runs[name].append((ids, list(m.generate_tokens(ids, args.max_tokens, temperature=0))))
    print(f"# draft_policy_sim: {m.path}, max_tokens {args.max_tokens}, n_draft {args.n_draft}")
    print("\n## P(the lookup's next token is the greedy one) by agreement length m")
    for name, rs in runs.items():
        hit: collections.Counter[int] = collections.Counter()
        tot: collections.Counter[int] = collections.Counter()
        for prompt, out in rs:
            seq = [*prompt, out[0]]
            for t in out[1:]:
                c, a = longest_agreement(seq, 32)
                if a:
                    b = min(a, 12)
                    tot[b] += 1
                    hit[b] += seq[c] == t
                seq.append(t)
        cells = " ".join(
            f"{b}{'+' if b == 12 else ''}:{hit[b] / tot[b]:.2f}/{tot[b]}" for b in sorted(tot)
        )
        print(f"{name}: {cells}")
    print("prior 1 - 1.1/(m + 0.35): " + " ".join(f"{b}:{new_prior(b):.2f}" for b in range(1, 13)))
    cost = tuple(args.cost)
    policies: dict[str, Policy | None] = {
        "old (n-gram 3..1, estimate per n)": Policy(3, False, lambda k: 0.5, (0.15, 0.25)),
        "new (agreement up to 16, chained)": Policy(16, True, new_prior, (0.15, 0.25)),
        "oracle (exactly the accepted tokens)": None,
    }
    print(f"\n## simulated speed-up, round cost 1 + {cost[0]} + {cost[1]} k steps")
    print("| policy | " + " | ".join(SETS) + " |")
    print("|---" * (len(SETS) + 1) + "|")
    for label, pol in policies.items():
        cells = []
        for rs in runs.values():
            plain = spec = dr = ac = 0.0
            for prompt, out in rs:
                a, b, d, c = simulate(pol, prompt, out, eog, args.n_draft, args.max_tokens, cost)
                plain, spec, dr, ac = plain + a, spec + b, dr + d, ac + c
            cells.append(f"{plain / spec:.3f}x (acc {ac / max(dr, 1):.2f})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
