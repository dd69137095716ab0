"""Time to first token (TTFT) for an image question: sequential, pipelined
(patch encoding overlapped with the LLM prefill) and pre-encoded, with each
stage's time, thread splits, the second chat turn and peak RSS.

Random weights in GGUF files written once under /tmp (benchmarks/random_gguf.py):
the BlueLM-V-3B shape (SigLIP so400m Q8_0 + 2.7B LLaMA-shape LLM Q4_0) or a
small shape (a 12-layer SigLIP-B-width tower + SmolLM2-135M's shape). The image
is 768x1536 (relaxed 2:4 grid + thumbnail = 9 patches), the question 30 tokens.

Every measurement runs in its own child process so peak RSS is per scenario.

``--baseline-python PATH`` also runs the sequential TTFT with another install of
bluelm_cpp (that Python's, e.g. the commit before a change) in the same run and prints
the ratio. With ``--shape 3b`` the script ends with the paper's table (PAPER.md: the
vivo X100's NPU figures) beside ours: load + encode of the 768x1536 image, prefill of
2048 text tokens in chunks of 128, decode tokens/s and peak RSS, in one child process.

Usage:
    nice python benchmarks/bench_pipeline.py --shape small --repeats 3
    nice python benchmarks/bench_pipeline.py --shape 3b --repeats 1 --threads 2 --no-splits
    nice python benchmarks/bench_pipeline.py --shape 3b --threads 2 --kv-type q8_0 \\
        --baseline-python /work/venvs/baseline/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import random_gguf  # noqa: E402

CACHE = Path(os.environ.get("BLUELM_BENCH_CACHE", "/tmp/sched-bench"))
SEED = 1234
PREFIX_TOKENS = 6  # BOS + a user header before the image
QUESTION_TOKENS = 30
TEMPLATE_TOKENS = 6  # end of turn + assistant header after the question
ANSWER_TOKENS = 8
PAPER_PREFILL = 2048  # the paper's prefill figure: 2048 input tokens
PAPER_DECODE = 64  # tokens decoded after it
TTFT_TARGET = 0.7  # issue 15: TTFT at most 0.7x the baseline's
# PAPER.md, "Published figures": BlueLM-V-3B on the vivo X100's NPU.
PAPER = {"load_s": 0.47, "encode_s": 2.06, "prefill_s": 2.7, "decode_tps": 24.4, "peak_mb": 2200}


def model_files(shape: str) -> tuple[Path, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    if shape == "3b":
        llm = random_gguf.write_llm(CACHE / "llm-3b-q4_0.gguf", random_gguf.LlmShape.bluelm_3b())
        vis = random_gguf.write_vision(
            CACHE / "vision-so400m-q8_0.gguf", random_gguf.VisionShape.so400m(2560)
        )
    else:
        llm = random_gguf.write_llm(CACHE / "llm-small-q4_0.gguf", random_gguf.LlmShape.small())
        vis = random_gguf.write_vision(
            CACHE / "vision-small-q8_0.gguf", random_gguf.VisionShape.small(576)
        )
    return llm, vis


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- one scenario, in a child process ---------------------------------------------


def paper_child(a: argparse.Namespace) -> dict[str, Any]:
    """The paper's table, measured: load, encode of the image, prefill of 2048
    random tokens (chunks of 128) into the --kv-type cache, decode, peak RSS."""
    from bluelm_cpp import _core
    from bluelm_cpp.vision import bluelm_v_patches

    llm_path, vis_path = model_files(a.shape)
    t0 = time.perf_counter()
    lm = _core.LlamaModel(str(llm_path))
    vm = _core.VisionModel(str(vis_path))
    out: dict[str, Any] = {"load_s": time.perf_counter() - t0}
    rng = np.random.default_rng(SEED)
    image = rng.integers(0, 256, size=(1536, 768, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    px, _ = bluelm_v_patches(image, max_side=a.max_side, mean=(0.5,) * 3, std=(0.5,) * 3)
    emb = vm.encode(px, a.n_threads, 4)  # encoder + projector, batches of 4 (the paper's)
    out["encode_s"] = time.perf_counter() - t0
    out["image_rows"] = int(emb.shape[0] * emb.shape[1]) if emb.ndim == 3 else int(emb.shape[0])
    vm.release_weights()  # the paper's decoupling: the ViT is released after the image
    ctx = _core.Context(lm, PAPER_PREFILL + PAPER_DECODE + 1, 128, a.n_threads, a.kv_type)
    ids = rng.integers(10, lm.n_vocab, PAPER_PREFILL).tolist()
    t0 = time.perf_counter()
    ctx.eval(ids)
    out["prefill_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(PAPER_DECODE):
        ctx.eval([int(np.argmax(ctx.logits()))])
    out["decode_tps"] = PAPER_DECODE / (time.perf_counter() - t0)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def child(a: argparse.Namespace) -> dict[str, Any]:
    from bluelm_cpp import _core
    from bluelm_cpp.image_prefill import ImagePrefiller
    from bluelm_cpp.vision import bluelm_v_patches

    llm_path, vis_path = model_files(a.shape)
    t_load = time.perf_counter()
    lm = _core.LlamaModel(str(llm_path))
    vm = _core.VisionModel(str(vis_path))
    load_s = time.perf_counter() - t_load
    rng = np.random.default_rng(SEED)
    image = rng.integers(0, 256, size=(1536, 768, 3), dtype=np.uint8)  # H x W: 768x1536 (WxH)
    n_vocab = lm.n_vocab
    prefix = rng.integers(10, n_vocab, PREFIX_TOKENS).tolist()
    question = rng.integers(10, n_vocab, QUESTION_TOKENS + TEMPLATE_TOKENS).tolist()
    question2 = rng.integers(10, n_vocab, QUESTION_TOKENS + TEMPLATE_TOKENS).tolist()
    out: dict[str, Any] = {"load_s": load_s, "runs": []}

    def patches() -> np.ndarray:
        px, layout = bluelm_v_patches(image, max_side=a.max_side, mean=(0.5,) * 3, std=(0.5,) * 3)
        out["grid"] = [layout.cols, layout.rows]
        return px[: a.patches] if a.patches else px

    def prefiller(overlap: bool, nv: int, nl: int, release: bool) -> ImagePrefiller:
        ctx = _core.Context(lm, a.n_ctx, 128, nl, a.kv_type)
        return ImagePrefiller(
            ctx,
            vm,
            n_threads_vision=nv,
            first_batch=a.first_batch,
            overlap=overlap,
            release_vision=release,
        )

    mode = a.mode
    for rep in range(a.repeats):
        run: dict[str, Any] = {"rep": rep}
        if mode in ("sequential", "pipelined"):
            overlap = mode == "pipelined"
            p = prefiller(overlap, a.n_threads_vision, a.n_threads, a.release_vision)
            t0 = time.perf_counter()
            px = patches()
            run["preprocess_s"] = time.perf_counter() - t0
            st = p.prefill([prefix, px, question])
            int(np.argmax(p.ctx.logits()))
            run["ttft_s"] = time.perf_counter() - t0
            run["stages"] = st.stages
            if a.turn2:
                answer = []
                for _ in range(ANSWER_TOKENS):
                    tok = int(np.argmax(p.ctx.logits()))
                    answer.append(tok)
                    p.ctx.eval([tok])  # the context records the answer's keys
                t1 = time.perf_counter()
                st2 = p.prefill([prefix, px, question + answer + question2])
                int(np.argmax(p.ctx.logits()))
                run["turn2_ttft_s"] = time.perf_counter() - t1
                run["turn2_prefilled"] = st2.n_prefilled
                run["turn2_encoded"] = st2.n_patches_encoded
        elif mode == "prepared":
            # The image arrives first and is encoded while the user types.
            p = prefiller(True, a.n_threads_vision, a.n_threads, a.release_vision)
            t0 = time.perf_counter()
            h = p.prepare(patches())
            h.result()
            run["before_question_s"] = time.perf_counter() - t0
            run["vision_loaded_after_encode"] = bool(vm.weights_loaded)
            t1 = time.perf_counter()
            st = p.prefill([prefix, h, question])
            int(np.argmax(p.ctx.logits()))
            run["ttft_s"] = time.perf_counter() - t1
            run["prefilled"] = st.n_prefilled
            run["stages"] = st.stages
            # Ahead: prepare(prefix=...) also prefills the prefix and the image's
            # rows into the KV cache before the question (the encode is a cache
            # hit here), so the question prefills only its own tokens.
            p.reset()
            t2 = time.perf_counter()
            h2 = p.prepare(patches(), prefix=prefix)
            h2.result()
            if not h2.kv_ready(3600) or h2.kv_error is not None:
                raise RuntimeError(f"the KV-ahead step failed: {h2.kv_error!r}")
            run["ahead_before_question_s"] = time.perf_counter() - t2
            t3 = time.perf_counter()
            st2 = p.prefill([prefix, h2, question2])
            int(np.argmax(p.ctx.logits()))
            run["ahead_ttft_s"] = time.perf_counter() - t3
            run["ahead_prefilled"] = st2.n_prefilled
        out["runs"].append(run)
        vm.release_weights() if a.release_vision else None
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# -- the parent: scenarios, medians, ratios -------------------------------------


def spawn(a: argparse.Namespace, **kw: Any) -> dict[str, Any] | None:
    opts = {
        "mode": "sequential",
        "n_threads": 1,
        "n_threads_vision": 1,
        "release_vision": False,
        "turn2": False,
        "python": sys.executable,
    }
    opts.update(kw)
    cmd = [opts["python"], os.path.abspath(__file__), "--child", "--shape", a.shape]
    cmd += ["--repeats", str(a.repeats), "--patches", str(a.patches), "--n-ctx", str(a.n_ctx)]
    cmd += ["--kv-type", a.kv_type, "--mode", opts["mode"]]
    cmd += ["--first-batch", str(a.first_batch), "--max-side", str(a.max_side)]
    cmd += [
        "--n-threads",
        str(opts["n_threads"]),
        "--n-threads-vision",
        str(opts["n_threads_vision"]),
    ]
    for flag in ("release_vision", "turn2"):
        if opts[flag]:
            cmd.append("--" + flag.replace("_", "-"))
    label = (
        f"{'baseline ' if opts['python'] != sys.executable else ''}{opts['mode']} "
        f"v={opts['n_threads_vision']} llm={opts['n_threads']}"
        f"{' release_vision' if opts['release_vision'] else ''}"
    )
    print(f"  running {label} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {label} failed (rc={proc.returncode}):\n{proc.stderr[-2000:]}")
        return None
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    res["label"] = label
    if a.json_log:
        with open(a.json_log, "a") as f:
            f.write(json.dumps(res) + "\n")
    return res


def med(res: dict[str, Any], key: str) -> float:
    return statistics.median(r[key] for r in res["runs"])


def stages(run: dict[str, Any]) -> list[dict[str, Any]]:
    # One dict per scheduler call (older installs: a list of them, e.g. a baseline).
    st = run["stages"]
    return st if isinstance(st, list) else [st] if st else []


def stage_sum(run: dict[str, Any], key: str) -> float:
    return sum(s[key] for s in stages(run))


def describe(res: dict[str, Any]) -> str:
    r = res["runs"][len(res["runs"]) // 2]
    return (
        f"TTFT median {med(res, 'ttft_s'):8.2f} s  "
        f"[encode {stage_sum(r, 'encode_s'):.2f} s, LLM prefill {stage_sum(r, 'prefill_s'):.2f} s, "
        f"LLM waiting {stage_sum(r, 'wait_s'):.2f} s, "
        f"first batch {stages(r)[-1]['first_batch_s']:.2f} s, "
        f"rows {sum(s['n_rows'] for s in stages(r))}]  peak RSS {res['peak_rss_mb']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shape", choices=("small", "3b"), default="small")
    ap.add_argument("--repeats", type=int, default=3, help="runs per scenario (median)")
    ap.add_argument(
        "--threads", type=int, default=0, help="total threads (0: every count 1..cores)"
    )
    ap.add_argument("--no-splits", action="store_true", help="only the even split per count")
    ap.add_argument("--patches", type=int, default=0, help="use only the first N patches (0: all)")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--first-batch", type=int, default=1, help="patches in the first encoder batch")
    ap.add_argument("--max-side", type=int, default=4, help="grid side limit (4: 2:4 + thumbnail)")
    ap.add_argument("--kv-type", default="f16")
    ap.add_argument("--json-log", default="", help="append each scenario's raw result here")
    ap.add_argument(
        "--baseline-python",
        default="",
        help="a Python whose bluelm_cpp is the baseline: its sequential TTFT in the same run",
    )
    ap.add_argument("--no-paper", action="store_true", help="skip the paper's table (3b shape)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="sequential", help=argparse.SUPPRESS)
    ap.add_argument("--n-threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--n-threads-vision", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--release-vision", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--turn2", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(paper_child(a) if a.mode == "paper" else child(a)))
        return 0

    from bluelm_cpp import _core

    cores = _core.physical_cores()
    print(f"machine: {os.cpu_count()} hardware threads, {cores} physical cores, isa {_core.isa()}")
    print(
        f"shape {a.shape}; image 768x1536, question {QUESTION_TOKENS} tokens; "
        f"n_ctx {a.n_ctx}, KV {a.kv_type}, n_batch 128, vision batch 4 (first {a.first_batch}), "
        f"grid side <= {a.max_side}; "
        f"{a.repeats} repeat(s) per scenario; timings on a shared machine are noisy"
    )
    model_files(a.shape)
    counts = [a.threads] if a.threads else list(range(1, cores + 1))
    summary: dict[str, float] = {}
    for t in counts:
        print(f"\n== {t} thread(s) in total")
        seq = spawn(a, mode="sequential", n_threads=t, n_threads_vision=t, turn2=True)
        if seq:
            print(f"  sequential (encoder {t}, then LLM {t}):    {describe(seq)}")
            print(
                f"  second turn: TTFT {med(seq, 'turn2_ttft_s'):.2f} s "
                f"({seq['runs'][0]['turn2_prefilled']} positions prefilled, "
                f"{seq['runs'][0]['turn2_encoded']} patches encoded) = "
                f"{med(seq, 'turn2_ttft_s') / med(seq, 'ttft_s'):.3f}x the first turn"
            )
        splits = [(v, t - v) for v in range(1, t)] or [(1, 1)]
        if a.no_splits:
            splits = [(max(t // 2, 1), max(t - t // 2, 1))]
        for v, n in splits:
            pipe = spawn(a, mode="pipelined", n_threads=n, n_threads_vision=v, release_vision=True)
            if pipe and seq:
                ratio = med(pipe, "ttft_s") / med(seq, "ttft_s")
                extra = " (oversubscribed)" if v + n > t else ""
                print(f"  pipelined (encoder {v} | LLM {n}){extra}: {describe(pipe)}")
                print(f"    pipelined / sequential TTFT = {ratio:.3f}")
                summary[f"pipelined/sequential t={t} split={v}+{n}"] = ratio
                summary[f"peak RSS MB pipelined release_vision t={t} split={v}+{n}"] = pipe[
                    "peak_rss_mb"
                ]
        prep = spawn(a, mode="prepared", n_threads=t, n_threads_vision=t, release_vision=True)
        if prep and seq:
            for key, what, pre in (
                ("ttft_s", "image encoded", "prefilled"),
                ("ahead_ttft_s", "image encoded, prefix + image in the KV", "ahead_prefilled"),
            ):
                ratio = med(prep, key) / med(seq, "ttft_s")
                print(
                    f"  prepared ({what} before the question; release_vision): "
                    f"TTFT {med(prep, key):.2f} s = {ratio:.3f}x sequential, "
                    f"{prep['runs'][0][pre]} positions prefilled after the question"
                )
                summary[f"prepared{'+ahead' if pre != 'prefilled' else ''}/sequential t={t}"] = (
                    ratio
                )
            print(
                f"    before the question: encode {med(prep, 'before_question_s'):.2f} s, "
                f"KV-ahead prefill {med(prep, 'ahead_before_question_s'):.2f} s; "
                "vision weights loaded after encode: "
                f"{prep['runs'][0]['vision_loaded_after_encode']}; "
                f"peak RSS with release_vision {prep['peak_rss_mb']:.0f} MB"
            )
            summary[f"peak RSS MB release_vision t={t}"] = prep["peak_rss_mb"]
        if seq:
            summary[f"turn2/turn1 t={t}"] = med(seq, "turn2_ttft_s") / med(seq, "ttft_s")
            summary[f"peak RSS MB sequential t={t}"] = seq["peak_rss_mb"]
        if a.baseline_python:
            base = spawn(
                a, mode="sequential", n_threads=t, n_threads_vision=t, python=a.baseline_python
            )
            if base:
                print(f"  baseline sequential ({a.baseline_python}): {describe(base)}")
            if base and seq:
                ratio = med(seq, "ttft_s") / med(base, "ttft_s")
                ok = "met" if ratio <= TTFT_TARGET else "NOT met"
                print(
                    f"    sequential TTFT ours / baseline = {ratio:.3f} "
                    f"(target <= {TTFT_TARGET}, KV {a.kv_type}): {ok}"
                )
                summary[f"sequential TTFT ours/baseline t={t}"] = ratio
    if a.shape == "3b" and not a.no_paper:
        paper_table(a, counts[-1])
    print("\nsummary:")
    for k, v in summary.items():
        print(f"  {k}: {v:.3f}")
    return 0


def paper_table(a: argparse.Namespace, threads: int) -> None:
    runs = [x for x in (spawn(a, mode="paper", n_threads=threads) for _ in range(a.repeats)) if x]
    if not runs:
        return
    ours = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "image_rows"}
    print(
        f"\npaper's table (PAPER.md; vivo X100 NPU) beside ours ({threads} CPU threads, "
        f"KV {a.kv_type}, random weights of the BlueLM-V-3B shape, median of {len(runs)}):"
    )
    print(f"  {'':<40}{'paper':>10}{'ours':>10}")
    rows = [
        ("load (s)", PAPER["load_s"], ours["load_s"], ".2f"),
        (
            f"encode 768x1536, {runs[0]['image_rows']} rows (s)",
            PAPER["encode_s"],
            ours["encode_s"],
            ".2f",
        ),
        (f"LLM prefill, {PAPER_PREFILL} tokens (s)", PAPER["prefill_s"], ours["prefill_s"], ".2f"),
        ("decode (tokens/s)", PAPER["decode_tps"], ours["decode_tps"], ".1f"),
        ("peak memory (MB; ours: peak RSS)", PAPER["peak_mb"], ours["peak_rss_mb"], ".0f"),
    ]
    for name, theirs, mine, f in rows:
        print(f"  {name:<40}{theirs:>10{f}}{mine:>10{f}}")


if __name__ == "__main__":
    raise SystemExit(main())
