"""The issues' done-when figures that benchmarks/bench_llm.py checks, at 2 threads against
llama-bench (llama.cpp at its best), and the "target ... met / NOT met" lines it prints."""

from __future__ import annotations

import statistics
from typing import Any


def med(v: list[float]) -> float:
    """Median of v, NaN when empty. Example: med([3.0, 1.0, 2.0]) == 2.0"""
    return statistics.median(v) if v else float("nan")


# Decode through the Python API (generate, greedy), issue 12.
GEN_TARGET = {"smollm2-q4_k_m": 1.1, "llama1b-q4_k_m": 1.0}
ROOFLINE_TARGET = {"bluelm3b-q4_0": 90.0, "llama1b-q4_k_m": 90.0}  # % of roofline
TG_TARGET = {
    "smollm2-q4_0": 1.3,
    "smollm2-q4_1": 1.5,
    "bluelm3b-q4_0": 0.98,
    "qwen3-1.7b-q4_0": 1.0,
    "gemma3-1b-q4_0": 1.0,
}
PP_TARGET = {
    "smollm2-q4_0": 1.2,
    "bluelm3b-q4_0": 1.2,
    "qwen3-1.7b-q4_0": 1.5,
    "gemma3-1b-q4_0": 1.5,
    "smollm2-q4_k_m": 1.5,
    "llama1b-q4_k_m": 1.5,
}


def pp_ratio(a: dict[str, Any], b: dict[str, Any], n: int) -> float:
    x, y = a["pp_tps"].get(str(n)), b["pp_tps"].get(str(n))
    return med(x) / med(y) if x and y else float("nan")


# Issue 15 (long prompts), at 2 threads: pp2048 >= 75% of our own pp512 in the same
# run and >= 2x llama-bench's pp2048.
LONG_PP, SHORT_PP, LONG_KEEP, LONG_VS_PEER = 2048, 512, 0.75, 2.0
LONG_MODELS = ("smollm2-q4_0", "bluelm3b-q4_0")


def print_targets(
    name: str,
    facts: dict[str, Any],
    ours: dict[str, Any] | None,
    ref: dict[str, Any] | None,
    bw2: float,
    pps: list[int],
    paired: dict[str, list[float]],
    *,
    n_ctx: int,
    block: int,
) -> None:
    """Print model `name`'s targets at 2 threads as met / NOT met.

    ours / ref: ours' and llama-bench's 2-thread results (None: not run); bw2: the 2-thread
    roofline probe (bytes/s); paired: _spawn_paired's lists; n_ctx, block: the run's
    context size and decode block length. Example (from bench_llm.main):
        print_targets("llama1b-q4_k_m", facts, ours, ref, 53e9, [512], paired, n_ctx=4096, block=8)
    """
    if ours is None:
        return
    lines = []
    if ref is not None:
        if name in TG_TARGET:
            r = med(ours["tg_tps"]) / med(ref["tg_tps"])
            ok = "met" if r >= TG_TARGET[name] else "NOT met"
            lines.append(f"decode {r:.2f}x llama-bench (target >= {TG_TARGET[name]}x): {ok}")
        if name in GEN_TARGET and "gen_tps" in ours:
            r = med(ours["gen_tps"]) / med(ref["tg_tps"])
            ok = "met" if r >= GEN_TARGET[name] else "NOT met"
            lines.append(
                f"decode via generate {r:.2f}x llama-bench (target >= {GEN_TARGET[name]}x): {ok}"
            )
        if name in PP_TARGET and SHORT_PP in pps:
            r = pp_ratio(ours, ref, SHORT_PP)
            ok = "met" if r >= PP_TARGET[name] else "NOT met"
            lines.append(f"pp{SHORT_PP} {r:.2f}x llama-bench (target >= {PP_TARGET[name]}x): {ok}")
        if name in LONG_MODELS and LONG_PP in pps:
            r = pp_ratio(ours, ref, LONG_PP)
            ok = "met" if r >= LONG_VS_PEER else "NOT met"
            lines.append(f"pp{LONG_PP} {r:.2f}x llama-bench (target >= {LONG_VS_PEER}x): {ok}")
    if name in LONG_MODELS and {SHORT_PP, LONG_PP} <= set(pps):
        r = med(ours["pp_tps"][str(LONG_PP)]) / med(ours["pp_tps"][str(SHORT_PP)])
        ok = "met" if r >= LONG_KEEP else "NOT met"
        lines.append(f"pp{LONG_PP} = {r:.2f} of our pp{SHORT_PP} (target >= {LONG_KEEP}): {ok}")
    if name in ROOFLINE_TARGET:
        # decode through generate where the issue asks for it, the C++ loop otherwise
        key = "gen_tps" if name in GEN_TARGET and "gen_tps" in ours else "tg_tps"
        pct = 100.0 * med(ours[key]) / (bw2 / facts["weight_bytes_per_token"])
        want = ROOFLINE_TARGET[name]
        lines.append(
            f"decode {pct:.0f}% of roofline (target >= {want:.0f}%): "
            f"{'met' if pct >= want else 'NOT met'}"
        )
        pct_runs = paired.get("pct", [])
        if pct_runs:
            pp = med(pct_runs)
            lines.append(
                f"decode via generate {pp:.1f}% ({min(pct_runs):.0f}-{max(pct_runs):.0f}) of the "
                f"roofline probed next to each run (target >= {want:.0f}%): "
                f"{'met' if pp >= want else 'NOT met'}"
            )

        blocks = paired.get("block_pct", [])
        if blocks:
            bp, q = med(blocks), statistics.quantiles(blocks, n=4)
            lines.append(
                f"decode via generate {bp:.1f}% (quartiles {q[0]:.1f}-{q[2]:.1f}) of the roofline "
                f"probed between {block}-token blocks in the same process, {len(blocks)} blocks "
                f"(target >= {want:.0f}%): {'met' if bp >= want else 'NOT met'}"
            )
        sweep = paired.get("block_pct_weights", [])
        if sweep:  # information, not a target: the ceiling with decode's job structure
            sp, q = med(sweep), statistics.quantiles(sweep, n=4)
            lines.append(
                f"(information) the same blocks: {sp:.1f}% (quartiles {q[0]:.1f}-{q[2]:.1f}) of "
                f"the model's own matrices swept as decode reads them, no arithmetic, beside each "
                f"block"
            )

    def paired_line(what: str, ratios: list[float], want: float) -> None:
        r = med(ratios)
        lines.append(
            f"{what}, paired run by run: median {r:.2f}x "
            f"({', '.join(f'{x:.2f}' for x in ratios)}) (target >= {want}x): "
            f"{'met' if r >= want else 'NOT met'}"
        )

    if name in PP_TARGET and paired.get("pp_ratio"):
        what = f"pp{SHORT_PP} / llama-bench pp{SHORT_PP}"
        paired_line(what, paired["pp_ratio"], PP_TARGET[name])
    if name in GEN_TARGET and paired.get("ratio"):
        what = "decode via generate / llama-bench tg"
        paired_line(what, paired["ratio"], GEN_TARGET[name])
    if name == "bluelm3b-q4_0":
        limit = 1.1 * (facts["file_bytes"] + facts["kv_bytes_f16"]) / 2**20
        rss = ours["peak_rss_mb"]
        lines.append(
            f"peak RSS {rss:.0f} MB at n_ctx {n_ctx} (target <= 1.1 x (file + F16 KV) = "
            f"{limit:.0f} MB): {'met' if rss <= limit else 'NOT met'}"
        )
    for ln in lines:
        print(f"   target, 2 threads: {ln}")
