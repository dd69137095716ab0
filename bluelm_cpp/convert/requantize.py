"""Re-encode a GGUF file's tensors at another ``outtype`` (what llama-quantize
does with ``--allow-requantize``): every tensor is dequantised by gguf-py
(``gguf.quants.dequantize``), given the type :mod:`.quantize_policy` picks
(for the mixes, llama-quantize's per-tensor choice) and encoded by the C++
core; metadata is copied, ``general.file_type`` set. Tensors stream slice by
slice, and the output is written to a temporary file renamed at the end.

With ``outtype="f32"`` it makes the F32 copy of a file whose weights are
dequantised by gguf-py, the reference of the fidelity tests.

Example:
    >>> from bluelm_cpp.convert.requantize import requantize_gguf
    >>> types = requantize_gguf("smol-q4_1.gguf", "smol-q4_k_m.gguf", "q4_k_m")  # doctest: +SKIP
    >>> types["blk.0.ffn_down.weight"]                                         # doctest: +SKIP
    'Q6_K'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from ..errors import ModelFileError, ModelFormatError
from .output_file import replacing_output
from .quantize_policy import (
    FILE_TYPES,
    ModelShape,
    check_outtype,
    choose_type,
    encode,
    encoded_shape,
)

SLICE_BYTES = 16 << 20  # float32 bytes dequantised and encoded at a time

_SKIP_KEYS = (
    "general.architecture",
    "general.file_type",
    "general.quantization_version",
    "general.alignment",
)


def _scalar(r: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    f = r.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v if not isinstance(v, list) else default


def model_shape(r: gguf.GGUFReader) -> ModelShape:
    """The layer and head counts of a GGUF's decoder (for the mixes)."""
    arch = _scalar(r, "general.architecture")
    if not isinstance(arch, str):
        raise ModelFormatError("GGUF has no general.architecture")
    n_layer = _scalar(r, f"{arch}.block_count")
    if not isinstance(n_layer, int):
        raise ModelFormatError(f"GGUF has no {arch}.block_count")
    n_head = int(_scalar(r, f"{arch}.attention.head_count", 1))
    n_head_kv = int(_scalar(r, f"{arch}.attention.head_count_kv", n_head))
    return ModelShape(n_layer, n_head, n_head_kv, arch)


class _Slices:
    """Stands in for an ndarray in ``GGUFWriter.write_tensor_data`` (which asks
    for ``nbytes`` and ``tofile``): dequantise, encode and write a slice of rows
    at a time."""

    def __init__(self, t: Any, shape: tuple[int, ...], qtype: T, nbytes: int) -> None:
        self.t, self.shape, self.qtype, self.nbytes = t, shape, qtype, nbytes

    def tofile(self, fp: Any) -> None:
        data = self.t.data
        rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
        per_row = 4 * self.shape[-1]
        step = max(1, SLICE_BYTES // per_row)
        written = 0
        for a in range(0, rows.shape[0], step):
            f = gguf.quants.dequantize(rows[a : a + step], self.t.tensor_type)
            out = encode(np.asarray(f, np.float32).reshape(-1, self.shape[-1]), self.qtype)
            out.tofile(fp)
            written += out.nbytes
        if written != self.nbytes:
            raise ModelFormatError(
                f"{self.t.name}: encoded {written} bytes, expected {self.nbytes}"
            )


def requantize_gguf(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], outtype: str, force: bool = False
) -> dict[str, str]:
    """Write ``dst`` with the tensors of ``src`` re-encoded at ``outtype``;
    returns each tensor's new type name."""
    key = check_outtype(outtype)
    out = Path(dst).absolute()
    if out.exists() and not force:
        raise ModelFileError(f"{out}: output file exists (use force=True to replace it)")
    r = gguf.GGUFReader(src)
    shape = model_shape(r)
    names = {t.name for t in r.tensors}
    tied = "output.weight" not in names
    types: dict[str, str] = {}
    with replacing_output(out, force) as tmp:
        w = gguf.GGUFWriter(tmp, shape.arch)
        try:
            align = _scalar(r, "general.alignment")
            if isinstance(align, int):
                w.add_custom_alignment(align)
            for name, field in r.fields.items():
                if name.startswith("GGUF.") or name in _SKIP_KEYS:
                    continue
                sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
                w.add_key_value(name, field.contents(), field.types[0], sub_type=sub)
            w.add_file_type(int(FILE_TYPES[key]))
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
            plan = []
            for t in r.tensors:
                hf_shape = tuple(int(x) for x in reversed(t.shape.tolist()))
                choice = choose_type(t.name, hf_shape, key, tied, shape)
                byte_shape, nbytes = encoded_shape(hf_shape, choice.qtype)
                if choice.qtype in (T.F32, T.F16):
                    dtype = np.dtype(np.float32 if choice.qtype == T.F32 else np.float16)
                    w.add_tensor_info(t.name, byte_shape, dtype, nbytes)
                else:
                    w.add_tensor_info(
                        t.name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=choice.qtype
                    )
                plan.append((t, hf_shape, choice.qtype, nbytes))
                types[t.name] = choice.qtype.name
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for t, hf_shape, qtype, nbytes in plan:
                stream = _Slices(t, hf_shape, qtype, nbytes)
                w.write_tensor_data(cast(np.ndarray, stream), tensor_endianess=w.endianess)
            w.flush()
        finally:
            w.close()
    return types
