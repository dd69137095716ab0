"""Image loading: every input kind, EXIF, alpha on white (as transformers'
convert_to_rgb), and the bad inputs the issue lists, each a clear ImageError."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bluelm_cpp.errors import ImageError
from bluelm_cpp.vision import load_image


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _rgb(w=7, h=5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_every_input_kind_gives_the_same_pixels(tmp_path):
    a = _rgb()
    data = _png(Image.fromarray(a))
    path = tmp_path / "x.png"
    path.write_bytes(data)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    for src in (a, Image.fromarray(a), data, bytearray(data), str(path), path, url):
        img = load_image(src)
        assert img.mode == "RGB" and img.size == (7, 5)
        assert np.array_equal(np.asarray(img), a), type(src)


def test_grey_and_rgba_arrays():
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert np.array_equal(np.asarray(load_image(grey))[..., 1], grey)
    assert np.array_equal(np.asarray(load_image(grey[..., None]))[..., 0], grey)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque stays, transparent becomes white
    out = np.asarray(load_image(rgba))
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[1, 1]) == (255, 255, 255)


def test_transparency_matches_transformers_convert_to_rgb():
    t = pytest.importorskip("transformers.image_transforms")
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA")
    la = Image.fromarray(rng.integers(0, 256, (9, 11, 2), dtype=np.uint8), "LA")
    pal = Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).convert("P")
    pal.info["transparency"] = 5
    for img in (rgba, la, pal, pal.convert("L"), rgba.convert("CMYK")):
        want = np.asarray(t.convert_to_rgb(img, return_numpy=True))
        assert np.array_equal(np.asarray(load_image(img)), want), img.mode


def test_exif_orientation_is_applied():
    a = _rgb(8, 4)
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif)
    out = load_image(buf.getvalue())
    assert out.size == (4, 8)
    assert np.array_equal(np.asarray(out), np.rot90(a, k=-1))


def test_sixteen_bit_grey_is_scaled_not_clipped():
    a = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    out = np.asarray(load_image(buf.getvalue()))[..., 0]
    assert out.max() > 200 and out.min() == 0


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((0, 5, 3), np.uint8), "zero size"),
        (np.zeros((5, 0), np.uint8), "zero size"),
        (np.zeros((1, 10000, 3), np.uint8), "aspect ratio"),
        (np.zeros((10000, 1), np.uint8), "aspect ratio"),
        (_png_header_only(100_000, 100_000), "decompression bomb"),
        (b"\x89PNG\r\n\x1a\nthis is not a png", "cannot decode"),
        (b"not an image at all", "cannot decode"),
        (b"", "no bytes"),
        ("data:image/png;base64,@@@", "base64"),
        ("/no/such/file.png", "no such image file"),
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (12345, "unsupported image type"),
    ],
)
def test_bad_inputs_raise_image_error(bad, words):
    with pytest.raises(ImageError, match=words):
        load_image(bad)


def test_truncated_file_and_pixel_limit():
    data = _png(Image.fromarray(_rgb(64, 64)))
    with pytest.raises(ImageError):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(Image.fromarray(_rgb(64, 64)), max_pixels=1000)
    assert isinstance(ImageError("x"), ValueError)


def test_one_by_ten_thousand_png_is_refused():
    data = _png(Image.new("RGB", (10000, 1)))
    with pytest.raises(ImageError, match="aspect ratio"):
        load_image(data)
