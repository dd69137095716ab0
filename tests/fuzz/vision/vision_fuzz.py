"""Checks shared by the image-path fuzzing (tests/test_fuzz_vision.py, with
hypothesis) and its campaign (tests/fuzz/vision/campaign.py, plain random).

* ``check_plan_grid``: any size 1..100000 per side and any method/limits give a
  grid inside the limits, or ``InvalidArgumentError``.
* ``check_load``: any bytes give an RGB image within the pixel and aspect
  limits, or ``ImageError``; images that load are cut into patches whose count
  matches their planned grid.
* ``forged_png``: a PNG whose header claims any size (decompression bombs,
  extreme aspect ratios such as llama.cpp #27166's) with almost no pixel data.
"""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import numpy as np

from bluelm_cpp.errors import ImageError, InvalidArgumentError
from bluelm_cpp.vision import (
    MAX_ASPECT_RATIO,
    MAX_PIXELS,
    METHODS,
    bluelm_v_patches_uint8,
    load_image,
    plan_grid,
)

SEEDS = Path(__file__).resolve().parent / "seeds"
PATCH = 14  # a small patch side keeps each patch cut cheap


class Finding(AssertionError):
    """A result the property forbids (the fuzzers report these)."""


def check_plan_grid(
    width: int, height: int, method: str, max_side: int | None, max_patches: int, alpha: float
) -> tuple[int, int] | None:
    try:
        cols, rows = plan_grid(width, height, method, max_side, max_patches, alpha)
    except InvalidArgumentError:
        if 0.0 <= alpha < 1.0 and method in METHODS:
            raise Finding(f"plan_grid refused valid arguments {width}x{height}") from None
        return None
    side = max_side if max_side is not None else (max_patches if method == "internvl" else 3)
    if not (isinstance(cols, int) and isinstance(rows, int)):
        raise Finding(f"grid {cols, rows} is not a pair of ints")
    if not (1 <= cols <= side and 1 <= rows <= side and cols * rows <= max_patches):
        raise Finding(f"grid {cols}x{rows} breaks max_side={side}, max_patches={max_patches}")
    return cols, rows


def check_load(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int] | None:
    try:
        img = load_image(data, max_pixels=max_pixels)
    except ImageError:
        return None
    w, h = img.size
    if img.mode != "RGB":
        raise Finding(f"loaded image has mode {img.mode}")
    if not (w >= 1 and h >= 1 and w * h <= max_pixels):
        raise Finding(f"loaded image {w}x{h} breaks the pixel limit {max_pixels}")
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise Finding(f"loaded image {w}x{h} breaks the aspect limit")
    if w * h <= 1 << 20:
        patches, layout = bluelm_v_patches_uint8(img, patch_side=PATCH)
        cols, rows = plan_grid(w, h, patch_side=PATCH)
        if patches.shape[1:] != (PATCH, PATCH, 3) or patches.dtype != np.uint8:
            raise Finding(f"patches of {w}x{h} have shape {patches.shape}, {patches.dtype}")
        if patches.shape[0] not in (cols * rows, cols * rows + 1):  # + a global thumbnail
            raise Finding(f"{patches.shape[0]} patches for a {cols}x{rows} grid")
        del layout
    return w, h


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def forged_png(width: int, height: int, color_type: int = 2, pixels: bytes = b"\x00" * 16) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(pixels))
        + _chunk(b"IEND", b"")
    )


def check_forged(width: int, height: int) -> None:
    got = check_load(forged_png(width, height))
    if got is not None and got != (width, height):
        raise Finding(f"forged {width}x{height} PNG loaded as {got}")
    ratio = max(width, height) / min(width, height)
    if got is not None and (width * height > MAX_PIXELS or ratio > MAX_ASPECT_RATIO):
        raise Finding(f"forged {width}x{height} PNG passed the limits")


def seed_inputs() -> list[bytes]:
    return [p.read_bytes() for p in sorted(SEEDS.iterdir())]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few random byte edits of the kinds libFuzzer makes."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            b[rng.randrange(len(b) + 1) : 0] = bytes(
                rng.randrange(256) for _ in range(rng.randint(1, 8))
            )
        elif op == 3 and b:
            i = rng.randrange(len(b))
            del b[i : i + rng.randint(1, 16)]
        elif op == 4 and b:
            del b[rng.randrange(len(b)) :]  # truncate
        elif op == 5 and len(b) >= 4:
            i = rng.randrange(len(b) - 3)
            b[i : i + 4] = struct.pack(
                ">I", rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)])
            )
    return bytes(b)


def random_size(rng: random.Random) -> int:
    """1..100000, log-uniform so small and extreme sides are both common."""
    return max(1, min(100000, int(round(10 ** rng.uniform(0, 5)))))
