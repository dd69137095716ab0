"""Regenerates the image-loader fuzz seeds in tests/fuzz/vision/seeds/: tiny
images written by Pillow in every format and mode the loader meets (PNG RGB,
RGBA, palette with transparency, 16-bit grey; JPEG RGB, grey, CMYK; GIF with
two frames; BMP; WebP; TIFF) plus an EXIF-rotated JPEG.

    python tests/fuzz/vision/make_seeds.py
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

SEEDS = Path(__file__).resolve().parent / "seeds"


def _img(mode: str, w: int = 5, h: int = 3) -> Image.Image:
    rng = np.random.default_rng(w * 100 + h)
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return rgb.convert(mode)


def _save(name: str, img: Image.Image, fmt: str, **kw: object) -> None:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    (SEEDS / name).write_bytes(buf.getvalue())


def main() -> None:
    SEEDS.mkdir(exist_ok=True)
    _save("rgb.png", _img("RGB"), "PNG")
    _save("rgba.png", _img("RGBA", 4, 4), "PNG")
    pal = _img("P", 6, 2)
    _save("palette_transparent.png", pal, "PNG", transparency=0)
    _save("grey16.png", Image.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000), "PNG")
    _save("rgb.jpg", _img("RGB", 8, 8), "JPEG", quality=80)
    _save("grey.jpg", _img("L", 8, 4), "JPEG")
    _save("cmyk.jpg", _img("CMYK", 8, 8), "JPEG")
    frames = [_img("P", 4, 4), _img("P", 4, 4).rotate(90)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    (SEEDS / "two_frames.gif").write_bytes(buf.getvalue())
    _save("rgb.bmp", _img("RGB", 3, 2), "BMP")
    _save("rgb.webp", _img("RGB", 4, 4), "WEBP")
    _save("rgb.tiff", _img("RGB", 2, 7), "TIFF")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    _save("exif_rotated.jpg", _img("RGB", 8, 2), "JPEG", exif=exif.tobytes())
    for p in sorted(SEEDS.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
