"""Read Hugging Face checkpoints tensor by tensor, without torch.

Safetensors files are parsed here (an 8-byte little-endian header length, a
JSON header, then raw little-endian data) and read a slice of rows at a time,
so converting a model keeps about one slice of one tensor in memory. A PyTorch
``pytorch_model.bin`` checkpoint is read without torch too (torch_pickle.py).

Example:
    >>> from bluelm_cpp.convert.safetensors_reader import open_checkpoint
    >>> ckpt = open_checkpoint("path/to/model_dir")          # doctest: +SKIP
    >>> ckpt.info("model.norm.weight").shape                 # doctest: +SKIP
    (576,)
    >>> ckpt.load("model.norm.weight").dtype                 # doctest: +SKIP
    dtype('float32')
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from ..errors import ModelFormatError
from .torch_pickle import TorchZipFile

# Safetensors dtype name -> (numpy dtype of the raw data, bytes per element).
_SAFETENSORS_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("<f8", 8),
    "F32": ("<f4", 4),
    "F16": ("<f2", 2),
    "BF16": ("<u2", 2),  # numpy has no bfloat16: read the bits, widen later
}

_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit


@dataclass(frozen=True)
class TensorInfo:
    """Where one checkpoint tensor lives and what it looks like."""

    name: str
    dtype: str  # "F32", "F16", "BF16", "F64"
    shape: tuple[int, ...]
    file: Path


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bits (uint16) to float32 exactly.

    Example:
        >>> bf16_bits_to_f32(np.array([0x3F80, 0xC000], dtype=np.uint16))
        array([ 1., -2.], dtype=float32)
    """
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


class SafetensorsFile:
    """One ``.safetensors`` file: validated header, lazily mapped data.

    Example:
        >>> f = SafetensorsFile("model.safetensors")   # doctest: +SKIP
        >>> sorted(f.tensors)[:1]                       # doctest: +SKIP
        ['lm_head.weight']
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.tensors: dict[str, TensorInfo] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        self._fh: BinaryIO | None = None
        self._data_start = 0
        self._parse_header()

    def _fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: {what}")

    def _parse_header(self) -> None:
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise self._fail("truncated safetensors file (no header length)")
                (n,) = struct.unpack("<Q", head)
                if n > _MAX_HEADER_BYTES or 8 + n > size:
                    raise self._fail(
                        f"truncated or corrupt safetensors file (header of {n} bytes, "
                        f"file of {size} bytes)"
                    )
                raw = f.read(n)
        except OSError as e:
            raise ModelFormatError(f"{self.path}: cannot read safetensors file: {e}") from e
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self._fail(f"safetensors header is not valid JSON: {e}") from e
        if not isinstance(header, dict):
            raise self._fail("safetensors header is not a JSON object")
        self._data_start = 8 + n
        data_size = size - self._data_start
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if not isinstance(entry, dict):
                raise self._fail(f"tensor {name!r}: header entry is not an object")
            dtype = entry.get("dtype")
            shape = entry.get("shape")
            offsets = entry.get("data_offsets")
            if dtype not in _SAFETENSORS_DTYPES:
                raise self._fail(
                    f"tensor {name!r}: dtype {dtype!r} is not supported "
                    f"(expected one of {', '.join(_SAFETENSORS_DTYPES)})"
                )
            if (
                not isinstance(shape, list)
                or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)
            ):
                raise self._fail(f"tensor {name!r}: malformed shape or data_offsets")
            begin, end = offsets
            itemsize = _SAFETENSORS_DTYPES[dtype][1]
            if end - begin != math.prod(shape) * itemsize or begin < 0:
                raise self._fail(
                    f"tensor {name!r}: data_offsets {offsets} do not match shape {shape} of {dtype}"
                )
            if end > data_size:
                raise self._fail(
                    f"truncated safetensors file: tensor {name!r} ends at byte "
                    f"{self._data_start + end} but the file has {size} bytes"
                )
            self.tensors[name] = TensorInfo(name, dtype, tuple(shape), self.path)
            self._offsets[name] = (begin, end)

    def load(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as a float32 array (a copy)."""
        shape = self.tensors[name].shape
        return self.load_rows(name, 0, shape[0] if shape else 1)

    def load_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (first dimension) of tensor ``name`` as float32.

        Read with plain file reads rather than a memory map: mapped pages of a
        multi-GB checkpoint would stay in the process's resident set.
        """
        info = self.tensors[name]
        begin, end = self._offsets[name]
        rows = info.shape[0] if info.shape else 1
        if not 0 <= start <= stop <= rows:
            raise IndexError(f"rows {start}:{stop} of {name!r} with {rows} rows")
        row_bytes = (end - begin) // rows if rows else 0
        n = (stop - start) * row_bytes
        buf = bytearray(n)
        got = 0
        try:
            if self._fh is None:
                self._fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open
            self._fh.seek(self._data_start + begin + start * row_bytes)
            with memoryview(buf) as view:
                while got < n:  # a raw read may return less than asked
                    k = self._fh.readinto(view[got:])
                    if not k:
                        break
                    got += k
        except OSError as e:
            raise self._fail(f"cannot read tensor {name!r}: {e}") from e
        if got != n:  # the file shrank after the header was read
            raise self._fail(f"truncated safetensors file while reading tensor {name!r}")
        arr = np.frombuffer(buf, dtype=np.dtype(_SAFETENSORS_DTYPES[info.dtype][0]))
        arr = arr.reshape((stop - start, *info.shape[1:]) if info.shape else ())
        if info.dtype == "BF16":
            return bf16_bits_to_f32(arr)
        if info.dtype == "F32":
            return arr  # already float32 and owned (bytearray)
        return arr.astype(np.float32)

    def close(self) -> None:
        """Close the file (it is reopened on the next load)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Checkpoint:
    """All tensors of a model folder, whichever files they live in.

    Example:
        >>> ckpt = open_checkpoint("model_dir")     # doctest: +SKIP
        >>> "model.embed_tokens.weight" in ckpt.names()   # doctest: +SKIP
        True
    """

    def __init__(
        self,
        infos: dict[str, TensorInfo],
        loader: Callable[[str], np.ndarray],
        closer: Callable[[], None] | None = None,
        rows_loader: Callable[[str, int, int], np.ndarray] | None = None,
    ) -> None:
        self._infos = infos
        self._loader = loader
        self._closer = closer
        self._rows_loader = rows_loader

    def names(self) -> list[str]:
        """Tensor names in checkpoint order."""
        return list(self._infos)

    def info(self, name: str) -> TensorInfo:
        """dtype, shape and file of one tensor."""
        return self._infos[name]

    def load(self, name: str) -> np.ndarray:
        """One tensor as float32; the caller owns the array."""
        return self._loader(name)

    def load_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of one tensor as float32, reading only those rows
        where the format allows (safetensors).

        Example:
            >>> ckpt.load_rows("model.embed_tokens.weight", 0, 2).shape   # doctest: +SKIP
            (2, 576)
        """
        if self._rows_loader is not None:
            return self._rows_loader(name, start, stop)
        return np.ascontiguousarray(self._loader(name)[start:stop])

    def close(self) -> None:
        """Release open files."""
        if self._closer is not None:
            self._closer()


def _read_index(path: Path) -> dict[str, str]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot read shard index: {e}") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelFormatError(f"{path}: shard index has no 'weight_map' of name -> file")
    return weight_map


def _open_safetensors(model_dir: Path) -> Checkpoint | None:
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.is_file():
        weight_map = _read_index(index_path)
        shard_names = list(dict.fromkeys(weight_map.values()))
    else:
        weight_map = None
        shard_names = sorted(p.name for p in model_dir.glob("*.safetensors"))
        if not shard_names:
            return None
    files: dict[str, SafetensorsFile] = {}
    for shard in shard_names:
        p = model_dir / shard
        if not p.is_file():
            raise ModelFormatError(f"{index_path}: lists shard {shard!r}, which is missing")
        files[shard] = SafetensorsFile(p)
    infos: dict[str, TensorInfo] = {}
    owner: dict[str, SafetensorsFile] = {}
    if weight_map is not None:
        for name, shard in weight_map.items():
            f = files[shard]
            if name not in f.tensors:
                raise ModelFormatError(
                    f"{index_path}: tensor {name!r} is listed in {shard!r} but that file "
                    "does not hold it"
                )
            infos[name] = f.tensors[name]
            owner[name] = f
    else:
        for f in files.values():
            for name, info in f.tensors.items():
                if name in infos:
                    raise ModelFormatError(
                        f"tensor {name!r} appears in both {infos[name].file} and {f.path}"
                    )
                infos[name] = info
                owner[name] = f

    def close() -> None:
        for f in files.values():
            f.close()

    return Checkpoint(
        infos, lambda n: owner[n].load(n), close, lambda n, a, b: owner[n].load_rows(n, a, b)
    )


def _to_f32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values (BF16 as raw bits) widened to float32 exactly."""
    if dtype == "BF16":
        return bf16_bits_to_f32(raw)
    return raw.astype(np.float32)


def _open_torch(model_dir: Path) -> Checkpoint | None:
    """``pytorch_model.bin`` (or its shards) read without torch (torch_pickle.py)."""
    index_path = model_dir / "pytorch_model.bin.index.json"
    if index_path.is_file():
        files = list(dict.fromkeys(_read_index(index_path).values()))
    elif (model_dir / "pytorch_model.bin").is_file():
        files = ["pytorch_model.bin"]
    else:
        return None
    shards: list[TorchZipFile] = []
    owner: dict[str, TorchZipFile] = {}
    infos: dict[str, TensorInfo] = {}
    for shard in files:
        p = model_dir / shard
        if not p.is_file():
            raise ModelFormatError(f"{index_path}: lists shard {shard!r}, which is missing")
        f = TorchZipFile(p)
        shards.append(f)
        for name, t in f.tensors.items():
            if name in infos:
                raise ModelFormatError(
                    f"tensor {name!r} appears in both {infos[name].file} and {p}"
                )
            infos[name] = TensorInfo(name, t.dtype, t.shape, p)
            owner[name] = f

    def rows(name: str, start: int, stop: int) -> np.ndarray:
        return _to_f32(owner[name].load_rows(name, start, stop), infos[name].dtype)

    def load(name: str) -> np.ndarray:
        shape = infos[name].shape
        return rows(name, 0, shape[0] if shape else 1)

    def close() -> None:
        for f in shards:
            f.close()

    return Checkpoint(infos, load, close, rows)


def open_checkpoint(model_dir: str | os.PathLike[str]) -> Checkpoint:
    """Open the weights of a Hugging Face model folder.

    Looks for ``model.safetensors.index.json``, then ``*.safetensors``, then
    ``pytorch_model.bin(.index.json)`` (read without torch, torch_pickle.py).

    Example:
        >>> ckpt = open_checkpoint("SmolLM2-135M-Instruct")   # doctest: +SKIP
        >>> len(ckpt.names())                                 # doctest: +SKIP
        272
    """
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelFormatError(f"{d}: model folder does not exist or is not a folder")
    ckpt = _open_safetensors(d) or _open_torch(d)
    if ckpt is None:
        raise ModelFormatError(
            f"{d}: no weights found (expected model.safetensors, "
            "model.safetensors.index.json with its shards, or pytorch_model.bin)"
        )
    return ckpt
