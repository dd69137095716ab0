"""Records what llama.cpp's quantisers make of fixed inputs (tests/data/llamacpp_quantize.npz).

For every type the converter writes through the C++ core (Q5_0, Q5_1, Q2_K,
Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS) the blocks come from ggml's
``ggml_quantize_chunk`` with no importance matrix (the call llama-quantize
makes), and the Q8_K activation blocks from ``quantize_row_q8_K_ref`` (what
ggml's x86 and ARM CPU code use), both called through ctypes in llama.cpp's
``libggml-base``. Inputs: rows of many distributions (normal, heavy-tailed,
one-signed, sparse, huge, tiny, integer, outliers, all-zero, constant) and
rows of the bundled SmolLM2-135M weights, stored in the file with the output.

    python tests/data/record_quantize.py [--lib /path/to/libggml-base.so]

The library is looked up in $GGML_BASE_LIB, llama-cpp-python's ``lib`` folder,
then /tmp/llbuild/bin (llama.cpp built from the llama-cpp-python 0.3.36 sdist).
"""

from __future__ import annotations

import argparse
import ctypes
import os
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

OUT = Path(__file__).resolve().parent / "llamacpp_quantize.npz"
# For the C++ kernel tests (natively and under qemu-aarch64): a hash per type of
# llama.cpp's blocks for inputs both sides generate with lcg_rows().
OUT_LCG = Path(__file__).resolve().parent / "llamacpp_quantize_lcg.txt"
LCG_ROWS = 24
TYPES = (T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS)
N = 512  # values per row: two super-blocks, sixteen 32-blocks


def find_lib(explicit: str | None = None) -> Path | None:
    """libggml-base of a llama.cpp build, or None."""
    cands: list[Path] = []
    if explicit:
        cands.append(Path(explicit))
    if os.environ.get("GGML_BASE_LIB"):
        cands.append(Path(os.environ["GGML_BASE_LIB"]))
    try:
        import llama_cpp

        cands.append(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so")
    except ImportError:
        pass
    cands.append(Path("/tmp/llbuild/bin/libggml-base.so"))
    return next((p for p in cands if p.is_file()), None)


class Ggml:
    """The two quantiser entry points of libggml-base."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        self.chunk = lib.ggml_quantize_chunk
        self.chunk.restype = ctypes.c_size_t
        self.chunk.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        self.q8_k = lib.quantize_row_q8_K_ref
        self.q8_k.restype = None
        self.q8_k.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    def quantize(self, qtype: T, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, n = x.shape
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        out = np.zeros((rows, n // block * size), np.uint8)
        written = self.chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, rows, n, None)
        assert written == out.nbytes
        return out

    def quantize_q8_k(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        # zero-filled: ggml leaves the bsums of an all-zero block unwritten
        out = np.zeros((x.shape[0], x.shape[1] // 256 * 292), np.uint8)
        for r in range(x.shape[0]):
            self.q8_k(x[r].ctypes.data, out[r].ctypes.data, x.shape[1])
        return out


def smollm2_rows(n_rows: int) -> np.ndarray | None:
    try:
        from bluelm_cpp.default_model import default_model_path

        r = gguf.GGUFReader(default_model_path())
    except Exception as e:  # noqa: BLE001 - any reason means "not available"
        print(f"no SmolLM2 rows: {e}")
        return None
    rows = []
    for name in ("blk.0.attn_q.weight", "blk.7.ffn_down.weight", "blk.29.attn_v.weight"):
        t = next(t for t in r.tensors if t.name == name)
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1)
        rows.append(w[: (n_rows // 3) * N].reshape(-1, N))
    return np.concatenate(rows)


def inputs() -> np.ndarray:
    rng = np.random.default_rng(20261202)
    k = 6
    parts = [
        rng.standard_normal((k, N)) * 0.05,
        rng.standard_t(2, (k, N)),
        rng.uniform(-1, 1, (k, N)),
        rng.uniform(0, 1, (k, N)),
        -rng.uniform(0, 1, (k, N)),
        np.where(rng.random((k, N)) < 0.9, 0.0, rng.standard_normal((k, N))),
        rng.standard_normal((k, N)) * 3e3,  # large scales (Q8_0-range fp16 scales)
        rng.standard_normal((k, N)) * 1e-6,  # fp16 subnormal scales
        np.round(rng.standard_normal((k, N)) * 3),  # ties in the level search
    ]
    out = rng.standard_normal((k, N)) * 0.02
    out[np.arange(k), rng.integers(0, N, k)] = 2.0  # one outlier per row
    parts.append(out)
    special = np.zeros((3, N))
    special[1] = 0.25  # constant row
    special[2, :256] = rng.standard_normal(256)  # one zero super-block
    parts.append(special)
    real = smollm2_rows(6)
    if real is not None:
        parts.append(real)
    return np.concatenate(parts).astype(np.float32)


def lcg_rows(rows: int = LCG_ROWS, n: int = N) -> np.ndarray:
    """Inputs exact in float32 that tests/cpp/test_kquants.cpp generates the same way:
    a 64-bit LCG; u = state >> 40; value (u - 2^23) * 2^-(23 + row % 13), or 0 when
    u % 16 == 0."""
    mask = (1 << 64) - 1
    state = 0x9E3779B97F4A7C15
    out = np.zeros((rows, n), np.float32)
    for r in range(rows):
        scale = 2.0 ** -(23 + r % 13)
        for i in range(n):
            state = (state * 6364136223846793005 + 1442695040888963407) & mask
            u = state >> 40
            out[r, i] = 0.0 if u % 16 == 0 else (u - (1 << 23)) * scale
    return out


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & ((1 << 64) - 1)
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default=None)
    ns = ap.parse_args()
    lib = find_lib(ns.lib)
    if lib is None:
        raise SystemExit("libggml-base.so not found: build llama.cpp or pass --lib")
    g = Ggml(lib)
    x = inputs()
    data = {"x": x, "source": np.array(str(lib))}
    for t in TYPES:
        data[t.name] = g.quantize(t, x)
    data["Q8_K"] = g.quantize_q8_k(x)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT}: {x.shape[0]} rows of {N}, {len(TYPES) + 1} types, from {lib}")
    lcg = lcg_rows()
    lines = [
        f"# tests/data/record_quantize.py: FNV-1a 64 of llama.cpp's blocks for lcg_rows() ({lib})"
    ]
    for t in TYPES:
        lines.append(f"{t.name} {fnv1a64(g.quantize(t, lcg).tobytes()):016x}")
    lines.append(f"Q8_K {fnv1a64(g.quantize_q8_k(lcg).tobytes()):016x}")
    OUT_LCG.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT_LCG}")


if __name__ == "__main__":
    main()
