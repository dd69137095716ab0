#!/usr/bin/env python3
"""Prefill/decode throughput of bluelm-cpp vs llama.cpp on the same GGUF files, same run.

Peers: llama.cpp's own ``llama-bench`` (``--llama-bench PATH``; llama.cpp at its best, no Python
in the loop) and llama-cpp-python (the same library through its Python ``eval()``).
Follows llama-bench's pp/tg definitions:
  pp<N>: eval an N-token prompt of random token ids into an empty context; t/s = N / time
         (``--pp 512,2048`` measures several lengths in the same run; ours through the
         Python API, ``Model.eval_logits``).
  tg<N>: after a 1-token prompt, eval N single tokens (fixed id, no sampling); t/s = N / time
         (llama-bench: N tokens into an empty context).

Each (runtime, threads) runs in its own subprocess, one at a time; its peak RSS comes from
wait4(). The script also measures the machine's read bandwidth (bluelm_cpp._core.read_bandwidth,
best of 5 sweeps of 512 MiB) at each thread count, at the start and again right before and after
each model's runs (a VM's bandwidth drifts), and prints the decode roofline = the higher of the
model's two probes / weight bytes read per token, and each runtime's decode as a percentage of it.
For the models in _PAIRED (those with a roofline target, and the K-quant mixes) it also runs
ours once more at 2 threads with a probe between runs, and llama-bench's tg (and pp512 where a
prefill target exists) run by run beside it (probe, ours, llama-bench, probe,
llama-bench, ours, probe, ...; each run against the higher of its two neighbouring probes, the
same rule at run granularity, and each pair's ours / llama-bench ratio): this VM's 2-thread
bandwidth flips between about 37 and 55 GB/s within minutes (the two vCPUs sometimes share a
core), and a flip between a model's first probe and its runs put every run against the other
state's figure, or ours in one state against llama-bench in the other. Both figures are
printed; the paired ones say how close decode came to the bandwidth it had, and how ours
compared with llama-bench minutes, not a whole model's runs, apart. Within each paired run
ours also decodes in blocks of 8 tokens with a probe (best of 2 sweeps of 256 MiB, _core.ReadProbe)
before each block and after the last, all in one process: the host's bandwidth changes in
episodes of seconds, so a probe seconds away from a run can catch the other episode, and each
block is set against the higher of the two probes beside it, some 0.2 s away. Beside each probe
the child also sweeps the model's own matrices as decode reads them, with no arithmetic
(_core.WeightsProbe: a pool job per product group, split over the threads, best of 2): decode's
ceiling on those pages with its jobs and barriers, printed for information next to the probe's
figure, so a shortfall can be told apart into the job structure and the kernels.

Ours also decodes through the Python API: ``Model.generate_tokens`` greedy (``temperature=0``,
end-of-generation tokens biased away so every run makes tg tokens), column "tg gen".

Models (benchmarks/bench_models.py makes and caches them): smollm2-q4_0, smollm2-q4_1,
smollm2-q8_0, bluelm3b-q4_0 (PAPER.md's 2.7B shape, random Q4_0), qwen3-1.7b-q4_0 and
gemma3-1b-q4_0 (those archs' shapes, random Q4_0), smollm2-q4_k_m and smollm2-q5_k_m
(llama-quantize's mixes of SmolLM2), llama1b-q4_k_m (Llama-3.2-1B's shape, random Q4_K +
Q6_K), or a GGUF path.

Usage:
    python benchmarks/bench_llm.py --llama-bench /tmp/llbuild/bin/llama-bench \\
        --llama-quantize /tmp/llbuild/bin/llama-quantize \\
        --models smollm2-q4_0,smollm2-q4_1,bluelm3b-q4_0 --threads 1,2 --runs 5 --json OUT
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from llm_targets import PP_TARGET, SHORT_PP, pp_ratio, print_targets
from llm_targets import med as _med

OURS = "bluelm-cpp"
PAIRED = "bluelm-cpp-paired"  # child: serves generate runs and read probes on request
THEIRS = "llama-cpp-python"
LLAMA_BENCH = "llama-bench"
# Decode in blocks of BLOCK tokens with a probe of BLOCK_PROBE_BYTES (best of 2 sweeps, about
# 15 ms) between blocks, in one process: the VM's bandwidth changes within seconds.
BLOCK, BLOCK_PROBE_BYTES = 8, 256 << 20
N_CTX = 4096  # the RSS target is for n_ctx 4096
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
    pp_once: Callable[[int], float], tg_once: Callable[[], float], pps: list[int], runs: int
) -> dict[str, Any]:
    """Warm up once, then time `runs` repetitions; callables return seconds."""
    out: dict[str, Any] = {"pp_s": {}}
    for n in pps:
        pp_once(n)
        out["pp_s"][str(n)] = [pp_once(n) for _ in range(runs)]
    tg_once()
    out["tg_s"] = [tg_once() for _ in range(runs)]
    return out


def _read_bandwidth(threads: int) -> float:
    """Read bandwidth in bytes/s (best of 5 sweeps of 512 MiB) at this thread count.

    In a child: the probe's 512 MiB would otherwise raise this process's RSS high-water
    mark, which children started by vfork/exec report as their own.
    """
    probe = f"from bluelm_cpp import _core; print(_core.read_bandwidth({512 << 20}, {threads}, 5))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return float(out.stdout)


def _child_bluelm(
    model: str, threads: int, pps: list[int], tg: int, runs: int, paired: bool = False
) -> dict[str, Any]:
    import bluelm_cpp
    from bluelm_cpp import _core

    m = bluelm_cpp.Model(model, n_ctx=N_CTX, n_batch=N_BATCH, n_threads=threads, kv_type="f16")
    ctx = m._ctx  # decode below without the API's per-call reset
    tok = _prompt_ids(1, m.n_vocab)[0]
    no_eog = {int(i): -1e9 for i in m.tokenizer.eog_ids}

    def gen_once() -> float:
        m.reset()
        t0 = time.perf_counter()
        n = sum(1 for _ in m.generate_tokens([tok], tg, temperature=0, logit_bias=no_eog))
        dt = time.perf_counter() - t0
        assert n == tg, n
        return dt

    def pp_once(n: int) -> float:
        ids = _prompt_ids(n, m.n_vocab)
        t0 = time.perf_counter()
        m.eval_logits(ids)  # the Python API: reset, prefill, last row's logits
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

    @functools.cache
    def block_probe() -> Any:  # one buffer for all of this child's runs, made on first use
        return _core.ReadProbe(BLOCK_PROBE_BYTES, threads)

    @functools.cache
    def weights_probe() -> Any:  # the model's matrices, swept as decode reads them
        return _core.WeightsProbe(m._model, threads)

    def blocks_once(k: int) -> dict[str, list[float]]:
        """generate's tokens in blocks of k with a read probe before each block and after the
        last, all in this process: each block's speed against the bandwidth of that moment."""
        probe, sweep = block_probe(), weights_probe()
        m.reset()
        it = m.generate_tokens([tok], tg + 1, temperature=0, logit_bias=no_eog)
        next(it)  # the first token comes from the prompt's eval: blocks time decode steps only
        probes, sweeps, secs = [probe.best_of(2)], [sweep.best_of(2)], []
        for _ in range(tg // k):
            t0 = time.perf_counter()
            for _ in range(k):
                next(it)
            secs.append(time.perf_counter() - t0)
            probes.append(probe.best_of(2))
            sweeps.append(sweep.best_of(2))
        it.close()
        return {"probe_bps": probes, "weights_bps": sweeps, "block_s": secs}

    if paired:  # serve the parent's "probe" / "gen" / "blocks" requests, one JSON line each
        gen_once()
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            req = line.strip()
            if req == "probe":
                print(json.dumps({"probe_bps": _core.read_bandwidth(512 << 20, threads, 5)}))
            elif req == "gen":
                print(json.dumps({"gen_s": gen_once()}))
            elif req.startswith("blocks "):
                print(json.dumps(blocks_once(int(req[7:]))))
            elif req.startswith("pp "):
                print(json.dumps({"pp_s": pp_once(int(req[3:]))}))
            else:
                break
            sys.stdout.flush()
        return {}
    out: dict[str, Any] = _measure(pp_once, tg_once, pps, runs)
    gen_once()
    out["gen_s"] = [gen_once() for _ in range(runs)]
    out["isa"] = _core.isa()
    out["repacked_bytes"] = m._model.repacked_bytes
    return out


def _child_llama(model: str, threads: int, pps: list[int], tg: int, runs: int) -> dict[str, Any]:
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
    tok = _prompt_ids(1, llm.n_vocab())[0]

    def pp_once(n: int) -> float:
        ids = _prompt_ids(n, llm.n_vocab())
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

    out: dict[str, Any] = _measure(pp_once, tg_once, pps, runs)

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
    if args.child == PAIRED:
        _child_bluelm(args.model, int(args.threads), [], args.tg, args.runs, paired=True)
        return
    fn = _child_bluelm if args.child == OURS else _child_llama
    res = fn(args.model, int(args.threads), _pps(args.pp), args.tg, args.runs)
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


def _llama_version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def _wait_run(cmd: list[str]) -> tuple[int, str, str, float]:
    """Runs cmd; returns (exit code, stdout, stderr, peak RSS in MB from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: keep Popen from waiting
        out.seek(0)
        err.seek(0)
        rss = ru.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru.ru_maxrss / 1024
        return proc.returncode, out.read().decode(), err.read().decode(), rss


def _spawn(
    runtime: str, model: str, threads: int, args: argparse.Namespace
) -> dict[str, Any] | None:
    print(f"  {runtime} threads={threads} ...", flush=True)
    if runtime == LLAMA_BENCH:
        cmd = [args.llama_bench, "-m", model, "-t", str(threads), "-p", args.pp]
        cmd += ["-n", str(args.tg), "-r", str(args.runs), "-o", "json"]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", runtime, "--model", model]
        cmd += ["--threads", str(threads), "--runs", str(args.runs)]
        cmd += ["--pp", args.pp, "--tg", str(args.tg)]
    rc, out, err, rss = _wait_run(cmd)
    if rc != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        print(f"  {runtime} threads={threads} failed (rc={rc}):\n{tail}")
        return None
    if runtime == LLAMA_BENCH:
        res: dict[str, Any] = {"pp_tps": {}, "tg_tps": []}
        for e in json.loads(out):
            if e["n_gen"] == 0:
                res["pp_tps"][str(e["n_prompt"])] = [float(v) for v in e["samples_ts"]]
            else:
                res["tg_tps"] = [float(v) for v in e["samples_ts"]]
            res["build_commit"] = e.get("build_commit")
            res["repack"] = e.get("repack")
    else:
        res = json.loads(out.strip().splitlines()[-1])
        res["pp_tps"] = {n: [int(n) / s for s in v] for n, v in res["pp_s"].items()}
        res["tg_tps"] = [args.tg / s for s in res["tg_s"]]
        if "gen_s" in res:
            res["gen_tps"] = [args.tg / s for s in res["gen_s"]]
    res["peak_rss_mb"] = rss
    # A line per finished run, so a run cut short still shows what it measured.
    pp = ", ".join(f"pp{n} {_fmt(v)}" for n, v in res["pp_tps"].items())
    gen = f", tg gen {_fmt(res['gen_tps'])} t/s" if "gen_tps" in res else ""
    print(
        f"    -> {pp} t/s, tg{args.tg} {_fmt(res['tg_tps'])} t/s{gen}, peak RSS {rss:.0f} MB",
        flush=True,
    )
    return res


def _llama_bench_once(
    model: str, threads: int, pp: int | None, args: argparse.Namespace
) -> dict[str, float] | None:
    """One llama-bench run (its own warm-up first) of pp<pp> (if given) and tg: tokens/s of
    each ({"pp": ..., "tg": ...}), or None if it failed."""
    cmd = [args.llama_bench, "-m", model, "-t", str(threads), "-p", str(pp or 0)]
    rc, out, err, _ = _wait_run(cmd + ["-n", str(args.tg), "-r", "1", "-o", "json"])
    if rc != 0:
        print(f"    llama-bench failed (rc={rc}):\n" + "\n".join(err.strip().splitlines()[-5:]))
        return None
    res = {}
    for e in json.loads(out):
        res["tg" if e["n_gen"] else "pp"] = float(e["samples_ts"][0])
    return res


def _block_pcts(secs: list[float], beside: list[float], wbytes: int) -> list[float]:
    """Each block's decode as % of the higher of the two sweeps beside it (bytes/s)."""
    return [100.0 * BLOCK * wbytes / s / max(beside[i], beside[i + 1]) for i, s in enumerate(secs)]


def _spawn_paired(
    model: str, threads: int, wbytes: int, pp: int | None, args: argparse.Namespace
) -> dict[str, list[float]]:
    """Ours through generate and llama-bench's tg, run by run, a read probe between pairs.

    probe, (ours, llama-bench), probe, (llama-bench, ours), probe, ...: each pair runs between
    two probes, in alternating order, so ours and the peer are compared in one VM speed state
    and each run is set against the higher of its two neighbouring probes. With pp, each
    runtime's turn starts with one pp<pp> prefill (ours: eval_logits), paired the same way.
    """
    peer = args.llama_bench is not None
    print(
        f"  {PAIRED} threads={threads} (probe between runs"
        f"{', llama-bench tg alternated with ours' if peer else ''}) ...",
        flush=True,
    )
    cmd = [sys.executable, os.path.abspath(__file__), "--child", PAIRED, "--model", model]
    cmd += ["--threads", str(threads), "--runs", str(args.runs), "--tg", str(args.tg)]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    cin, cout = child.stdin, child.stdout

    def ask(req: str) -> dict[str, Any]:
        cin.write(req + "\n")
        cin.flush()
        return json.loads(cout.readline())

    out: dict[str, list[float]] = {
        "pct": [],
        "peer_pct": [],
        "ratio": [],
        "pp_ratio": [],
        "block_pct": [],
        "block_pct_weights": [],
    }
    try:
        if not json.loads(cout.readline()).get("ready"):
            return out
        probe = ask("probe")["probe_bps"]
        for r in range(args.runs):
            order = ["ours", "peer"] if r % 2 == 0 else ["peer", "ours"]
            tps: dict[str, float | None] = {}
            block_pct: list[float] = []
            block_w: list[float] = []
            bws: list[float] = []
            sweeps: list[float] = []
            pps: dict[str, float] = {}
            for who in order:
                if who == "ours":
                    if pp:
                        pps["ours"] = pp / ask(f"pp {pp}")["pp_s"]
                    tps["ours"] = args.tg / ask("gen")["gen_s"]
                    if args.tg >= 2 * BLOCK:  # quartiles need two blocks
                        blk = ask(f"blocks {BLOCK}")
                        bws, sweeps = blk["probe_bps"], blk["weights_bps"]
                        block_pct = _block_pcts(blk["block_s"], bws, wbytes)
                        block_w = _block_pcts(blk["block_s"], sweeps, wbytes)
                        out["block_pct"] += block_pct
                        out["block_pct_weights"] += block_w
                elif peer:
                    lb = _llama_bench_once(model, threads, pp, args) or {}
                    tps["peer"] = lb.get("tg")
                    if "pp" in lb:
                        pps["peer"] = lb["pp"]
            nxt = ask("probe")["probe_bps"]
            bw, ours, theirs = max(probe, nxt), tps["ours"], tps.get("peer")
            assert ours is not None
            out["pct"].append(100.0 * ours * wbytes / bw)
            line = (
                f"    run {r + 1}: probes {probe / 1e9:.1f} and {nxt / 1e9:.1f} GB/s; ours tg gen "
                f"{ours:.1f} t/s = {out['pct'][-1]:.0f}% of the higher"
            )
            if theirs:
                out["peer_pct"].append(100.0 * theirs * wbytes / bw)
                out["ratio"].append(ours / theirs)
                line += (
                    f"; llama-bench tg{args.tg} {theirs:.1f} t/s = {out['peer_pct'][-1]:.0f}%;"
                    f" ours / llama-bench {out['ratio'][-1]:.2f}x"
                )
            if block_pct:
                q = statistics.quantiles(block_pct, n=4)
                line += (
                    f"\n           ours in {len(block_pct)} blocks of {BLOCK} tokens, each against "
                    f"the higher of the probes beside it (same process, "
                    f"{min(bws) / 1e9:.1f}-{max(bws) / 1e9:.1f} GB/s): median "
                    f"{statistics.median(block_pct):.1f}% (quartiles {q[0]:.1f}-{q[2]:.1f}); "
                    f"of the weights' own sweep beside it ({min(sweeps) / 1e9:.1f}-"
                    f"{max(sweeps) / 1e9:.1f} GB/s): median {statistics.median(block_w):.1f}%"
                )
            if len(pps) == 2:
                out["pp_ratio"].append(pps["ours"] / pps["peer"])
                line += (
                    f"\n           pp{pp}: ours {pps['ours']:.1f} t/s, llama-bench "
                    f"{pps['peer']:.1f} t/s, ours / llama-bench {out['pp_ratio'][-1]:.2f}x"
                )
            print(line, flush=True)
            probe = nxt
        cin.write("quit\n")
        cin.flush()
    except (OSError, ValueError, KeyError) as e:  # a child that died mid-way
        print(f"  {PAIRED} failed: {e!r}")
    finally:
        cin.close()
        child.wait()
    return out


def _pps(spec: str) -> list[int]:
    return [int(n) for n in spec.split(",") if n.strip()]


def _fmt(tps: list[float]) -> str:
    return f"{_med(tps):7.1f} ({min(tps):.1f}-{max(tps):.1f})" if tps else "n/a"


def _model_facts(path: str) -> dict[str, Any]:
    from bluelm_cpp import _core

    g = _core.GGUFFile(path)
    meta = g.metadata
    arch = meta["general.architecture"]
    n_layer = int(meta[f"{arch}.block_count"])
    n_embd = int(meta[f"{arch}.embedding_length"])
    n_head = int(meta[f"{arch}.attention.head_count"])
    n_head_kv = int(meta.get(f"{arch}.attention.head_count_kv", n_head))
    head_dim = int(meta.get(f"{arch}.attention.key_length", n_embd // n_head))
    kv_dim = head_dim * n_head_kv
    # Weight bytes read per decoded token: every matrix once (the embedding row is noise).
    weight_bytes = 0
    tied = not any(t["name"] == "output.weight" for t in g.tensors)
    for t in g.tensors:
        if len(t["shape"]) == 2 and (t["name"] != "token_embd.weight" or tied):
            weight_bytes += int(t["nbytes"])
    return {
        "file_bytes": g.file_size,
        "weight_bytes_per_token": weight_bytes,
        "kv_bytes_f16": 2 * n_layer * N_CTX * kv_dim * 2,
        "n_layer": n_layer,
        "n_embd": n_embd,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--models",
        default="smollm2-q4_0,smollm2-q4_1,bluelm3b-q4_0",
        help="comma-separated names (see bench_models.py) or GGUF paths",
    )
    ap.add_argument("--model", default=None, help="one GGUF path (overrides --models)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument(
        "--big-threads", default=None, help="thread counts for bluelm3b-q4_0 (default: --threads)"
    )
    ap.add_argument("--runs", type=int, default=5, help="timed runs per test (median reported)")
    ap.add_argument(
        "--pp", default="512", help="prompt tokens for prefill, comma-separated (512,2048)"
    )
    ap.add_argument("--tg", type=int, default=128, help="tokens generated for decode")
    ap.add_argument("--llama-bench", default=None, help="llama.cpp's llama-bench binary")
    ap.add_argument("--llama-quantize", default=None, help="llama.cpp's llama-quantize binary")
    ap.add_argument("--no-llama-cpp-python", action="store_true", help="skip that peer")
    ap.add_argument(
        "--llama-cpp-python-max-mib",
        type=float,
        default=None,
        help="skip llama-cpp-python for files larger than this (saves time on big models)",
    )
    ap.add_argument("--cache", default=None, help="model cache folder (bench_models.py)")
    ap.add_argument("--json", metavar="OUT", default=None, help="also save results as JSON")
    ap.add_argument("--child", choices=[OURS, THEIRS, PAIRED], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        _run_child(args)
        return 0

    try:
        pps = _pps(args.pp)
    except ValueError:
        ap.error(f"--pp must be comma-separated integers, got {args.pp!r}")
    if not pps or min(pps) < 1 or max(pps) > N_CTX:
        ap.error(f"--pp lengths must lie in 1..n_ctx={N_CTX}")
    if args.tg + 1 > N_CTX:
        ap.error(f"--tg must be below n_ctx={N_CTX}")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_models

    import bluelm_cpp
    from bluelm_cpp import _core

    cache = args.cache or bench_models.DEFAULT_CACHE
    names = [args.model] if args.model else [m for m in args.models.split(",") if m.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    big_threads = [int(t) for t in (args.big_threads or args.threads).split(",") if t.strip()]
    if args.llama_bench is None:
        args.llama_bench = shutil.which("llama-bench")
    have_lcp = not args.no_llama_cpp_python and importlib.util.find_spec("llama_cpp") is not None
    runtimes = [OURS] + ([LLAMA_BENCH] if args.llama_bench else []) + ([THEIRS] if have_lcp else [])

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"machine  : {_cpu_model()}, {os.cpu_count()} logical cores, "
        f"{_core.physical_cores()} physical"
    )
    print(
        f"           {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print(f"           load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"bluelm   : {bluelm_cpp.__version__}, kernel ISA {_core.isa()} "
        f"(available: {', '.join(_core.available_isas())})"
    )
    print(
        f"llama.cpp: llama-bench {args.llama_bench or 'not given'}; "
        f"llama-cpp-python {_llama_version() if have_lcp else 'not used'}"
    )
    print(
        f"settings : n_ctx={N_CTX} (ours, llama-cpp-python; llama-bench: pp+tg) n_batch={N_BATCH}"
        f" pp{args.pp} tg{args.tg}, {args.runs} runs (+1 warm-up), median (min-max)"
    )

    bw: dict[int, float] = {}
    for t in sorted(set(threads) | set(big_threads)):
        bw[t] = _read_bandwidth(t)
        print(f"bandwidth: {t} thread(s): {bw[t] / 1e9:.1f} GB/s read (best of 5 sweeps, 512 MiB)")
    sys.stdout.flush()

    report: list[dict[str, Any]] = []
    all_ok = True
    for name in names:
        path = bench_models.model_path(name, cache, args.llama_quantize)
        facts = _model_facts(path)
        tlist = big_threads if name in _BIG else threads
        print(f"\n== {name}: {path}")
        print(
            f"   file {facts['file_bytes'] / 2**20:.1f} MiB, weights read per token "
            f"{facts['weight_bytes_per_token'] / 2**20:.1f} MiB, F16 KV at n_ctx {N_CTX} "
            f"{facts['kv_bytes_f16'] / 2**20:.1f} MiB",
            flush=True,
        )
        results: dict[tuple[str, int], dict[str, Any]] = {}
        skip_lcp = (
            args.llama_cpp_python_max_mib is not None
            and facts["file_bytes"] > args.llama_cpp_python_max_mib * 2**20
        )
        m_runtimes = [rt for rt in runtimes if not (skip_lcp and rt == THEIRS)]
        # This VM's read bandwidth drifts by half within minutes (35.7 and 54.8 GB/s
        # three minutes apart were seen), so each model's roofline is probed
        # right before and after its runs; the higher probe is the roofline.
        m_bw: dict[int, float] = {}
        paired: dict[str, dict[str, list[float]]] = {}
        for t in tlist:
            before = _read_bandwidth(t)
            for rt in m_runtimes:
                res = _spawn(rt, path, t, args)
                if res is None:
                    all_ok = False
                else:
                    results[(rt, t)] = res
            after = _read_bandwidth(t)
            m_bw[t] = max(before, after)
            print(
                f"   bandwidth, {t} thread(s): {before / 1e9:.1f} GB/s before, "
                f"{after / 1e9:.1f} after these runs (roofline from the higher)"
            )
            if t == 2 and name in _PAIRED and OURS in m_runtimes:
                pp = SHORT_PP if name in PP_TARGET else None
                paired[name] = _spawn_paired(path, t, facts["weight_bytes_per_token"], pp, args)
        pp_names = "".join(f"  {f'pp{n} t/s':>22}" for n in pps)
        tg_name = f"tg{args.tg} t/s"
        hdr = (
            f"   {'runtime':<17}{'thr':>4}{pp_names}  {tg_name:>22}  {'% roofline':>10}"
            f"  {'peak RSS MB':>11}"
        )
        print(hdr)
        for t in tlist:
            roof = m_bw[t] / facts["weight_bytes_per_token"]
            for rt in m_runtimes:
                r = results.get((rt, t))
                if r is None:
                    print(f"   {rt:<17}{t:>4}  failed")
                    continue
                pct = 100.0 * _med(r["tg_tps"]) / roof
                pp_cols = "".join(f"  {_fmt(r['pp_tps'].get(str(n), [])):>22}" for n in pps)
                print(
                    f"   {rt:<17}{t:>4}{pp_cols}  {_fmt(r['tg_tps']):>22}  "
                    f"{pct:>9.0f}%  {r['peak_rss_mb']:>11.0f}"
                )
                if "gen_tps" in r:
                    gpct = 100.0 * _med(r["gen_tps"]) / roof
                    print(
                        f"   {rt + ' (tg gen)':<21}{'':>{24 * len(pps)}}  "
                        f"{_fmt(r['gen_tps']):>18}  {gpct:>9.0f}%"
                    )
            print(f"   {'(roofline)':<17}{t:>4}{'':>{24 * len(pps)}}  {roof:>22.1f}")
            ours = results.get((OURS, t))
            for peer in (LLAMA_BENCH, THEIRS):
                theirs = results.get((peer, t))
                if ours and theirs:
                    prs = "".join(f"  {pp_ratio(ours, theirs, n):>21.2f}x" for n in pps)
                    tr = _med(ours["tg_tps"]) / _med(theirs["tg_tps"])
                    rr = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
                    print(f"   {'ours/' + peer:<21}{prs}  {tr:>21.2f}x  {'':>10}  {rr:>10.2f}x")
                    if "gen_tps" in ours:
                        gr = _med(ours["gen_tps"]) / _med(theirs["tg_tps"])
                        print(f"   {'ours gen/' + peer:<21}{'':>{24 * len(pps)}}  {gr:>21.2f}x")
        entry = {
            "model": name,
            "path": path,
            **facts,
            "bandwidth": {str(k): v for k, v in m_bw.items()},
            "results": [{"runtime": rt, "threads": t, **r} for (rt, t), r in results.items()],
        }
        report.append(entry)
        if paired.get(name):
            entry["paired"] = paired[name]
        print_targets(
            name,
            facts,
            results.get((OURS, 2)),
            results.get((LLAMA_BENCH, 2)),
            m_bw[2],
            pps,
            paired.get(name, {}),
            n_ctx=N_CTX,
            block=BLOCK,
        )
        sys.stdout.flush()

    if args.json:
        payload = {
            "machine": {
                "cpu": _cpu_model(),
                "logical_cores": os.cpu_count(),
                "loadavg_start": list(load),
            },
            "bluelm_isa": _core.isa(),
            "llama_bench": args.llama_bench,
            "settings": {
                "n_ctx": N_CTX,
                "n_batch": N_BATCH,
                "pp": pps,
                "tg": args.tg,
                "runs": args.runs,
                "seed": SEED,
            },
            "models": report,
        }
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
        print(f"saved {args.json}")
    return 0 if all_ok else 1


# Big models take --big-threads; ours and llama-bench also alternated run by run
# (_spawn_paired) for the models with a roofline target and the K-quant mixes, whose
# targets sat near their bars while the VM's speed state flipped between runs.
_BIG = ("bluelm3b-q4_0", "llama1b-q4_k_m")
_PAIRED = ("bluelm3b-q4_0", "llama1b-q4_k_m", "smollm2-q4_k_m")


if __name__ == "__main__":
    sys.exit(main())
