"""Which GGML type each tensor gets, and the encoding itself.

Policy (``outtype`` is the ``--outtype`` of the converter):

* 1-D tensors (norm weights, biases, ``rope_freqs``) and every tensor whose
  name ends in ``_norm.weight`` stay **F32**, whatever ``outtype`` is.
* ``f32`` / ``f16`` / ``bf16``: every other tensor is F32 / F16 / BF16.
* ``q8_0``: every other tensor is Q8_0, including ``token_embd.weight`` and
  ``output.weight`` (as llama.cpp's converter does for ``--outtype q8_0``).
* ``q4_0`` / ``q4_1``: matrices are Q4_0 / Q4_1, except the output head,
  which is **Q8_0**: ``output.weight``, or ``token_embd.weight`` when the
  embeddings are tied (then it is the head too). An untied
  ``token_embd.weight`` is only gathered row by row, so it follows ``outtype``.
  A matrix whose row length (the last HF dimension, ggml's ``ne0``) is not a
  multiple of 32 falls back to **F16**.
* The llama-quantize mixes ``q2_k``, ``q3_k_m``, ``q4_k_m``, ``q5_k_m``,
  ``q6_k``, ``q5_0``, ``q5_1``, ``iq4_nl``, ``iq4_xs``: the type
  ``llama-quantize`` picks for each tensor without an importance matrix
  (llama.cpp ``src/llama-quant.cpp``, ``llama_tensor_get_type``), see
  :func:`llama_quantize_type`: the output head (and tied embeddings) Q6_K, or
  Q8_0 when its rows do not split into the mix's blocks; ``attn_v`` and
  ``ffn_down`` bumped in the layers ``use_more_bits`` picks; ``attn_output``
  bumped for Q2_K/Q3_K_M; then the row-width fallbacks (Q4_K -> Q5_0, Q5_K ->
  Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0, IQ4_XS -> IQ4_NL, F16 when even those
  do not fit).

Fallbacks are listed in the conversion summary with their reason. Encoding:
the C++ core (``_core.quantize``, bit-identical to llama.cpp's quantisers) for
the 5-bit, IQ4 and K-quant types; gguf-py's reference code
(``gguf.quants.quantize``, bit-identical to ggml's ``quantize_row_*_ref``) for
Q8_0/Q4_0/Q4_1.

Example:
    >>> from bluelm_cpp.convert.quantize_policy import ModelShape, choose_type
    >>> choose_type("blk.0.attn_q.weight", (64, 64), "q4_0", tied=False).qtype.name
    'Q4_0'
    >>> choose_type("output.weight", (300, 64), "q4_0", tied=False).qtype.name
    'Q8_0'
    >>> c = choose_type("blk.0.ffn_down.weight", (64, 100), "q8_0", tied=False)
    >>> (c.qtype.name, c.fallback)
    ('F16', 'row length 100 is not a multiple of 32 (Q8_0 block)')
    >>> smol = ModelShape(n_layer=30, n_head=9, n_head_kv=3)
    >>> choose_type("blk.5.ffn_down.weight", (576, 1536), "q4_k_m", False, smol).qtype.name
    'Q6_K'
    >>> choose_type("blk.4.attn_q.weight", (576, 576), "q4_k_m", False, smol).qtype.name
    'Q5_0'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from ..errors import InvalidArgumentError

# outtype -> the type of most matrices (for a mix: llama-quantize's default type)
OUTTYPES: dict[str, T] = {
    "f32": T.F32,
    "f16": T.F16,
    "bf16": T.BF16,
    "q8_0": T.Q8_0,
    "q4_0": T.Q4_0,
    "q4_1": T.Q4_1,
    "q4_k_m": T.Q4_K,
    "q5_k_m": T.Q5_K,
    "q6_k": T.Q6_K,
    "q5_0": T.Q5_0,
    "q5_1": T.Q5_1,
    "q3_k_m": T.Q3_K,
    "q2_k": T.Q2_K,
    "iq4_nl": T.IQ4_NL,
    "iq4_xs": T.IQ4_XS,
}

_FT = gguf.LlamaFileType
FILE_TYPES: dict[str, gguf.LlamaFileType] = {
    "f32": _FT.ALL_F32,
    "f16": _FT.MOSTLY_F16,
    "bf16": _FT.MOSTLY_BF16,
    "q8_0": _FT.MOSTLY_Q8_0,
    "q4_0": _FT.MOSTLY_Q4_0,
    "q4_1": _FT.MOSTLY_Q4_1,
    "q4_k_m": _FT.MOSTLY_Q4_K_M,
    "q5_k_m": _FT.MOSTLY_Q5_K_M,
    "q6_k": _FT.MOSTLY_Q6_K,
    "q5_0": _FT.MOSTLY_Q5_0,
    "q5_1": _FT.MOSTLY_Q5_1,
    "q3_k_m": _FT.MOSTLY_Q3_K_M,
    "q2_k": _FT.MOSTLY_Q2_K,
    "iq4_nl": _FT.MOSTLY_IQ4_NL,
    "iq4_xs": _FT.MOSTLY_IQ4_XS,
}

# The outtypes whose per-tensor choice is llama-quantize's.
MIXES = ("q4_k_m", "q5_k_m", "q6_k", "q5_0", "q5_1", "q3_k_m", "q2_k", "iq4_nl", "iq4_xs")

_BLOCKED = (T.Q8_0, T.Q4_0, T.Q4_1)
_FALLBACK = T.F16
# llama-quantize's replacement of a type whose block does not divide the row
_ROW_FALLBACK = {
    T.IQ4_XS: T.IQ4_NL,
    T.Q2_K: T.Q4_0,
    T.Q3_K: T.Q4_0,
    T.Q4_K: T.Q5_0,
    T.Q5_K: T.Q5_1,
    T.Q6_K: T.Q8_0,
}


@dataclass(frozen=True)
class TypeChoice:
    """The type picked for one tensor; ``fallback`` says why it is not the asked one."""

    qtype: T
    fallback: str | None = None


@dataclass(frozen=True)
class ModelShape:
    """What llama-quantize's mixes look at besides a tensor's name and shape.

    Example:
        >>> ModelShape(n_layer=16, n_head=32, n_head_kv=8).n_gqa
        4
    """

    n_layer: int
    n_head: int = 1
    n_head_kv: int = 1
    arch: str = "llama"

    @property
    def n_gqa(self) -> int:
        """Query heads per KV head."""
        return self.n_head // max(1, self.n_head_kv)

    @property
    def is_70b(self) -> bool:
        """llama.cpp's LLM_TYPE_70B (80 layers; for llama also grouped-query attention)."""
        if self.n_layer != 80:
            return False
        return self.arch == "qwen2" or (self.arch == "llama" and self.n_head != self.n_head_kv)


def check_outtype(outtype: str) -> str:
    """Normalise ``outtype`` or raise :class:`InvalidArgumentError`.

    Example:
        >>> check_outtype("Q4_K_M")
        'q4_k_m'
    """
    key = outtype.lower()
    if key not in OUTTYPES:
        raise InvalidArgumentError(
            f"outtype {outtype!r} is not supported (choose one of {', '.join(OUTTYPES)})"
        )
    return key


def is_output_head(gguf_name: str, tied: bool) -> bool:
    """True for the tensor the logits are computed with."""
    return gguf_name == "output.weight" or (tied and gguf_name == "token_embd.weight")


def _block(qtype: T) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][0]


def _use_more_bits(i_layer: int, n_layer: int) -> bool:
    # llama-quantize's pick: the first and last eighth, and every third layer between
    eighth = n_layer // 8
    return i_layer < eighth or i_layer >= 7 * n_layer // 8 or (i_layer - eighth) % 3 == 2


_LAYER = re.compile(r"blk\.(\d+)\.")


def _layer(name: str, model: ModelShape) -> int:
    m = _LAYER.match(name)
    if m is None:
        raise InvalidArgumentError(f"{name}: no layer index (blk.N.) in the tensor name")
    i = int(m.group(1))
    if not 0 <= i < model.n_layer:
        raise InvalidArgumentError(f"{name}: layer {i} is outside [0, {model.n_layer})")
    return i


def llama_quantize_type(
    gguf_name: str, ne0: int, outtype: str, tied: bool, model: ModelShape
) -> TypeChoice:
    """The type llama-quantize gives a quantisable tensor (a 2-D ``*.weight``,
    not a norm) for the mix ``outtype``, without an importance matrix.

    ``ne0`` is the row length. The layer counters of llama.cpp (one ``attn_v``
    and one ``ffn_down`` per layer, visited in layer order) equal the layer index
    of the name.

    Example:
        >>> llama_quantize_type("output.weight", 2048, "q4_k_m", False, ModelShape(16)).qtype.name
        'Q6_K'
    """
    key = check_outtype(outtype)
    if key not in MIXES:
        raise InvalidArgumentError(f"outtype {outtype!r} is not a llama-quantize mix")
    new = OUTTYPES[key]
    name = gguf_name
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        new = T.Q8_0 if ne0 % _block(new) else (T.Q6_K if new != T.Q8_0 else new)
    elif name == "token_embd.weight":
        pass
    elif "attn_v.weight" in name:
        i = _layer(name, model)
        if key == "q2_k":
            new = T.Q4_K if model.n_gqa >= 4 else T.Q3_K
        elif key == "q3_k_m":
            new = T.Q5_K if i < 2 else T.Q4_K
        elif key in ("iq4_nl", "iq4_xs") and model.n_gqa >= 4:
            new = T.Q5_K
        elif key in ("q4_k_m", "q5_k_m") and _use_more_bits(i, model.n_layer):
            new = T.Q6_K
        if model.is_70b and new in (T.Q3_K, T.Q4_K):
            new = T.Q5_K
    elif "ffn_down" in name:
        i, n = _layer(name, model), model.n_layer
        if key == "q2_k":
            new = T.Q3_K
        elif key == "q3_k_m":
            new = T.Q5_K if i < n // 16 else T.Q4_K
        elif key == "q4_k_m":
            if _use_more_bits(i, n):
                new = T.Q6_K
        elif i < n // 8 and key in ("iq4_nl", "iq4_xs"):
            new = T.Q5_K
        elif key == "q5_k_m" and _use_more_bits(i, n):
            new = T.Q6_K
    elif "attn_output.weight" in name:
        if key == "q2_k":
            new = T.Q3_K
        elif key == "q3_k_m":
            new = T.Q4_K
    if ne0 % _block(new) == 0:
        return TypeChoice(new)
    why = f"row length {ne0} is not a multiple of {_block(new)} ({new.name} block)"
    alt = _ROW_FALLBACK.get(new, new)
    if ne0 % _block(alt) == 0:
        return TypeChoice(alt, why)
    return TypeChoice(_FALLBACK, why)


def choose_type(
    gguf_name: str,
    shape: tuple[int, ...],
    outtype: str,
    tied: bool,
    model: ModelShape | None = None,
) -> TypeChoice:
    """Apply the module's policy to one tensor (``shape`` in HF order).

    The llama-quantize mixes need ``model`` (layer count and heads)."""
    key = check_outtype(outtype)
    if len(shape) <= 1 or gguf_name.endswith("_norm.weight"):
        return TypeChoice(T.F32)
    if key in MIXES:
        if model is None:
            raise InvalidArgumentError(f"outtype {key} needs the model's layer and head counts")
        if not gguf_name.endswith("weight"):  # llama-quantize leaves these as they are
            return TypeChoice(T.F32)
        return llama_quantize_type(gguf_name, shape[-1], key, tied, model)
    want = OUTTYPES[key]
    if want in (T.Q4_0, T.Q4_1) and is_output_head(gguf_name, tied):
        want = T.Q8_0
    if want in _BLOCKED:
        block = _block(want)
        if shape[-1] % block:
            return TypeChoice(
                _FALLBACK,
                f"row length {shape[-1]} is not a multiple of {block} ({want.name} block)",
            )
    return TypeChoice(want)


def encoded_shape(shape: tuple[int, ...], qtype: T) -> tuple[tuple[int, ...], int]:
    """The numpy shape of the encoded array and its byte count.

    Example:
        >>> encoded_shape((64, 64), T.Q8_0)
        ((64, 68), 4352)
    """
    if qtype == T.F32:
        return shape, 4 * math.prod(shape)
    if qtype == T.F16:
        return shape, 2 * math.prod(shape)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    byte_shape = (*shape[:-1], shape[-1] // block * size)
    return byte_shape, math.prod(byte_shape)


def encode(data: np.ndarray, qtype: T, n_threads: int | None = None) -> np.ndarray:
    """Encode float32 data as ``qtype``: the C++ quantisers where the core has
    them (``n_threads`` threads, default the physical cores), else gguf-py's.

    Example:
        >>> encode(np.ones((2, 32), np.float32), T.Q8_0).shape
        (2, 34)
        >>> encode(np.ones((2, 256), np.float32), T.Q4_K).shape
        (2, 144)
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == T.F32:
        return data
    if qtype == T.F16:
        return data.astype(np.float16)
    from .. import _core

    if _core.can_quantize(int(qtype)):
        rows = data.reshape(-1, data.shape[-1]) if data.ndim != 1 else data.reshape(1, -1)
        threads = n_threads or _core.physical_cores()
        out = _core.quantize(int(qtype), rows, threads)
        return out.reshape(encoded_shape(data.shape, qtype)[0])
    return np.ascontiguousarray(gguf.quants.quantize(data, qtype))
