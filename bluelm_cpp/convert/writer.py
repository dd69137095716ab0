"""Write the GGUF: plan everything first, then stream tensor by tensor.

The whole plan (config, tensor names and shapes, tokenizer, output types) is
checked before any file is created, so most bad inputs leave nothing behind.
Each tensor is read, transformed, encoded and written in slices of rows
(:data:`SLICE_BYTES` of float32), so memory stays near one slice, not one tensor.
Data is written to a temporary file in the output's folder and renamed over
the output only at the end; any error, Ctrl-C included, removes it.

Example:
    >>> from bluelm_cpp.convert import convert_checkpoint
    >>> s = convert_checkpoint("SmolLM2-135M-Instruct", "smol.gguf", "q8_0")  # doctest: +SKIP
    >>> s.types                                                               # doctest: +SKIP
    {'F32': 61, 'Q8_0': 211}
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import gguf
import numpy as np

from ..errors import ModelFileError, ModelFormatError
from .architectures import (
    Architecture,
    HParams,
    PlannedTensor,
    get_architecture,
    plan_tensors,
    read_hparams,
    write_hparam_keys,
)
from .output_file import replacing_output
from .quantize_policy import (
    FILE_TYPES,
    ModelShape,
    TypeChoice,
    check_outtype,
    choose_type,
    encode,
)
from .quantize_policy import encoded_shape as _encoded_shape
from .safetensors_reader import Checkpoint, open_checkpoint
from .tokenizer_keys import TokenizerKeys, read_tokenizer


@dataclass(frozen=True)
class TensorRecord:
    """One written tensor: GGUF name, HF-order shape, type, bytes, fallback reason."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    nbytes: int
    fallback: str | None = None


@dataclass
class ConvertSummary:
    """What :func:`convert_checkpoint` wrote.

    Example:
        >>> s = convert_checkpoint("model_dir", "out.gguf", "q4_0")   # doctest: +SKIP
        >>> s.n_tensors, s.tensor_bytes, s.fallbacks                  # doctest: +SKIP
        (21, 190464, [])
        >>> print(s.table())                                          # doctest: +SKIP
    """

    output: Path
    arch: str
    hf_arch: str
    outtype: str
    tokenizer: str
    tensors: list[TensorRecord] = field(default_factory=list)
    file_bytes: int = 0

    @property
    def n_tensors(self) -> int:
        """Number of tensors written."""
        return len(self.tensors)

    @property
    def tensor_bytes(self) -> int:
        """Bytes of tensor data (without padding, header and metadata)."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def types(self) -> dict[str, int]:
        """Tensor count per GGML type name."""
        return dict(Counter(t.type_name for t in self.tensors))

    @property
    def fallbacks(self) -> list[tuple[str, str]]:
        """(tensor, reason) for each tensor not stored as ``outtype`` asked."""
        return [(t.name, t.fallback) for t in self.tensors if t.fallback]

    def table(self) -> str:
        """A human-readable table: bytes per type, fallbacks, totals."""
        by_type: dict[str, list[int]] = {}
        for t in self.tensors:
            row = by_type.setdefault(t.type_name, [0, 0])
            row[0] += 1
            row[1] += t.nbytes
        lines = [f"{'type':<6} {'tensors':>8} {'bytes':>14}"]
        for name, (n, b) in sorted(by_type.items()):
            lines.append(f"{name:<6} {n:>8} {b:>14,}")
        lines.append(f"{'total':<6} {self.n_tensors:>8} {self.tensor_bytes:>14,}")
        for name, reason in self.fallbacks:
            lines.append(f"fallback: {name}: {reason}")
        lines.append(
            f"wrote {self.output} ({self.file_bytes:,} bytes, arch {self.arch}, "
            f"{self.outtype}, tokenizer {self.tokenizer})"
        )
        return "\n".join(lines)


@dataclass
class _Plan:
    arch: Architecture
    hp: HParams
    config: dict[str, Any]
    ckpt: Checkpoint
    tensors: list[tuple[PlannedTensor, TypeChoice]]
    tokenizer: TokenizerKeys


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise ModelFormatError(f"{model_dir}: model folder does not exist or is not a folder")
    if not path.is_file():
        raise ModelFormatError(
            f"{model_dir}: no config.json (is this a Hugging Face model folder?)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot read JSON: {e}") from e
    if not isinstance(config, dict):
        raise ModelFormatError(f"{path}: not a JSON object")
    return config


def _make_plan(model_dir: Path, outtype: str) -> _Plan:
    config = _read_config(model_dir)
    where = str(model_dir / "config.json")
    arch = get_architecture(config, where)
    hp = read_hparams(config, where)
    tokenizer = read_tokenizer(model_dir, hp.n_vocab)
    arch.apply_tokenizer_defaults(tokenizer)
    ckpt = open_checkpoint(model_dir)
    planned = plan_tensors(arch, hp, ckpt)
    shape = ModelShape(hp.n_layer, hp.n_head, hp.n_head_kv, arch.gguf_arch)
    choices = [(p, choose_type(p.gguf_name, p.shape, outtype, hp.tied, shape)) for p in planned]
    return _Plan(arch, hp, config, ckpt, choices, tokenizer)


def _check_output(output: Path, force: bool) -> None:
    if output.is_dir():
        raise ModelFileError(f"{output}: output path is a folder")
    if output.exists() and not force:
        raise ModelFileError(
            f"{output}: output file exists (use --force / force=True to replace it)"
        )
    parent = output.parent
    if not parent.is_dir():
        raise ModelFileError(f"{output}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ModelFileError(f"{output}: output folder {parent} is not writable")


# float32 bytes read, transformed and encoded at a time: memory stays near this
# (times the quantiser's temporaries), not near the largest tensor
SLICE_BYTES = 16 << 20


def row_slices(p: PlannedTensor, slice_bytes: int | None = None) -> list[tuple[int, int]]:
    """The (start, stop) row ranges one tensor is converted in.

    Example:
        >>> row_slices(PlannedTensor("t", (10, 4), "t", row_group=2), slice_bytes=64)
        [(0, 4), (4, 8), (8, 10)]
    """
    slice_bytes = SLICE_BYTES if slice_bytes is None else slice_bytes
    rows = p.shape[0] if p.shape else 1
    if p.generate is not None or p.row_group is None or len(p.shape) < 2:
        return [(0, rows)]
    row_bytes = 4 * max(1, math.prod(p.shape[1:]))
    step = max(p.row_group, slice_bytes // row_bytes // p.row_group * p.row_group)
    return [(a, min(a + step, rows)) for a in range(0, rows, step)] or [(0, 0)]


def _load(plan: _Plan, p: PlannedTensor, start: int, stop: int) -> np.ndarray:
    if p.generate is not None:
        data = p.generate()
    else:
        assert p.hf_name is not None
        if (start, stop) == (0, p.shape[0] if p.shape else 1):
            data = plan.ckpt.load(p.hf_name)
        else:
            data = plan.ckpt.load_rows(p.hf_name, start, stop)
    if p.transform is not None:
        data = p.transform(data, plan.hp)
    return data


def _encode(data: np.ndarray, choice: TypeChoice) -> np.ndarray:
    # a separate function so tests can interrupt a conversion mid-way
    return encode(data, choice.qtype)


class _StreamedTensor:
    """Stands in for an ndarray in ``GGUFWriter.write_tensor_data``, which only
    asks for ``nbytes`` and ``tofile``: the tensor is produced slice by slice."""

    def __init__(self, plan: _Plan, p: PlannedTensor, choice: TypeChoice, nbytes: int) -> None:
        self.plan, self.p, self.choice, self.nbytes = plan, p, choice, nbytes

    def tofile(self, fp: Any) -> None:
        written = 0
        for start, stop in row_slices(self.p):
            data = _encode(_load(self.plan, self.p, start, stop), self.choice)
            data.tofile(fp)
            written += data.nbytes
            del data
        if written != self.nbytes:  # a wrong size would shift every later tensor
            raise ModelFormatError(
                f"{self.p.gguf_name}: encoded {written} bytes, expected {self.nbytes}"
            )


def _write(plan: _Plan, tmp: Path, name: str, outtype: str, progress: bool) -> list[TensorRecord]:
    w = gguf.GGUFWriter(tmp, plan.arch.gguf_arch)
    try:
        w.add_name(name)
        write_hparam_keys(w, plan.arch, plan.hp)
        w.add_file_type(int(FILE_TYPES[outtype]))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        plan.tokenizer.write(w)
        records: list[TensorRecord] = []
        for p, choice in plan.tensors:
            byte_shape, nbytes = _encoded_shape(p.shape, choice.qtype)
            if choice.qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                dtype = np.dtype(np.float32 if choice.qtype.name == "F32" else np.float16)
                w.add_tensor_info(p.gguf_name, byte_shape, dtype, nbytes)
            else:  # block formats and BF16 travel as raw bytes
                w.add_tensor_info(
                    p.gguf_name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=choice.qtype
                )
            records.append(
                TensorRecord(p.gguf_name, p.shape, choice.qtype.name, nbytes, choice.fallback)
            )
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        from tqdm import tqdm

        bar = tqdm(
            plan.tensors, desc="converting", unit="tensor", disable=not progress, file=sys.stderr
        )
        for (p, choice), rec in zip(bar, records):
            bar.set_postfix_str(f"{p.gguf_name} {choice.qtype.name}", refresh=False)
            stream = _StreamedTensor(plan, p, choice, rec.nbytes)
            w.write_tensor_data(cast(np.ndarray, stream), tensor_endianess=w.endianess)
        bar.close()
        w.flush()
    finally:
        w.close()
    return records


def convert_checkpoint(
    model_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    outtype: str = "f16",
    force: bool = False,
    progress: bool = True,
) -> ConvertSummary:
    """Convert a Hugging Face checkpoint folder to a llama.cpp-compatible GGUF.

    ``outtype`` is one of ``f32``, ``f16``, ``bf16``, ``q8_0``, ``q4_0``,
    ``q4_1`` or a llama-quantize mix (``q4_k_m``, ``q5_k_m``, ``q6_k``,
    ``q5_0``, ``q5_1``, ``q3_k_m``, ``q2_k``, ``iq4_nl``, ``iq4_xs``); see
    :mod:`bluelm_cpp.convert.quantize_policy` for which tensors get which type.
    Raises :class:`~bluelm_cpp.errors.ModelFormatError` for a bad or unsupported
    checkpoint and :class:`~bluelm_cpp.errors.ModelFileError`
    for an existing (without ``force``) or unwritable output; no output or
    temporary file is left behind on any error or on KeyboardInterrupt.

    Example:
        >>> from bluelm_cpp.convert import convert_checkpoint
        >>> s = convert_checkpoint("SmolLM2-135M-Instruct", "smol-q8.gguf",
        ...                        outtype="q8_0", progress=False)     # doctest: +SKIP
        >>> s.arch, s.types["Q8_0"]                                    # doctest: +SKIP
        ('llama', 211)
    """
    outtype = check_outtype(outtype)
    model_dir = Path(model_dir)
    out = Path(output).absolute()
    _check_output(out, force)
    plan = _make_plan(model_dir, outtype)
    try:
        with replacing_output(out, force) as tmp:
            records = _write(plan, tmp, model_dir.absolute().name, outtype, progress)
    finally:
        plan.ckpt.close()
    summary = ConvertSummary(
        output=out,
        arch=plan.arch.gguf_arch,
        hf_arch=plan.arch.hf_names[0],
        outtype=outtype,
        tokenizer=f"{plan.tokenizer.model}/{plan.tokenizer.pre}",
        tensors=records,
        file_bytes=out.stat().st_size,
    )
    if progress:
        print(summary.table(), file=sys.stderr)
    return summary
