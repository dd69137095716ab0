#!/usr/bin/env python3
"""Prefill/decode throughput of bluelm-cpp vs llama-cpp-python on the same GGUF.

Follows llama-bench's pp/tg definitions:
  pp<N>: eval an N-token prompt of random token ids into an empty context; t/s = N / time.
  tg<N>: after a 1-token prompt, eval N single tokens (fixed id, no sampling); t/s = N / time.

Each runtime runs in its own subprocess (one at a time), so its peak RSS is its own.

Usage:
    python benchmarks/bench_llm.py [--model PATH] [--threads 1,2] [--runs 5]
                                   [--pp 512] [--tg 128] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

OURS = "bluelm-cpp"
THEIRS = "llama.cpp"
N_CTX = 1024
N_BATCH = 512
SEED = 1234


# -- child side ---------------------------------------------------------------


def _prompt_ids(n: int, n_vocab: int) -> list[int]:
    # Same seed in both children, so both runtimes see the same prompt.
    rng = random.Random(SEED)
    return [rng.randrange(n_vocab) for _ in range(n)]


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _measure(
    pp_once: Callable[[], float], tg_once: Callable[[], float], runs: int
) -> dict[str, list[float]]:
    """Warm up once, then time `runs` repetitions; callables return seconds."""
    pp_once()
    pp = [pp_once() for _ in range(runs)]
    tg_once()
    tg = [tg_once() for _ in range(runs)]
    return {"pp_s": pp, "tg_s": tg}


def _child_bluelm(model: str, threads: int, pp: int, tg: int, runs: int) -> dict[str, Any]:
    import bluelm_cpp
    from bluelm_cpp import _core

    m = bluelm_cpp.Model(model, n_ctx=N_CTX, n_threads=threads, n_batch=N_BATCH)
    ctx = m._ctx
    assert ctx is not None
    ids = _prompt_ids(pp, m.n_vocab)
    tok = ids[0]

    def pp_once() -> float:
        t0 = time.perf_counter()
        m.eval_logits(ids)  # resets the cache first
        return time.perf_counter() - t0

    def tg_once() -> float:
        ctx.reset()
        ctx.eval([tok])
        t0 = time.perf_counter()
        for _ in range(tg):
            ctx.eval([tok])
        dt = time.perf_counter() - t0
        assert ctx.n_past == tg + 1
        return dt

    out: dict[str, Any] = _measure(pp_once, tg_once, runs)
    out["isa"] = _core.isa()
    return out


def _child_llama(model: str, threads: int, pp: int, tg: int, runs: int) -> dict[str, Any]:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=model,
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
        flash_attn=False,
    )
    ids = _prompt_ids(pp, llm.n_vocab())
    tok = ids[0]

    def pp_once() -> float:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        return time.perf_counter() - t0

    def tg_once() -> float:
        llm.reset()
        llm.eval([tok])
        t0 = time.perf_counter()
        for _ in range(tg):
            llm.eval([tok])
        dt = time.perf_counter() - t0
        assert llm.n_tokens == tg + 1
        return dt

    out: dict[str, Any] = _measure(pp_once, tg_once, runs)

    # Estimate the wrapper's per-token Python cost: everything eval() does except decode().
    n = llm.n_tokens
    t0 = time.perf_counter()
    for _ in range(tg):
        llm._ctx.kv_cache_seq_rm(-1, n, -1)  # no-op here: nothing cached past n
        llm._batch.set_batch(batch=[tok], n_past=n, logits_all=False)
        llm.input_ids[n : n + 1] = [tok]
    out["wrapper_s"] = time.perf_counter() - t0
    out["version"] = llama_cpp.__version__
    out["system_info"] = llama_cpp.llama_print_system_info().decode()
    return out


def _run_child(args: argparse.Namespace) -> None:
    fn = _child_bluelm if args.child == OURS else _child_llama
    res = fn(args.model, int(args.threads), args.pp, args.tg, args.runs)
    res["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(res))


# -- parent side --------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        from bluelm_cpp import _core

        return int(_core.physical_cores())
    except Exception:
        return None


def _llama_version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def _spawn(
    runtime: str, model: str, threads: int, args: argparse.Namespace
) -> dict[str, Any] | None:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        runtime,
        "--model",
        model,
        "--threads",
        str(threads),
        "--runs",
        str(args.runs),
        "--pp",
        str(args.pp),
        "--tg",
        str(args.tg),
    ]
    print(f"  running {runtime} threads={threads} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        print(f"  {runtime} threads={threads} failed (rc={proc.returncode}):\n{tail}")
        return None
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    n_pp, n_tg = args.pp, args.tg
    res["pp_tps"] = [n_pp / s for s in res["pp_s"]]
    res["tg_tps"] = [n_tg / s for s in res["tg_s"]]
    return res


def _fmt(tps: list[float]) -> str:
    return f"{statistics.median(tps):8.1f} ({min(tps):.1f}-{max(tps):.1f})"


def _ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF path (default: bundled SmolLM2 Q4_1)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per test (median reported)")
    ap.add_argument("--pp", type=int, default=512, help="prompt tokens for prefill")
    ap.add_argument("--tg", type=int, default=128, help="tokens generated for decode")
    ap.add_argument("--json", metavar="OUT", default=None, help="also save results as JSON")
    ap.add_argument("--child", choices=[OURS, THEIRS], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        _run_child(args)
        return 0

    if args.pp + 1 > N_CTX or args.tg + 1 > N_CTX:
        ap.error(f"--pp and --tg must be below n_ctx={N_CTX}")
    import bluelm_cpp
    from bluelm_cpp import _core

    model = os.path.abspath(args.model or bluelm_cpp.default_model_path())
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    have_llama = importlib.util.find_spec("llama_cpp") is not None
    runtimes = [OURS, THEIRS] if have_llama else [OURS]
    llama_ver = _llama_version() if have_llama else None

    pp_name, tg_name = f"pp{args.pp}", f"tg{args.tg}"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    phys = _physical_cores()
    print(f"machine  : {_cpu_model()}, {os.cpu_count()} logical cores, {phys} physical")
    print(
        f"           {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print(f"           load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"model    : {model} ({os.path.getsize(model) / 2**20:.1f} MiB)")
    print(f"bluelm   : {bluelm_cpp.__version__}, kernel ISA {_core.isa()}")
    print(f"llama_cpp: {llama_ver if have_llama else 'not installed'}")
    print(
        f"settings : n_ctx={N_CTX} n_batch={N_BATCH} {pp_name} {tg_name}, "
        f"{args.runs} runs + 1 warm-up, median (min-max)"
    )
    sys.stdout.flush()

    results: dict[tuple[str, int], dict[str, Any]] = {}
    for t in threads:
        for rt in runtimes:
            res = _spawn(rt, model, t, args)
            if res is not None:
                results[(rt, t)] = res

    hdr = (
        f"{'runtime':<16} {'threads':>7}  {pp_name + ' t/s':>24}  "
        f"{tg_name + ' t/s':>24}  {'peak RSS MB':>11}"
    )
    print()
    print(hdr)
    print("-" * len(hdr))
    for t in threads:
        for rt in runtimes:
            r = results.get((rt, t))
            if r is None:
                print(f"{rt:<16} {t:>7}  {'failed':>24}")
                continue
            print(
                f"{rt:<16} {t:>7}  {_fmt(r['pp_tps']):>24}  {_fmt(r['tg_tps']):>24}  "
                f"{r['peak_rss_mb']:>11.1f}"
            )
        ours, theirs = results.get((OURS, t)), results.get((THEIRS, t))
        if ours and theirs:
            rss = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
            print(
                f"{'ours/llama.cpp':<16} {t:>7}  {_ratio(ours['pp_tps'], theirs['pp_tps']):>24}  "
                f"{_ratio(ours['tg_tps'], theirs['tg_tps']):>24}  {rss:>10.2f}x"
            )
    print()

    print("notes:")
    if not have_llama:
        print("  - llama-cpp-python is not installed (import llama_cpp failed): bluelm-cpp only.")
    else:
        for t in threads:
            r = results.get((THEIRS, t))
            if r is not None:
                per_tok = r["wrapper_s"] / args.tg
                share = r["wrapper_s"] / statistics.median(r["tg_s"])
                print(
                    f"  - threads={t}: llama-cpp-python's Python-side eval() work is "
                    f"~{per_tok * 1e6:.0f} us/token ({share:.1%} of its {tg_name} time)."
                )
        print(
            f"  - llama.cpp figures go through llama-cpp-python's eval(); llama.cpp's own\n"
            f"    llama-bench calls llama_decode directly and is often said to be ~20% faster\n"
            f"    for tg than the Python wrapper (llama-bench not run here). In llama_cpp\n"
            f"    {llama_ver} eval() copies logits only with logits_all=True; its remaining\n"
            f"    per-token Python work is the measured figure above."
        )
        info = next((r["system_info"] for r in results.values() if "system_info" in r), "")
        if info:
            print(f"  - llama.cpp system info: {info.strip()}")
    print("  - RSS is the child process's peak (Python + runtime + mmapped weights).")

    if args.json:
        payload = {
            "machine": {
                "cpu": _cpu_model(),
                "logical_cores": os.cpu_count(),
                "physical_cores": phys,
                "loadavg_start": list(load),
            },
            "model": model,
            "bluelm_isa": _core.isa(),
            "llama_cpp_version": llama_ver,
            "settings": {
                "n_ctx": N_CTX,
                "n_batch": N_BATCH,
                "pp": args.pp,
                "tg": args.tg,
                "runs": args.runs,
                "seed": SEED,
            },
            "results": [{"runtime": rt, "threads": t, **r} for (rt, t), r in results.items()],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"saved {args.json}")
    return 0 if len(results) == len(threads) * len(runtimes) else 1


if __name__ == "__main__":
    sys.exit(main())
