"""Which GGML type each tensor gets, and the encoding itself.

Policy (``outtype`` is the ``--outtype`` of the converter):

* 1-D tensors (norm weights, biases, ``rope_freqs``) and every tensor whose
  name ends in ``_norm.weight`` stay **F32**, whatever ``outtype`` is.
* ``f32`` / ``f16`` / ``bf16``: every other tensor is F32 / F16 / BF16.
* ``q8_0``: every other tensor is Q8_0, including ``token_embd.weight`` and
  ``output.weight`` (as llama.cpp's converter does for ``--outtype q8_0``).
* ``q4_0`` / ``q4_1``: matrices are Q4_0 / Q4_1, except the output head,
  which is **Q8_0**: ``output.weight``, or ``token_embd.weight`` when the
  embeddings are tied (then it is the head too). The head's error lands
  directly on the logits, so llama.cpp's ``llama-quantize`` also keeps it at
  higher precision by default (Q6_K there; Q8_0 is the closest type here).
  An untied ``token_embd.weight`` is only gathered row by row, so it follows
  ``outtype``.
* A matrix whose row length (the last HF dimension, ggml's ``ne0``) is not a
  multiple of 32 cannot be cut into Q8_0/Q4_0/Q4_1 blocks: it falls back to
  **F16**, and the conversion summary lists it.

Encoding is gguf-py's reference code (``gguf.quants.quantize``), bit-identical
to ggml's ``quantize_row_*_ref``.

Example:
    >>> from bluelm_cpp.convert.quantize_policy import choose_type
    >>> choose_type("blk.0.attn_q.weight", (64, 64), "q4_0", tied=False).qtype.name
    'Q4_0'
    >>> choose_type("output.weight", (300, 64), "q4_0", tied=False).qtype.name
    'Q8_0'
    >>> c = choose_type("blk.0.ffn_down.weight", (64, 100), "q8_0", tied=False)
    >>> (c.qtype.name, c.fallback)
    ('F16', 'row length 100 is not a multiple of 32 (Q8_0 block)')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from ..errors import InvalidArgumentError

OUTTYPES: dict[str, T] = {
    "f32": T.F32,
    "f16": T.F16,
    "bf16": T.BF16,
    "q8_0": T.Q8_0,
    "q4_0": T.Q4_0,
    "q4_1": T.Q4_1,
}

FILE_TYPES: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
}

_BLOCKED = (T.Q8_0, T.Q4_0, T.Q4_1)
_FALLBACK = T.F16


@dataclass(frozen=True)
class TypeChoice:
    """The type picked for one tensor; ``fallback`` says why it is not the asked one."""

    qtype: T
    fallback: str | None = None


def check_outtype(outtype: str) -> str:
    """Normalise ``outtype`` or raise :class:`InvalidArgumentError`.

    Example:
        >>> check_outtype("Q4_0")
        'q4_0'
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


def choose_type(gguf_name: str, shape: tuple[int, ...], outtype: str, tied: bool) -> TypeChoice:
    """Apply the module's policy to one tensor (``shape`` in HF order)."""
    key = check_outtype(outtype)
    if len(shape) <= 1 or gguf_name.endswith("_norm.weight"):
        return TypeChoice(T.F32)
    want = OUTTYPES[key]
    if want in (T.Q4_0, T.Q4_1) and is_output_head(gguf_name, tied):
        want = T.Q8_0
    if want in _BLOCKED:
        block = gguf.GGML_QUANT_SIZES[want][0]
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


def encode(data: np.ndarray, qtype: T) -> np.ndarray:
    """Encode float32 data as ``qtype`` with gguf-py's reference quantisers.

    Example:
        >>> encode(np.ones((2, 32), np.float32), T.Q8_0).shape
        (2, 34)
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == T.F32:
        return data
    if qtype == T.F16:
        return data.astype(np.float16)
    return np.ascontiguousarray(gguf.quants.quantize(data, qtype))
