"""Decode through the Python API against the C++ level, and constrained decode
against free decode, on the same file in the same run.

- **C++ level**: bench_llm.py's tg definition: after a 1-token prompt, eval
  `--tg` single tokens through `_core.Context.eval` (fixed id, no sampling).
- **generate**: `Model.generate_tokens` greedy from a 1-token prompt, timed
  from the first token to the last (`--tg` decode steps: each evaluates the
  token before it, samples greedily, checks the stop ids, crosses into Python once).
- **free / JSON schema**: `create_chat_completion` at temperature 0 with and
  without a JSON-schema `response_format` (llguidance mask per step), decode
  tokens/s from the first streamed chunk to the last.

Engines take turns in one process, each ratio from back-to-back pairs in
alternating order (median over `--runs` pairs). The issue's bars:
generate >= 0.95x the C++ level, JSON schema >= 0.85x free decode.

    cd /tmp && python /path/to/benchmarks/bench_api.py --threads 2 --runs 5 \
        --llama-quantize /tmp/llbuild/bin/llama-quantize
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import bluelm_cpp
from bluelm_cpp import SamplingParams, _core
from bluelm_cpp.structured import GrammarConstraint, grammar_for

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import DEFAULT_CACHE, model_path  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string"}},
        "biography": {"type": "string"},
    },
    "required": ["name", "age", "hobbies", "biography"],
}


def cpp_level(ctx: Any, tg: int) -> float:
    ctx.reset()
    ctx.eval([1])
    t0 = time.perf_counter()
    for _ in range(tg):
        ctx.eval([1])
    return tg / (time.perf_counter() - t0)


def generate(m: bluelm_cpp.Model, tg: int) -> tuple[float, int]:
    it = m.generate_tokens([1], tg + 1, temperature=0)
    next(it)
    t0 = time.perf_counter()
    n = sum(1 for _ in it)
    return n / (time.perf_counter() - t0), n


def chat_decode(m: bluelm_cpp.Model, tg: int, fmt: dict[str, Any] | None) -> tuple[float, int]:
    """The decode loop create_chat_completion runs, with or without the schema's
    mask; tokens/s from the first token to the last."""
    msgs = [{"role": "user", "content": "Describe a fictional person in detail, as JSON."}]
    parts = m._prompt_parts(m._chat_prompt(msgs)[0], None, True)
    g = grammar_for(fmt) if fmt else None
    constraint = GrammarConstraint(m, g) if g else None
    it = m._generate(parts, SamplingParams(temperature=0), tg + 1, None, constraint)
    next(it)
    t0 = time.perf_counter()
    n = sum(1 for _ in it)
    return n / (time.perf_counter() - t0), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="GGUF (default: smollm2-q4_0 of bench_models)")
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--llama-quantize", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args(argv)
    path = a.model or model_path("smollm2-q4_0", a.cache, a.llama_quantize)
    print(
        f"model {path}, {a.threads} threads, tg {a.tg}, runs {a.runs}, ISA {_core.isa()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    ctx = _core.Context(_core.LlamaModel(path), 4096, 128, a.threads, "f16")
    m = bluelm_cpp.Model(path, n_ctx=4096, n_threads=a.threads)
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    cpp_level(ctx, a.tg)
    generate(m, a.tg)
    chat_decode(m, a.tg, None)
    chat_decode(m, a.tg, fmt)
    res: dict[str, list[float]] = {"cpp": [], "generate": [], "free": [], "schema": []}
    counts: dict[str, int] = {}
    runners = {
        "cpp": lambda: (cpp_level(ctx, a.tg), a.tg),
        "generate": lambda: generate(m, a.tg),
        "free": lambda: chat_decode(m, a.tg, None),
        "schema": lambda: chat_decode(m, a.tg, fmt),
    }
    for i in range(a.runs):
        # pairs run back to back, in alternating order, so the machine's drift
        # (shared, noisy) hits both sides of each ratio alike
        for pair in (("cpp", "generate"), ("free", "schema")):
            for k in pair if i % 2 == 0 else pair[::-1]:
                r, counts[k] = runners[k]()
                res[k].append(r)
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in res.items():
        print(
            f"{k:9s} {med[k]:7.1f} tok/s (min {min(v):.1f}, max {max(v):.1f}), {counts[k]} tokens"
        )
    r1 = statistics.median(g / c for g, c in zip(res["generate"], res["cpp"]))
    r2 = statistics.median(s / f for s, f in zip(res["schema"], res["free"]))
    print(
        f"generate / C++ level        {r1:.3f}  (median of {a.runs} paired runs; "
        f"bar 0.95: {'met' if r1 >= 0.95 else 'NOT met'})"
    )
    print(
        f"JSON schema / free decode   {r2:.3f}  (median of {a.runs} paired runs; "
        f"bar 0.85: {'met' if r2 >= 0.85 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
