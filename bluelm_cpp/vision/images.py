"""Load an image from whatever the caller has, as an RGB ``PIL.Image``.

Accepted: a file path (``str`` / ``os.PathLike``), encoded bytes, a
``data:image/...;base64,`` URL, a ``PIL.Image.Image``, or a numpy ``uint8``
array of shape HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA).

Conversion follows transformers' ``convert_to_rgb`` (what its image
processors do): EXIF orientation is applied first, then any transparency
(RGBA, LA, palette or greyscale with a transparent colour) is composited onto
a **white** background; grey, palette, CMYK and 16-bit images become 8-bit RGB.

Bad input raises :class:`bluelm_cpp.errors.ImageError`: an empty or corrupt
file, a size of zero, more than ``max_pixels`` pixels (a decompression bomb
is refused from its header, before any pixel is decoded), or an aspect ratio
beyond ``MAX_ASPECT_RATIO`` (1:50; beyond that the short side of a 3-patch
canvas shrinks below 8 pixels and nothing of the image is left to see).

Example:
    >>> import numpy as np
    >>> from bluelm_cpp.vision import load_image
    >>> load_image(np.zeros((20, 30, 4), np.uint8)).size   # RGBA array -> RGB image
    (30, 20)
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import warnings
from typing import Any, Union

import numpy as np

from ..errors import ImageError

MAX_PIXELS = 1 << 26  # 67 Mpixel (8192 x 8192): ~200 MB as RGB
MAX_ASPECT_RATIO = 50.0

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, Any]

_DATA_URL = re.compile(r"data:(image/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)


def _pil() -> Any:
    try:
        from PIL import Image, ImageOps
    except ImportError as e:  # pragma: no cover - Pillow is a dependency
        raise ImageError("Pillow is needed for images: pip install Pillow") from e
    return Image, ImageOps


def _check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{what}: image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{what}: image is {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {max_pixels:,} (a decompression bomb?); raise max_pixels if it is real"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(
            f"{what}: image is {width}x{height}, an aspect ratio of {ratio:.0f}:1; at most "
            f"{MAX_ASPECT_RATIO:.0f}:1 is supported (crop or pad it first)"
        )


def _from_array(a: np.ndarray) -> Any:
    Image, _ = _pil()
    if a.dtype != np.uint8:
        raise ImageError(f"numpy image must be uint8, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        mode = "L"
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        mode = "RGB" if a.shape[2] == 3 else "RGBA"
    else:
        raise ImageError(f"numpy image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"numpy image has zero size (shape {a.shape})")
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


def _decode_data_url(url: str) -> bytes:
    m = _DATA_URL.match(url)
    if m is None:
        raise ImageError("data: URL must be of the form data:image/...;base64,<data>")
    try:
        return base64.b64decode(url[m.end() :], validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"data: URL has invalid base64: {e}") from e


def _open_encoded(data: bytes | str | os.PathLike[str], what: str, max_pixels: int) -> Any:
    Image, _ = _pil()
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) == 0:
            raise ImageError(f"{what}: no bytes")
        src: Any = io.BytesIO(bytes(data))
    else:
        src = os.fspath(data)
        if not os.path.isfile(src):
            raise ImageError(f"{what}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(src)  # reads the header only
            _check_size(img.width, img.height, max_pixels, what)
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{what}: {e}") from e
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise OSError, SyntaxError,
        # ValueError, EOFError, and on some corrupt files TypeError, IndexError, struct.error
        raise ImageError(f"{what}: cannot decode image: {type(e).__name__}: {e}") from e
    return img


def _to_rgb(img: Any) -> Any:
    Image, _ = _pil()
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits rather than clip (Pillow's convert clips)
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(image: ImageInput, max_pixels: int = MAX_PIXELS) -> Any:
    """Return ``image`` as an RGB ``PIL.Image.Image`` (see the module docstring).

    Example:
        >>> import numpy as np
        >>> img = load_image(np.full((4, 6), 128, np.uint8))
        >>> img.mode, img.size, img.getpixel((0, 0))
        ('RGB', (6, 4), (128, 128, 128))
    """
    Image, ImageOps = _pil()
    if isinstance(image, Image.Image):
        what = "PIL image"
        _check_size(image.width, image.height, max_pixels, what)
        img = image
    elif isinstance(image, np.ndarray):
        what = "numpy image"
        if image.ndim >= 2:
            _check_size(image.shape[1], image.shape[0], max_pixels, what)
        img = _from_array(image)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        what = "image bytes"
        img = _open_encoded(image, what, max_pixels)
    elif isinstance(image, str) and image[:5].lower() == "data:":
        what = "data: URL"
        img = _open_encoded(_decode_data_url(image), what, max_pixels)
    elif isinstance(image, (str, os.PathLike)):
        what = os.fspath(image)
        img = _open_encoded(image, str(what), max_pixels)
    else:
        raise ImageError(
            f"unsupported image type {type(image).__name__}: give a path, bytes, a data: URL, "
            "a PIL image or a uint8 numpy array"
        )
    try:
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except Exception as e:  # noqa: BLE001 - as in _open_encoded: any decoder error
        raise ImageError(f"{what}: cannot convert image to RGB: {e}") from e
    _check_size(img.width, img.height, max_pixels, what)
    if "exif" in img.info:
        # The orientation is applied; the raw EXIF, which Pillow re-parses more
        # strictly on a converted image, must not make load_image(load_image(x)) fail.
        if img is image:
            img = img.copy()
        img.info.pop("exif", None)
    return img
