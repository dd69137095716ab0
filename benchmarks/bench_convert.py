#!/usr/bin/env python3
"""Time and peak memory of converting a BlueLM-3B-shaped checkpoint to Q4_0 (or --outtype).

Writes (once, then reuses) a random-weight checkpoint in the BlueLM-3B shape
(PAPER.md: hidden 2560, 28 layers, 20 heads of 128, FFN 6912, vocab 100096,
about 2.7B parameters) as BF16 safetensors shards with an index, a
``LlamaForCausalLM`` config.json and the tiny SentencePiece model from
``tests/data/tokenizer/spm_bpe.model`` as ``tokenizer.model`` (the converter pads
the vocabulary to 100096). The writer streams each tensor in row chunks, so it
stays small in memory too.

Then runs ``python convert/to_gguf.py DIR -o OUT --outtype q4_0`` (or the
``--outtype`` given, e.g. ``q4_k_m``: the C++ quantiser on every core) in a child
process ``--runs`` times and prints wall time and the child's peak RSS
(``ru_maxrss`` from ``os.wait4``; the issue's bar is 1.5 GB), and checks the
output loads in this runtime (``bluelm_cpp._core.LlamaModel``). The GGUF is
deleted at the end unless ``--keep``.

    nice python benchmarks/bench_convert.py [--cache /tmp/bluelm3b-random] [--runs 1] \
        [--outtype q4_k_m]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPM_MODEL = ROOT / "tests" / "data" / "tokenizer" / "spm_bpe.model"

HIDDEN, N_LAYER, N_HEAD, HEAD_DIM, N_FF, N_VOCAB = 2560, 28, 20, 128, 6912, 100096
LAYERS_PER_SHARD = 6
CHUNK_ELEMS = 8 << 20  # random values generated per step (32 MiB of float32)
SEED = 1234


def tensor_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """HF names and shapes of the checkpoint, in save order."""
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (N_VOCAB, HIDDEN))]
    q = N_HEAD * HEAD_DIM
    for i in range(N_LAYER):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "self_attn.q_proj.weight", (q, HIDDEN)),
            (p + "self_attn.k_proj.weight", (q, HIDDEN)),
            (p + "self_attn.v_proj.weight", (q, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, q)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
            (p + "mlp.gate_proj.weight", (N_FF, HIDDEN)),
            (p + "mlp.up_proj.weight", (N_FF, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, N_FF)),
        ]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (N_VOCAB, HIDDEN))]
    return out


def shard_of(name: str) -> int:
    if name.startswith("model.layers."):
        return 1 + int(name.split(".")[2]) // LAYERS_PER_SHARD
    return 0 if name == "model.embed_tokens.weight" else 1 + (N_LAYER - 1) // LAYERS_PER_SHARD


def write_shard(
    path: Path, tensors: list[tuple[str, tuple[int, ...]]], rng: np.random.Generator
) -> None:
    """Safetensors by hand: header first (sizes are known), then data in chunks."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _name, shape in tensors:
            total = int(np.prod(shape))
            for start in range(0, total, CHUNK_ELEMS):
                n = min(CHUNK_ELEMS, total - start)
                if len(shape) == 1:  # norms around 1
                    x = 1 + 0.1 * rng.standard_normal(n, dtype=np.float32)
                else:
                    x = 0.02 * rng.standard_normal(n, dtype=np.float32)
                f.write((x.view(np.uint32) >> 16).astype("<u2").tobytes())
    tmp.replace(path)


def make_checkpoint(d: Path) -> None:
    """Write the random checkpoint into ``d`` unless it is already complete."""
    done = d / "complete"
    if done.is_file():
        return
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    shapes = tensor_shapes()
    n_shards = 1 + shard_of("lm_head.weight")
    weight_map: dict[str, str] = {}
    for s in range(n_shards):
        fname = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = [(n, sh) for n, sh in shapes if shard_of(n) == s]
        t0 = time.perf_counter()
        write_shard(d / fname, part, rng)
        print(
            f"  wrote {fname} ({(d / fname).stat().st_size / 1e9:.2f} GB, "
            f"{time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        weight_map.update({n: fname for n, _ in part})
    total = sum(2 * int(np.prod(sh)) for _, sh in shapes)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": N_VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": N_FF,
        "num_hidden_layers": N_LAYER,
        "num_attention_heads": N_HEAD,
        "num_key_value_heads": N_HEAD,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    (d / "config.json").write_text(json.dumps(config, indent=1))
    shutil.copyfile(SPM_MODEL, d / "tokenizer.model")
    (d / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True}))
    done.write_text("ok\n")


def convert_once(model_dir: Path, out: Path, outtype: str) -> tuple[float, float, int]:
    """(seconds, the child's peak RSS in MB, exit code) of one conversion in a subprocess."""
    cmd = [
        sys.executable,
        str(ROOT / "convert" / "to_gguf.py"),
        str(model_dir),
        "-o",
        str(out),
        "--outtype",
        outtype,
        "--force",
        "--quiet",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    if hasattr(os, "wait4"):  # this child's own rusage
        _, status, usage = os.wait4(proc.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        maxrss = usage.ru_maxrss
    else:  # the largest of all children so far
        rc = proc.wait()
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    dt = time.perf_counter() - t0
    return dt, maxrss / 1024, rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="/tmp/bluelm3b-random", help="checkpoint folder (reused)")
    ap.add_argument(
        "--out", default=None, help="GGUF to write (default: CACHE/../bluelm3b-q4_0.gguf)"
    )
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--outtype", default="q4_0", help="converter --outtype (default q4_0)")
    ap.add_argument("--keep", action="store_true", help="keep the GGUF")
    ap.add_argument("--no-load", action="store_true", help="skip the load check")
    args = ap.parse_args()

    model_dir = Path(args.cache)
    out = Path(args.out) if args.out else model_dir.parent / f"bluelm3b-{args.outtype}.gguf"
    n_params = sum(int(np.prod(sh)) for _, sh in tensor_shapes())
    print(f"BlueLM-3B shape: {n_params / 1e9:.3f} B parameters, BF16 shards in {model_dir}")
    t0 = time.perf_counter()
    make_checkpoint(model_dir)
    print(
        f"checkpoint ready ({time.perf_counter() - t0:.0f} s); "
        f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs"
    )

    times = []
    peak = 0.0
    for r in range(args.runs):
        dt, rss, rc = convert_once(model_dir, out, args.outtype)
        if rc != 0:
            print(f"conversion failed with exit code {rc}")
            return 1
        times.append(dt)
        peak = max(peak, rss)
        print(f"run {r + 1}: {dt:.1f} s, peak RSS {rss:.0f} MB", flush=True)
    src = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    print(
        f"convert BF16 -> {args.outtype}: median {statistics.median(times):.1f} s "
        f"(min {min(times):.1f}, max {max(times):.1f}, {args.runs} run(s)); "
        f"{src / 1e9 / statistics.median(times):.2f} GB/s of source"
    )
    print(
        f"peak RSS of the converter: {peak:.0f} MB (bar: 1536 MB) -> "
        f"{'OK' if peak < 1536 else 'OVER'}"
    )
    print(f"output: {out.stat().st_size / 1e9:.2f} GB")

    if not args.no_load:
        from bluelm_cpp import _core

        t0 = time.perf_counter()
        m = _core.LlamaModel(str(out))
        meta = m.metadata
        print(
            f"loads in bluelm_cpp._core.LlamaModel ({time.perf_counter() - t0:.1f} s): "
            f"arch {meta.get('general.architecture')}, "
            f"{meta.get('llama.block_count')} blocks, vocab "
            f"{len(meta.get('tokenizer.ggml.tokens', []))}"
        )
        del m
        from bluelm_cpp import Model

        t0 = time.perf_counter()
        with Model(str(out), n_ctx=64, n_threads=2) as model:
            logits = model.eval_logits([1, 100, 200, 300])
        finite = bool(np.isfinite(logits).all())
        print(
            f"evaluates 4 tokens ({time.perf_counter() - t0:.1f} s): logits "
            f"{logits.shape}, all finite: {finite}"
        )
    if not args.keep:
        out.unlink()
    return 0 if peak < 1536 else 1


if __name__ == "__main__":
    sys.exit(main())
