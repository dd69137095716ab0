#!/usr/bin/env python3
"""Decode tokens/s with and without speculative decoding, same process, same run.

- **prompt lookup** on SmolLM2-135M-Instruct (the bundled Q4_1 weights): a
  model with ``draft="prompt_lookup"`` against the same file without a draft,
  over two sets of chat prompts: *input-grounded* (rewrite a paragraph,
  extract fields, edit code: the answer repeats the input) and *open chat*.
- **draft model**: SmolLM2 F16 as the target with its Q4_0 as the draft,
  against the F16 file alone (``--pair``; the files are made by
  bench_models.py with llama.cpp's ``llama-quantize``).

Every prompt is answered greedily (temperature 0) by both engines, turn about,
``--runs`` times; decode tokens/s counts the tokens after the first (which
comes from the prefill) from the first token to the last. Per set and run:
its tokens over its decode time for each engine; the figure is the median over
runs of the speculative / plain ratio. Each answer of the speculative engine
must be the plain one token for token (``identical``). The issue's bars:
prompt lookup >= 1.6x on the input-grounded set, >= 0.97x on open chat,
greedy text identical in every case. ``--draft-cost measured`` runs the
speculative model with the measured cost line instead of the fixed prior (the
measured line is printed per set either way).

    cd /tmp && python /path/to/benchmarks/bench_speculative.py --threads 2 --runs 3 \\
        --pair --llama-quantize /tmp/llbuild/bin/llama-quantize
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import bluelm_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import DEFAULT_CACHE, model_path  # noqa: E402

PARAGRAPH = (
    "The city council met on Tuesday evening to discuss the new budget. After a long debate, "
    "the members agreed to spend more money on public transport and less on road repairs. The "
    "mayor said that the decision would help reduce traffic in the city centre and improve the "
    "air quality for everyone who lives and works there."
)
RECORD = (
    "Hello, my name is Maria Gonzalez and I am writing about order number 48213. I ordered a "
    "blue wool sweater on March 3rd and it has not arrived yet. You can reach me at "
    "maria.gonzalez@example.com or call me on 555-0142. My address is 12 Oak Street, Springfield."
)
CODE = """def total_price(items):
    total = 0
    for item in items:
        total = total + item["price"] * item["quantity"]
    return total


def average_price(items):
    if len(items) == 0:
        return 0
    return total_price(items) / len(items)
"""

GROUNDED = [
    f"Rewrite the following paragraph in the past tense, keeping everything else the same:\n\n"
    f"{PARAGRAPH}",
    f"Repeat the following paragraph exactly, but replace the word 'city' with 'town':\n\n"
    f"{PARAGRAPH}",
    f"Extract the name, order number, email, phone and address from this message and write "
    f"them as a list of 'field: value' lines:\n\n{RECORD}",
    f"Rename the function total_price to order_total everywhere in this code and show the "
    f"whole code:\n\n```python\n{CODE}```",
    f"Add a docstring to each function of this code and show the whole code:\n\n"
    f"```python\n{CODE}```",
]
OPEN_CHAT = [
    "Tell me a short story about a dragon who wants to learn to cook.",
    "What are three good reasons to exercise every day?",
    "Explain how a rainbow forms, in simple words.",
    "Give me some ideas for a birthday party for a ten year old.",
    "Why is the sky blue?",
]


# draft_stats()["seconds"]'s parts, then what is left of the decode's wall time
# (the Python loop and the round trips into C++).
SPLIT_PARTS = ("draft", "forward", "logits", "verify", "python")


def decode(
    m: bluelm_cpp.Model, prompt: list[int], max_tokens: int
) -> tuple[list[int], float, float]:
    """Greedy tokens after ``prompt``, the seconds from the first to the last,
    and from the first to the generation's end (a round that finds the end
    token yields nothing)."""
    toks: list[int] = []
    t0 = t1 = 0.0
    for tok in m.generate_tokens(prompt, max_tokens, temperature=0):
        t1 = time.perf_counter()
        if not toks:
            t0 = t1
        toks.append(tok)
    return toks, t1 - t0, time.perf_counter() - t0


def run_set(
    name: str,
    plain: bluelm_cpp.Model,
    spec: bluelm_cpp.Model,
    prompts: list[str],
    runs: int,
    max_tokens: int,
) -> dict[str, Any]:
    ids = [
        plain.tokenize(plain.format_chat([{"role": "user", "content": p}]), parse_special=True)
        for p in prompts
    ]
    ratios: list[float] = []
    tps: dict[str, list[float]] = {"plain": [], "spec": []}
    identical = True
    per_prompt: list[dict[str, Any]] = [{} for _ in prompts]
    drafted = accepted = 0
    # Where each engine's decode time went, over all runs (draft_stats' seconds).
    split = {label: dict.fromkeys(SPLIT_PARTS, 0.0) for label in ("plain", "spec")}
    counted = ("steps", "logit_passes", "argmax_passes")
    counts = {label: dict.fromkeys(counted, 0) for label in ("plain", "spec")}
    for r in range(runs):
        total = {"plain": [0, 0.0], "spec": [0, 0.0]}
        for i, p in enumerate(ids):
            order = [("plain", plain), ("spec", spec)]
            if (r + i) % 2:
                order.reverse()
            out: dict[str, list[int]] = {}
            for label, m in order:
                toks, dt, dt_all = decode(m, p, max_tokens)
                out[label] = toks
                total[label][0] += len(toks) - 1
                total[label][1] += dt
                per_prompt[i].setdefault(label, []).append((len(toks) - 1) / dt if dt else 0.0)
                st = m.draft_stats
                secs = st.get("seconds", {})  # absent in builds before the split was kept
                for part in SPLIT_PARTS[:-1]:
                    split[label][part] += secs.get(part, 0.0)
                split[label]["python"] += dt_all - sum(secs.values())
                for c in counts[label]:
                    counts[label][c] += st.get(c, 0)
                if label == "spec":
                    if r == 0:
                        per_prompt[i]["rounds"] = st.get("steps", 0)
                        drafted += st["drafted"]
                        accepted += st["accepted"]
                        per_prompt[i]["acceptance"] = st["acceptance"]
                        per_prompt[i]["tokens"] = len(toks)
            same = out["plain"] == out["spec"]
            per_prompt[i]["identical"] = per_prompt[i].get("identical", True) and same
            identical = identical and same
        for label in total:
            tps[label].append(total[label][0] / total[label][1])
        ratios.append(tps["spec"][-1] / tps["plain"][-1])
    print(f"\n## {name}: {len(prompts)} prompts, {runs} runs, max_tokens {max_tokens}")
    print(
        "| prompt | tokens | rounds | tokens/round | plain t/s | spec t/s | ratio | acceptance "
        "| identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for i, pp in enumerate(per_prompt):
        a, b = statistics.median(pp["plain"]), statistics.median(pp["spec"])
        print(
            f"| {i} {prompts[i][:40]!r} | {pp['tokens']} | {pp['rounds']} "
            f"| {(pp['tokens'] - 1) / max(pp['rounds'], 1):.2f} | {a:.1f} | {b:.1f} | {b / a:.2f}x "
            f"| {pp['acceptance']:.2f} | {'yes' if pp['identical'] else 'NO'} |"
        )
    res = {
        "plain_tps": statistics.median(tps["plain"]),
        "spec_tps": statistics.median(tps["spec"]),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "acceptance": accepted / drafted if drafted else 0.0,
        "identical": identical,
    }
    for label in ("plain", "spec"):
        sp, total = split[label], sum(split[label].values())
        per = 1e3 / max(counts[label]["steps"], 1)
        parts = ", ".join(f"{k} {v * per:.2f}" for k, v in sp.items())
        print(
            f"{label}: ms per round (all runs): {parts}; {counts[label]['steps']} rounds, "
            f"{counts[label]['logit_passes']} logit passes "
            f"({counts[label]['argmax_passes']} of them greedy tokens without logits), "
            f"{total:.2f} s"
        )
    c0, c1 = spec.draft_stats["round_cost"]
    print(f"measured round cost: 1 + {c0:.2f} + {c1:.2f} * k plain steps for k drafted tokens")
    print(
        f"{name}: plain {res['plain_tps']:.1f} t/s, speculative {res['spec_tps']:.1f} t/s, "
        f"ratio {res['ratio']:.2f}x (runs: {', '.join(f'{x:.2f}' for x in ratios)}), "
        f"acceptance {res['acceptance']:.2f}, greedy identical: {'yes' if identical else 'NO'}"
    )
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--n-draft", type=int, default=8)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument(
        "--ngram",
        type=int,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="prompt lookup: the shortest agreement drafted from and the longest compared "
        "(default: the library's, 1 16)",
    )
    ap.add_argument(
        "--draft-cost",
        choices=["measured", "prior"],
        default="prior",
        help="how greedy rounds choose draft lengths (Model's draft_cost)",
    )
    ap.add_argument("--pair", action="store_true", help="also SmolLM2 F16 with its Q4_0 as draft")
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--llama-quantize", default=None)
    args = ap.parse_args(argv)

    path = model_path("smollm2-q4_1")
    kw = {"n_ctx": args.n_ctx, "n_threads": args.threads}
    plain = bluelm_cpp.Model(path, **kw)
    spec = bluelm_cpp.Model(
        path, draft="prompt_lookup", n_draft=args.n_draft, draft_cost=args.draft_cost, **kw
    )
    if args.ngram:
        lo, hi = args.ngram
        spec._ctx.set_draft(
            "prompt_lookup",
            args.n_draft,
            ngram_min=lo,
            ngram_max=hi,
            measured_cost=args.draft_cost == "measured",
        )
    print(
        f"# bench_speculative: {path}, isa {bluelm_cpp._core.isa()}, threads {args.threads}, "
        f"n_draft {args.n_draft}, draft_cost {args.draft_cost}"
    )
    results = {
        "prompt lookup, input-grounded": run_set(
            "prompt lookup, input-grounded", plain, spec, GROUNDED, args.runs, args.max_tokens
        ),
        "prompt lookup, open chat": run_set(
            "prompt lookup, open chat", plain, spec, OPEN_CHAT, args.runs, args.max_tokens
        ),
    }
    plain.close()
    spec.close()
    if args.pair:
        target = model_path("smollm2-f16", args.cache, args.llama_quantize)
        draft = model_path("smollm2-q4_0", args.cache, args.llama_quantize)
        print(f"\n# draft model: target {target}, draft {draft}")
        plain = bluelm_cpp.Model(target, **kw)
        spec = bluelm_cpp.Model(target, draft=draft, n_draft=args.n_draft, **kw)
        for name, prompts in (("input-grounded", GROUNDED), ("open chat", OPEN_CHAT)):
            label = f"F16 + Q4_0 draft, {name}"
            results[label] = run_set(label, plain, spec, prompts, args.runs, args.max_tokens)
    print("\n## Summary (median over runs of speculative / plain decode t/s)")
    print("| case | plain t/s | speculative t/s | ratio | acceptance | identical |")
    print("|---|---|---|---|---|---|")
    for k, r in results.items():
        print(
            f"| {k} | {r['plain_tps']:.1f} | {r['spec_tps']:.1f} | {r['ratio']:.2f}x "
            f"| {r['acceptance']:.2f} | {'yes' if r['identical'] else 'NO'} |"
        )
    g, o = results["prompt lookup, input-grounded"], results["prompt lookup, open chat"]
    ok = all(r["identical"] for r in results.values())

    def bar(ratio: float, want: float) -> str:
        return f"{ratio:.2f}x (>= {want}: {'met' if ratio >= want else 'NOT met'})"

    print(
        f"\nbars: input-grounded {bar(g['ratio'], 1.6)}, open chat {bar(o['ratio'], 0.97)}, "
        f"greedy identical in every case: {'yes' if ok else 'NO'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
