"""The torch-free reader of ``torch.save`` checkpoints (bluelm_cpp/convert/torch_pickle.py).

Archives are built here by hand in torch's layout (``<name>/data.pkl`` plus
one ``<name>/data/<key>`` entry per storage), so these run without torch;
test_convert.py reads files written by torch itself when it is installed.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bluelm_cpp.convert.torch_pickle import TorchZipFile
from bluelm_cpp.errors import ModelFormatError


class _Op:
    """A tiny writer of the pickle opcodes torch.save emits (protocol 2)."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def glob(self, module: str, name: str) -> None:
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def text(self, s: str) -> None:
        raw = s.encode()
        self.out += b"X" + struct.pack("<I", len(raw)) + raw

    def int_(self, v: int) -> None:
        self.out += b"J" + struct.pack("<i", v)

    def tuple_(self, items: tuple[int, ...]) -> None:
        self.out += b"("
        for v in items:
            self.int_(v)
        self.out += b"t"


def write_archive(
    path: Path,
    tensors: dict[str, tuple[np.ndarray, str]],
    *,
    strides: dict | None = None,
    extra_global: tuple[str, str] | None = None,
) -> None:
    """tensors: name -> (array, storage class name), written in torch's zip layout."""
    op = _Op()
    op.out += b"}("  # EMPTY_DICT, MARK
    blobs = {}
    for i, (name, (arr, cls)) in enumerate(tensors.items()):
        key = str(i)
        blobs[key] = np.ascontiguousarray(arr).tobytes()
        shape = arr.shape
        stride = (strides or {}).get(name) or tuple(
            int(np.prod(shape[j + 1 :])) for j in range(len(shape))
        )
        op.text(name)
        op.glob("torch._utils", "_rebuild_tensor_v2")
        op.out += b"(("  # args tuple, then the persistent id tuple
        op.text("storage")
        op.glob("torch", cls)
        op.text(key)
        op.text("cpu")
        op.int_(arr.size)
        op.out += b"tQ"  # TUPLE, BINPERSID
        op.int_(0)
        op.tuple_(shape)
        op.tuple_(stride)
        op.out += b"\x89"  # NEWFALSE
        op.glob("collections", "OrderedDict")
        op.out += b")Rt" + b"R"  # EMPTY_TUPLE, REDUCE (hooks); TUPLE (args); REDUCE
    if extra_global:
        op.text("evil")
        op.glob(*extra_global)
        op.out += b"("
        op.text("echo hi")
        op.out += b"tR"
    op.out += b"u."  # SETITEMS, STOP
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", bytes(op.out))
        z.writestr("archive/byteorder", "little")
        for key, raw in blobs.items():
            z.writestr(f"archive/data/{key}", raw)


def test_reads_float_types_and_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 3)).astype(np.float32)
    h = rng.standard_normal(7).astype(np.float16)
    b = (rng.standard_normal((4, 2)).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(
        np.float32
    )
    bf16_bits = (b.view(np.uint32) >> 16).astype(np.uint16)
    write_archive(
        tmp_path / "m.bin",
        {"a": (a, "FloatStorage"), "h": (h, "HalfStorage"), "b": (bf16_bits, "BFloat16Storage")},
    )
    f = TorchZipFile(tmp_path / "m.bin")
    assert {n: (t.dtype, t.shape) for n, t in f.tensors.items()} == {
        "a": ("F32", (5, 3)),
        "h": ("F16", (7,)),
        "b": ("BF16", (4, 2)),
    }
    assert np.array_equal(f.load_rows("a", 1, 4), a[1:4])
    assert np.array_equal(f.load_rows("h", 0, 7), h)
    assert np.array_equal(f.load_rows("b", 0, 4), bf16_bits)


def test_strided_tensor(tmp_path: Path) -> None:
    base = np.arange(12, dtype=np.float32)  # a (3, 4) saved as the transpose of (4, 3)
    write_archive(
        tmp_path / "t.bin", {"t": (base.reshape(3, 4), "FloatStorage")}, strides={"t": (1, 3)}
    )
    f = TorchZipFile(tmp_path / "t.bin")
    want = np.lib.stride_tricks.as_strided(base, (3, 4), (4, 12))
    assert np.array_equal(f.load_rows("t", 0, 3), want)
    assert np.array_equal(f.load_rows("t", 1, 2), want[1:2])


def test_refuses_other_globals(tmp_path: Path) -> None:
    write_archive(
        tmp_path / "e.bin",
        {"a": (np.zeros(2, np.float32), "FloatStorage")},
        extra_global=("os", "system"),
    )
    with pytest.raises(ModelFormatError, match="os.system"):
        TorchZipFile(tmp_path / "e.bin")


@pytest.mark.parametrize("damage", ["not-zip", "no-storage", "short-storage"])
def test_bad_archives(tmp_path: Path, damage: str) -> None:
    p = tmp_path / "bad.bin"
    if damage == "not-zip":
        p.write_bytes(b"\x80\x02not a zip")
        match = "not a zip"
    else:
        write_archive(p, {"a": (np.zeros((4, 4), np.float32), "FloatStorage")})
        with zipfile.ZipFile(p) as z:
            entries = {n: z.read(n) for n in z.namelist()}
        if damage == "no-storage":
            del entries["archive/data/0"]
            match = "missing"
        else:
            entries["archive/data/0"] = entries["archive/data/0"][:20]
            match = "past its storage"
        with zipfile.ZipFile(p, "w") as z:
            for n, raw in entries.items():
                z.writestr(n, raw)
    with pytest.raises(ModelFormatError, match=match):
        TorchZipFile(p)
