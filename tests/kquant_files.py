"""Tiny GGUF models whose tensors mix every weight type the runtime reads, and
a patcher of tensor-info records, for the loader and fuzz-seed tests.

Weights of the 5-bit, IQ4 and K-quant types are encoded by the runtime's own
quantiser (``_core.quantize``, bit-identical to llama.cpp's); Q8_0/Q4_0/Q4_1/
BF16 by gguf-py; the reference of the tests is always the F32 copy dequantised
by gguf-py.
"""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from bluelm_cpp import _core

# Every weight type, each used by at least one matrix of write_mixed's model.
LAYER_TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.IQ4_NL,
               T.Q2_K, T.Q3_K, T.Q5_K, T.IQ4_XS, T.Q4_K]  # fmt: skip


def encode(a: np.ndarray, t: T) -> tuple[np.ndarray, T | None]:
    """``a`` (float32 rows) as ``t``: the array and the raw dtype for GGUFWriter."""
    if t == T.F32:
        return a, None
    if t == T.F16:
        return a.astype(np.float16), None
    if _core.can_quantize(int(t)):
        return _core.quantize(int(t), a), t
    return gguf.quants.quantize(a, t), t


def write_mixed(
    path: Path,
    n_embd: int = 256,
    n_ff: int = 512,
    n_vocab: int = 64,
    n_layer: int = 2,
    emb_type: T = T.Q4_K,
    out_type: T = T.Q6_K,
    layer_types: list[T] | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """A llama model (4 heads, 2 KV heads) with ``layer_types`` cycled over its
    layer matrices; returns each matrix's type name."""
    types = layer_types or LAYER_TYPES
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(n_layer)
    w.add_context_length(64)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    rng = np.random.default_rng(seed)
    used: dict[str, str] = {}
    counter = iter(range(1 << 20))

    def mat(name: str, rows: int, cols: int, t: T | None = None) -> None:
        a = (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
        t = t if t is not None else types[next(counter) % len(types)]
        data, raw = encode(a, t)
        w.add_tensor(name, data, raw_dtype=raw)
        used[name] = t.name

    def vec(name: str, n: int) -> None:
        w.add_tensor(name, (1 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", n_vocab, n_embd, emb_type)
    vec("output_norm.weight", n_embd)
    mat("output.weight", n_vocab, n_embd, out_type)
    hd = n_embd // 4
    for i in range(n_layer):
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", n_embd)
        vec(p + "ffn_norm.weight", n_embd)
        mat(p + "attn_q.weight", n_embd, n_embd)
        mat(p + "attn_k.weight", 2 * hd, n_embd)
        mat(p + "attn_v.weight", 2 * hd, n_embd)
        mat(p + "attn_output.weight", n_embd, n_embd)
        mat(p + "ffn_gate.weight", n_ff, n_embd)
        mat(p + "ffn_up.weight", n_ff, n_embd)
        mat(p + "ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return used


def tensor_info_pos(data: bytes, name: str) -> int:
    """Byte position of the n_dims field of ``name``'s tensor-info record."""
    enc = name.encode()
    return data.index(struct.pack("<Q", len(enc)) + enc) + 8 + len(enc)


def patch_tensor_info(
    path: Path, name: str, dims: list[int] | None = None, qtype: int | None = None
) -> None:
    """Rewrite ``name``'s dimensions (same count) and/or type in place."""
    data = bytearray(path.read_bytes())
    pos = tensor_info_pos(bytes(data), name)
    n_dims = struct.unpack_from("<I", data, pos)[0]
    if dims is not None:
        assert len(dims) == n_dims
        struct.pack_into(f"<{n_dims}Q", data, pos + 4, *dims)
    if qtype is not None:
        struct.pack_into("<I", data, pos + 4 + 8 * n_dims, qtype)
    path.write_bytes(bytes(data))


def set_block_scale(path: Path, name: str, block: int, offset: int, half_bits: int) -> None:
    """Overwrite the fp16 at ``offset`` of block ``block`` of tensor ``name``."""
    f = _core.GGUFFile(str(path))
    t = next(t for t in f.tensors if t["name"] == name)
    size = gguf.GGML_QUANT_SIZES[T(t["type"])][1]
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, t["offset"] + block * size + offset, half_bits)
    path.write_bytes(bytes(data))
