"""Random-weight GGUF files of a given shape, written tensor by tensor.

Quantised matrices are drawn directly as blocks (an f16 scale plus random
quants), so a 2.7B Q4_0 file is written in seconds without ever holding the
float weights. The numbers are meaningless; the shapes, types and byte counts
are those of the real models, which is what a speed or memory figure needs.

Example:
    >>> from benchmarks.random_gguf import LlmShape, write_llm  # doctest: +SKIP
    >>> write_llm("/tmp/llm.gguf", LlmShape.bluelm_3b(), "q4_0")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
# bytes per block of 32 weights, and the spread of the int quants (uniform draw)
_BLOCK = {Q.Q4_0: 18, Q.Q8_0: 34}
_QUANT_STD = {Q.Q4_0: 4.6, Q.Q8_0: 73.9}
_TYPES = {"q4_0": Q.Q4_0, "q8_0": Q.Q8_0, "f16": Q.F16, "f32": Q.F32}


@dataclass(frozen=True)
class LlmShape:
    """A LLaMA-family decoder shape."""

    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int

    @staticmethod
    def bluelm_3b() -> LlmShape:
        """PAPER.md's benchmark shape for the 2.7B BlueLM."""
        return LlmShape(2560, 28, 20, 20, 6912, 100096)

    @staticmethod
    def small() -> LlmShape:
        return LlmShape(576, 30, 9, 3, 1536, 49152)  # SmolLM2-135M's shape


@dataclass(frozen=True)
class VisionShape:
    """A SigLIP tower with the BlueLM-V 2x2 downsampler and MLP projector."""

    image_size: int
    patch_size: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    proj_dim: int

    @staticmethod
    def so400m(proj_dim: int) -> VisionShape:
        return VisionShape(384, 14, 1152, 4304, 27, 16, proj_dim)

    @staticmethod
    def small(proj_dim: int) -> VisionShape:
        return VisionShape(384, 14, 384, 1536, 12, 6, proj_dim)  # SigLIP-B/16-like width, patch 14


def _matrix(rng: np.random.Generator, rows: int, cols: int, qtype: Q, std: float) -> np.ndarray:
    """rows x cols weights as raw bytes of `qtype` (uint8 [rows, row_bytes]) or floats."""
    if qtype in _BLOCK:
        nb = cols // 32
        blocks = rng.integers(0, 256, size=(rows, nb, _BLOCK[qtype]), dtype=np.uint8)
        scale = (std / _QUANT_STD[qtype]) * rng.uniform(0.75, 1.25, size=(rows, nb))
        blocks[:, :, 0:2] = scale.astype(np.float16).view(np.uint8).reshape(rows, nb, 2)
        return blocks.reshape(rows, nb * _BLOCK[qtype])
    dt = np.float16 if qtype == Q.F16 else np.float32
    return (rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(dt)


Tensor = tuple[str, tuple[int, ...], Q, Callable[[], np.ndarray]]


def _write(
    path: Path, arch: str, keys: Callable[[gguf.GGUFWriter], None], tensors: list[Tensor]
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    keys(w)
    for name, shape, qtype, _ in tensors:
        if qtype in _BLOCK:
            rb = shape[-1] // 32 * _BLOCK[qtype]
            nbytes = int(np.prod(shape[:-1])) * rb
            w.add_tensor_info(name, (*shape[:-1], rb), np.dtype(np.uint8), nbytes, raw_dtype=qtype)
        else:
            dt = np.dtype(np.float16 if qtype == Q.F16 else np.float32)
            w.add_tensor_info(name, shape, dt, int(np.prod(shape)) * dt.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, _, _, make in tensors:
        w.write_tensor_data(make().reshape(-1))
    w.close()
    os.replace(tmp, path)


def _ones(n: int) -> Callable[[], np.ndarray]:
    return lambda: np.ones(n, np.float32)


def _zeros(n: int) -> Callable[[], np.ndarray]:
    return lambda: np.zeros(n, np.float32)


def write_llm(
    path: str | os.PathLike[str], s: LlmShape, weight_type: str = "q4_0", seed: int = 0
) -> Path:
    """A random LLaMA decoder (GGUF arch ``llama``); cached: an existing file is kept."""
    out = Path(path)
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    qt = _TYPES[weight_type]
    hd = s.n_embd // s.n_head
    kv = s.n_head_kv * hd

    def mat(rows: int, cols: int) -> Callable[[], np.ndarray]:
        return lambda: _matrix(rng, rows, cols, qt, 0.02)

    def keys(w: gguf.GGUFWriter) -> None:
        w.add_name("random bluelm-shape llm")
        w.add_block_count(s.n_layer)
        w.add_context_length(4096)
        w.add_embedding_length(s.n_embd)
        w.add_feed_forward_length(s.n_ff)
        w.add_head_count(s.n_head)
        w.add_head_count_kv(s.n_head_kv)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(10000.0)
        w.add_vocab_size(s.n_vocab)

    tensors: list[Tensor] = [
        ("token_embd.weight", (s.n_vocab, s.n_embd), qt, mat(s.n_vocab, s.n_embd))
    ]
    for i in range(s.n_layer):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", (s.n_embd,), Q.F32, _ones(s.n_embd)),
            (p + "attn_q.weight", (s.n_embd, s.n_embd), qt, mat(s.n_embd, s.n_embd)),
            (p + "attn_k.weight", (kv, s.n_embd), qt, mat(kv, s.n_embd)),
            (p + "attn_v.weight", (kv, s.n_embd), qt, mat(kv, s.n_embd)),
            (p + "attn_output.weight", (s.n_embd, s.n_embd), qt, mat(s.n_embd, s.n_embd)),
            (p + "ffn_norm.weight", (s.n_embd,), Q.F32, _ones(s.n_embd)),
            (p + "ffn_gate.weight", (s.n_ff, s.n_embd), qt, mat(s.n_ff, s.n_embd)),
            (p + "ffn_up.weight", (s.n_ff, s.n_embd), qt, mat(s.n_ff, s.n_embd)),
            (p + "ffn_down.weight", (s.n_embd, s.n_ff), qt, mat(s.n_embd, s.n_ff)),
        ]
    tensors += [
        ("output_norm.weight", (s.n_embd,), Q.F32, _ones(s.n_embd)),
        ("output.weight", (s.n_vocab, s.n_embd), qt, mat(s.n_vocab, s.n_embd)),
    ]
    _write(out, "llama", keys, tensors)
    return out


def write_vision(
    path: str | os.PathLike[str], s: VisionShape, weight_type: str = "q8_0", seed: int = 1
) -> Path:
    """A random SigLIP + mlp_downsample projector mmproj GGUF (docs/vision_format.md); cached."""
    out = Path(path)
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    qt = _TYPES[weight_type]
    C, F, D, P = s.n_embd, s.n_ff, s.proj_dim, s.patch_size
    n_tok = (s.image_size // P) ** 2

    def mat(rows: int, cols: int) -> Callable[[], np.ndarray]:
        # Rows not a multiple of 32 stay F16, as the converter stores them.
        t = qt if cols % 32 == 0 or qt not in _BLOCK else Q.F16
        return lambda: _matrix(rng, rows, cols, t, 0.02)

    def mtype(cols: int) -> Q:
        return qt if cols % 32 == 0 or qt not in _BLOCK else Q.F16

    def keys(w: gguf.GGUFWriter) -> None:
        w.add_string("general.type", "mmproj")
        w.add_bool("clip.has_vision_encoder", True)
        w.add_bool("clip.has_llava_projector", True)
        w.add_string("clip.projector_type", "mlp_downsample")
        w.add_string("clip.vision.projector_type", "mlp_downsample")
        w.add_bool("clip.use_gelu", True)
        w.add_uint32("clip.vision.image_size", s.image_size)
        w.add_uint32("clip.vision.patch_size", P)
        w.add_uint32("clip.vision.embedding_length", C)
        w.add_uint32("clip.vision.feed_forward_length", F)
        w.add_uint32("clip.vision.block_count", s.n_layer)
        w.add_uint32("clip.vision.attention.head_count", s.n_head)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
        w.add_uint32("clip.vision.projection_dim", D)
        w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
        w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
        w.add_string("bluelm.vision.grid_method", "relaxed")
        w.add_float32("bluelm.vision.alpha", 0.1)
        w.add_uint32("bluelm.vision.max_grid_side", 4)
        w.add_uint32("bluelm.vision.max_patches", 9)
        w.add_uint32("bluelm.vision.downsample", 2)
        w.add_float32("bluelm.vision.projector_ln_eps", 1e-5)

    def small(n: int) -> Callable[[], np.ndarray]:
        return lambda: (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float32)

    tensors: list[Tensor] = [
        (
            "v.patch_embd.weight",
            (C, 3, P, P),
            mtype(3 * P * P),
            lambda: _matrix(rng, C, 3 * P * P, mtype(3 * P * P), 0.02),
        ),
        ("v.patch_embd.bias", (C,), Q.F32, _zeros(C)),
        ("v.position_embd.weight", (n_tok, C), Q.F32, small(n_tok * C)),
    ]
    for i in range(s.n_layer):
        p = f"v.blk.{i}."
        tensors += [
            (p + "ln1.weight", (C,), Q.F32, _ones(C)),
            (p + "ln1.bias", (C,), Q.F32, _zeros(C)),
        ]
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors += [
                (p + n + ".weight", (C, C), mtype(C), mat(C, C)),
                (p + n + ".bias", (C,), Q.F32, small(C)),
            ]
        tensors += [
            (p + "ln2.weight", (C,), Q.F32, _ones(C)),
            (p + "ln2.bias", (C,), Q.F32, _zeros(C)),
            (p + "ffn_up.weight", (F, C), mtype(C), mat(F, C)),
            (p + "ffn_up.bias", (F,), Q.F32, small(F)),
            (p + "ffn_down.weight", (C, F), mtype(F), mat(C, F)),
            (p + "ffn_down.bias", (C,), Q.F32, small(C)),
        ]
    tensors += [
        ("v.post_ln.weight", (C,), Q.F32, _ones(C)),
        ("v.post_ln.bias", (C,), Q.F32, _zeros(C)),
        ("mm.input_norm.weight", (4 * C,), Q.F32, _ones(4 * C)),
        ("mm.input_norm.bias", (4 * C,), Q.F32, _zeros(4 * C)),
        ("mm.0.weight", (D, 4 * C), mtype(4 * C), mat(D, 4 * C)),
        ("mm.0.bias", (D,), Q.F32, small(D)),
        ("mm.2.weight", (D, D), mtype(D), mat(D, D)),
        ("mm.2.bias", (D,), Q.F32, small(D)),
    ]
    _write(out, "clip", keys, tensors)
    return out
