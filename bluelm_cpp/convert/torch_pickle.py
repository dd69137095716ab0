"""Read ``pytorch_model.bin`` state dicts without torch.

``torch.save`` writes a zip archive: ``<name>/data.pkl`` (a pickle of the
state dict) and one ``<name>/data/<key>`` entry per storage, stored
uncompressed. The pickle names only a few globals: ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` (``_rebuild_parameter``) and the typed
storage classes (``torch.FloatStorage``, ``torch.HalfStorage``,
``torch.BFloat16Storage``, ``torch.DoubleStorage``), with each storage as a
persistent id ``("storage", class, key, location, numel)``. This reader
resolves exactly those names to stand-ins and refuses every other global, so
a malicious pickle cannot run code, and it reads tensor data lazily, a slice
of rows at a time, straight from the zip entry.

Example:
    >>> from bluelm_cpp.convert.torch_pickle import TorchZipFile
    >>> f = TorchZipFile("pytorch_model-00001-of-00002.bin")    # doctest: +SKIP
    >>> f.tensors["model.embed_tokens.weight"].shape            # doctest: +SKIP
    (100096, 4096)
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import ModelFormatError

# typed storage class -> (safetensors-style dtype name, numpy dtype of the bytes, bytes per element)
_STORAGES: dict[str, tuple[str, str, int]] = {
    "FloatStorage": ("F32", "<f4", 4),
    "HalfStorage": ("F16", "<f2", 2),
    "BFloat16Storage": ("BF16", "<u2", 2),
    "DoubleStorage": ("F64", "<f8", 8),
}


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    np_dtype: str
    itemsize: int
    numel: int


@dataclass(frozen=True)
class TorchTensor:
    """Where one tensor's data lies: a storage entry, an element offset, shape, strides."""

    name: str
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        """``"F32"``, ``"F16"``, ``"BF16"`` or ``"F64"``."""
        return self.storage.dtype

    def contiguous(self) -> bool:
        """Row-major without gaps (rows can be read as one byte range)."""
        expect = 1
        for size, step in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and step != expect:
                return False
            expect *= size
        return True


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> tuple[Any, ...]:
    return ("tensor", storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict needs; anything else is an error."""

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, data: IO[bytes], where: Path) -> None:
        super().__init__(data)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGES:
            return name  # the storage's class, named; persistent_load uses it
        found = self._ALLOWED.get((module, name))
        if found is None:
            raise ModelFormatError(
                f"{self.where}: the checkpoint pickle asks for {module}.{name}, which a "
                "state dict of float tensors never needs; refusing to load it"
            )
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ModelFormatError(f"{self.where}: unexpected persistent id {pid!r}")
        _, cls, key, _location, numel = pid
        if cls not in _STORAGES:
            raise ModelFormatError(f"{self.where}: tensor storage of type {cls!r} is not supported")
        dtype, np_dtype, itemsize = _STORAGES[cls]
        return _Storage(str(key), dtype, np_dtype, itemsize, int(numel))


class TorchZipFile:
    """One ``torch.save`` zip checkpoint: tensor records parsed, data read on demand."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as e:
            raise ModelFormatError(
                f"{self.path}: not a zip-format PyTorch checkpoint ({e}); legacy (pre-1.6) "
                "pickles are not supported, re-save it with torch.save or as safetensors"
            ) from e
        names = self._zip.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ModelFormatError(f"{self.path}: no single data.pkl in the archive")
        self._prefix = pkl[0][: -len("data.pkl")]
        order = self._prefix + "byteorder"
        if order in names and self._zip.read(order).strip() not in (b"little", b""):
            raise ModelFormatError(f"{self.path}: big-endian checkpoints are not supported")
        try:
            with self._zip.open(pkl[0]) as fh:
                state = _StateDictUnpickler(fh, self.path).load()
        except ModelFormatError:
            raise
        except Exception as e:  # a corrupt pickle raises many types
            raise ModelFormatError(f"{self.path}: cannot read the checkpoint pickle: {e}") from e
        if not isinstance(state, dict):
            raise ModelFormatError(
                f"{self.path}: expected a state dict, got {type(state).__name__}"
            )
        self.tensors: dict[str, TorchTensor] = {}
        for name, rec in state.items():
            if not (isinstance(rec, tuple) and len(rec) == 5 and rec[0] == "tensor"):
                raise ModelFormatError(f"{self.path}: entry {name!r} is not a tensor")
            _, storage, offset, shape, stride = rec
            t = TorchTensor(str(name), storage, int(offset), shape, stride)
            self._check(t)
            self.tensors[t.name] = t

    def _check(self, t: TorchTensor) -> None:
        if len(t.shape) != len(t.stride) or any(int(s) < 0 for s in (*t.shape, *t.stride)):
            raise ModelFormatError(f"{self.path}: tensor {t.name!r} has a bad shape or stride")
        last = (
            t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride))
            if math.prod(t.shape)
            else 0
        )
        info = self._entry(t.storage.key)
        if (
            t.offset < 0
            or last >= max(t.storage.numel, 1)
            or info.file_size < t.storage.numel * t.storage.itemsize
        ):
            raise ModelFormatError(f"{self.path}: tensor {t.name!r} reaches past its storage")

    def _entry(self, key: str) -> zipfile.ZipInfo:
        try:
            return self._zip.getinfo(f"{self._prefix}data/{key}")
        except KeyError:
            raise ModelFormatError(
                f"{self.path}: storage {key!r} is missing from the archive"
            ) from None

    def _read(self, t: TorchTensor, first: int, count: int) -> np.ndarray:
        """``count`` elements of the storage from element ``first``."""
        with self._zip.open(self._entry(t.storage.key)) as fh:
            fh.seek(first * t.storage.itemsize)
            raw = fh.read(count * t.storage.itemsize)
        if len(raw) != count * t.storage.itemsize:
            raise ModelFormatError(f"{self.path}: tensor {t.name!r} is truncated")
        return np.frombuffer(raw, dtype=t.storage.np_dtype)

    def load_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (all of a 0/1-D tensor when ``(0, len)``) in the stored dtype."""
        t = self.tensors[name]
        shape = t.shape or (1,)
        stride = t.stride or (1,)
        rows = stop - start
        if t.contiguous():
            per_row = math.prod(shape[1:])
            flat = self._read(t, t.offset + start * stride[0], rows * per_row)
            return flat.reshape((rows, *shape[1:]))[:rows] if t.shape else flat.reshape(())
        # strided (a saved transpose): read the span and gather
        span = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
        base = self._read(t, t.offset, span)
        full = np.lib.stride_tricks.as_strided(
            base, shape=shape, strides=[s * base.itemsize for s in stride], writeable=False
        )
        return np.ascontiguousarray(full[start:stop])

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()
