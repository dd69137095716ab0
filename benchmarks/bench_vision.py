#!/usr/bin/env python3
"""Vision encode time: bluelm-cpp's SigLIP (so400m shape) vs transformers' SiglipVisionModel.

Random weights in the so400m shape (27 layers, C 1152, F 4304, 16 heads, 384x384
patches of 14x14 -> 729 tokens) are written straight to GGUF with numpy (Q8_0 and
F16 matrices, per docs/vision_format.md), and transformers' ``SiglipVisionModel``
of the same shape runs in fp32 and bf16 with the same thread count
(``torch.set_num_threads``), in the same run. Reported: median seconds per patch
(encoder only, as SiglipVisionModel) at each batch size; a whole 768x1536 image
(768 wide, 1536 high: BlueLM-V relaxed grid + thumbnail) to projected embeddings; and the
peak RSS of child processes encoding 1, 4 and 9 patches with batch 4, which shows
that memory is bounded by the batch, not by the image.

Usage:
    python benchmarks/bench_vision.py [--threads 2] [--batches 1,2,4,6] [--repeats 3]
                                      [--layers 27] [--no-torch] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _reset_peak_rss() -> None:
    # A child can start with its parent's high-water mark; "5" resets VmHWM (Linux >= 4.0).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fmt(ts: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in ts)


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 384, 384)).astype(np.float32)


class Engine:
    """One encoder under test: ``run(x)`` encodes a batch of patches."""

    def __init__(self, name: str, run: Any, to_input: Any) -> None:
        self.name, self.run, self.to_input = name, run, to_input


def ours_engine(path: str, wtype: str, threads: int) -> Engine:
    from bluelm_cpp import _core

    vm = _core.VisionModel(path)

    def run(x: np.ndarray) -> None:
        vm.encode_features(x, threads, batch_size=len(x))

    return Engine("ours " + wtype, run, lambda x: x)


def torch_engine(dtype_name: str, threads: int, layers: int) -> Engine:
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=layers,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        vision_use_head=False,
    )
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    model = SiglipVisionModel(cfg).eval().to(dtype)

    def run(x: Any) -> None:
        with torch.inference_mode():
            model(pixel_values=x)

    return Engine("torch " + dtype_name, run, lambda x: torch.from_numpy(x).to(dtype))


def interleaved(
    engines: list[Engine], batches: list[int], repeats: int, only: dict[str, list[int]]
) -> dict[str, dict[int, dict[str, float]]]:
    """Engines take turns on every batch and repeat, so a load change on the shared
    machine hits all of them alike; wall and process CPU seconds per patch, medians."""
    for e in engines:
        e.run(e.to_input(_pixels(1)))  # warm-up: page-in, allocator, oneDNN kernels
    out: dict[str, dict[int, dict[str, float]]] = {e.name: {} for e in engines}
    for b in batches:
        x = _pixels(b)
        walls: dict[str, list[float]] = {e.name: [] for e in engines}
        cpus: dict[str, list[float]] = {e.name: [] for e in engines}
        for _ in range(repeats):
            for e in engines:
                if e.name in only and b not in only[e.name]:
                    continue
                xi = e.to_input(x)
                c0, t0 = os.times(), time.perf_counter()
                e.run(xi)
                t1, c1 = time.perf_counter(), os.times()
                walls[e.name].append((t1 - t0) / b)
                cpus[e.name].append((c1.user + c1.system - c0.user - c0.system) / b)
        for e in engines:
            if walls[e.name]:
                w, c = statistics.median(walls[e.name]), statistics.median(cpus[e.name])
                out[e.name][b] = {"wall": w, "cpu": c}
                print(
                    f"  {e.name:>11} batch {b}: {w:7.3f} s/patch wall, {c:7.3f} CPU-s/patch "
                    f"(runs {_fmt(walls[e.name])})",
                    flush=True,
                )
    return out


def whole_image(path: str, threads: int) -> dict[str, Any]:
    from bluelm_cpp import _core
    from bluelm_cpp.vision import bluelm_v_patches

    img = np.random.default_rng(1).integers(
        0, 256, (1536, 768, 3), dtype=np.uint8
    )  # 768 wide, 1536 high
    vm = _core.VisionModel(path)
    t0 = time.perf_counter()
    pix, layout = bluelm_v_patches(img, patch_side=384)
    t1 = time.perf_counter()
    emb = vm.encode(pix, threads, batch_size=4)
    t2 = time.perf_counter()
    return {
        "grid": [layout.cols, layout.rows],
        "patches": int(pix.shape[0]),
        "embeddings": list(emb.shape),
        "preprocess_s": t1 - t0,
        "encode_s": t2 - t1,
        "per_patch_s": (t2 - t1) / pix.shape[0],
    }


def _rss_child(path: str, n: int, batch: int, threads: int) -> None:
    from bluelm_cpp import _core

    _reset_peak_rss()
    vm = _core.VisionModel(path)
    base = _peak_rss_mb()
    emb = vm.encode(_pixels(n), threads, batch_size=batch)
    print(
        json.dumps(
            {
                "n": n,
                "batch": batch,
                "after_load_mb": base,
                "peak_mb": _peak_rss_mb(),
                "output_mb": emb.nbytes / 2**20,
                "input_mb": n * 3 * 384 * 384 * 4 / 2**20,
            }
        )
    )


def rss_series(path: str, threads: int) -> list[dict[str, Any]]:
    rows = []
    for n, batch in ((1, 4), (4, 4), (9, 4)):
        r = subprocess.run(
            [sys.executable, __file__, "--rss-child", path, str(n), str(batch), str(threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,2,4,6")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--layers",
        type=int,
        default=27,
        help="encoder layers (27 = so400m; fewer for a quick look)",
    )
    ap.add_argument("--types", default="q8_0,f16")
    ap.add_argument(
        "--bf16-batches",
        default="1",
        help="batches for torch bf16 (slow on CPUs without AVX512-BF16/AMX)",
    )
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument(
        "--rss-layers",
        type=int,
        default=0,
        help="encoder layers of the file used for the RSS series (0: same as --layers); the "
        "scratch memory does not depend on the depth, so a shallow file shows the same growth",
    )
    ap.add_argument("--no-image", action="store_true", help="skip the whole-image run")
    ap.add_argument(
        "--workdir", default=None, help="where the GGUFs go (kept for reuse); default a temp dir"
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child:
        _rss_child(a.rss_child[0], int(a.rss_child[1]), int(a.rss_child[2]), int(a.rss_child[3]))
        return 0

    from vision_gguf_writer import SO400M, random_tensors, write_vision_gguf

    from bluelm_cpp import _core

    batches = [int(b) for b in a.batches.split(",")]
    cfg = dict(SO400M, layers=a.layers)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_vision_"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"isa {_core.isa()}, threads {a.threads}, layers {a.layers}, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(
        "timings are medians of --repeats runs after one warm-up; "
        "the machine may be shared, so compare ratios"
    )
    res: dict[str, Any] = {
        "threads": a.threads,
        "layers": a.layers,
        "load_start": os.getloadavg()[0],
    }
    paths = {}
    for t in a.types.split(","):
        p = work / f"so400m_{a.layers}l_{t}.gguf"
        if not p.exists():
            write_vision_gguf(p, cfg, random_tensors(cfg), t)
        paths[t] = str(p)
    print("per-patch encode (encoder only, 729 tokens), engines interleaved:")
    engines = [ours_engine(p, t, a.threads) for t, p in paths.items()]
    only: dict[str, list[int]] = {}
    if not a.no_torch:
        try:
            engines.append(torch_engine("fp32", a.threads, a.layers))
            bf16_batches = [int(b) for b in a.bf16_batches.split(",") if b]
            if bf16_batches:
                engines.append(torch_engine("bf16", a.threads, a.layers))
                only["torch bf16"] = bf16_batches
        except ImportError as e:
            print(f"  torch/transformers not available ({e}); no peer")
    res["timings"] = interleaved(engines, batches, a.repeats, only)
    del engines
    peers = [n for n in res["timings"] if n.startswith("torch")]
    if peers:
        print("speed-up vs PyTorch (wall per patch, same batch, same turns):")
        for n, by_b in res["timings"].items():
            if n.startswith("torch"):
                continue
            for p in peers:
                tb = res["timings"][p]
                ratios = ", ".join(
                    f"b{b} {tb[b]['wall'] / by_b[b]['wall']:.2f}x" for b in batches if b in tb
                )
                print(f"  {n} vs {p}: {ratios}")
    main_t = "q8_0" if "q8_0" in paths else next(iter(paths))
    if not a.no_image:
        res["whole_image"] = whole_image(paths[main_t], a.threads)
        print(f"whole 768x1536 image ({main_t}, batch 4): {res['whole_image']}")
    rss_path = paths[main_t]
    if a.rss_layers and a.rss_layers != a.layers:
        rss_path = str(work / f"so400m_{a.rss_layers}l_{main_t}.gguf")
        if not Path(rss_path).exists():
            rcfg = dict(SO400M, layers=a.rss_layers)
            write_vision_gguf(rss_path, rcfg, random_tensors(rcfg), main_t)
    res["rss"] = rss_series(rss_path, a.threads)
    print(f"peak RSS (child processes, batch 4, {Path(rss_path).stem}):")
    for r in res["rss"]:
        print(
            f"  {r['n']} patches: peak {r['peak_mb']:.0f} MB "
            f"(after load {r['after_load_mb']:.0f} MB; "
            f"input {r['input_mb']:.1f} MB, output {r['output_mb']:.1f} MB)"
        )
    res["load_end"] = os.getloadavg()[0]
    print(f"load average at end {res['load_end']:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
