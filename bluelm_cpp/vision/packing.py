"""LLaVA-OneVision's anyres packing of projected patch features, in numpy.

Mirrors transformers' ``LlavaOnevisionModel.pack_image_features`` for one image:
the base image's ``g*g`` tokens first; then the grid patches' tokens laid out
as one ``(rows*g) x (cols*g)`` map, the rows/columns added by the processor's
padding removed (``unpad_image``), shrunk bilinearly (PyTorch's
``interpolate(mode="bilinear", align_corners=False)``) when the map exceeds
``anyres_max`` patches' worth by more than 1.1x, and each map row followed by
``image_newline``.

Example:
    >>> import numpy as np
    >>> from bluelm_cpp.vision.packing import llava_onevision_token_count
    >>> llava_onevision_token_count(2, 2, (390, 394), 27, 9)   # (cols, rows), (height, width)
    3699
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgumentError


def _unpadded_size(
    rows_px: int, cols_px: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) crop of the ``rows_px x cols_px`` map, as ``unpad_image``."""
    if width / height > cols_px / rows_px:
        new_h = int(round(height * (cols_px / width), 7))
        pad = (rows_px - new_h) // 2
        return pad, rows_px - pad, 0, cols_px
    new_w = int(round(width * (rows_px / height), 7))
    pad = (cols_px - new_w) // 2
    return 0, rows_px, pad, cols_px - pad


def _shrunk_size(h: int, w: int, g: int, anyres_max: int) -> tuple[int, int]:
    ratio = math.sqrt(h * w / (anyres_max * g * g))
    if ratio > 1.1:
        return int(h // ratio), int(w // ratio)
    return h, w


def llava_onevision_token_count(
    cols: int, rows: int, image_hw: tuple[int, int], g: int, anyres_max: int = 9
) -> int:
    """How many LLM tokens one image becomes (placeholders to reserve).

    ``image_hw`` is the input image's (height, width); ``g`` the encoder's
    token grid side (image_size // patch_size, 27 for SigLIP at 384).
    """
    top, bottom, left, right = _unpadded_size(rows * g, cols * g, *image_hw)
    h, w = _shrunk_size(bottom - top, right - left, g, anyres_max)
    return g * g + h * (w + 1)


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # PyTorch, align_corners=False: src = (dst + 0.5) * in/out - 0.5, clamped at 0
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[D, H, W]`` -> ``[D, h, w]``, as ``torch.nn.functional.interpolate(bilinear)``."""
    y0, y1, ly = _bilinear_axis(x.shape[1], h)
    x0, x1, lx = _bilinear_axis(x.shape[2], w)
    rows = x[:, y0] * (1 - ly)[None, :, None] + x[:, y1] * ly[None, :, None]
    return rows[:, :, x0] * (1 - lx)[None, None, :] + rows[:, :, x1] * lx[None, None, :]


def pack_llava_onevision(
    features: np.ndarray,
    cols: int,
    rows: int,
    image_hw: tuple[int, int],
    image_newline: np.ndarray,
    anyres_max: int = 9,
) -> np.ndarray:
    """Projected features ``[1 + cols*rows, g*g, D]`` (base first) -> ``[T, D]``.

    Example:
        >>> f = np.zeros((5, 4, 8), np.float32)
        >>> pack_llava_onevision(f, 2, 2, (30, 40), np.ones(8, np.float32)).shape
        (24, 8)
    """
    n, t, d = features.shape
    g = int(round(math.sqrt(t)))
    if g * g != t:
        raise InvalidArgumentError(f"{t} tokens per patch are not a square grid")
    if n != 1 + cols * rows:
        raise InvalidArgumentError(f"{n} patches for a {cols}x{rows} grid plus the base image")
    base = features[0]
    grid = features[1:].reshape(rows, cols, g, g, d).transpose(4, 0, 2, 1, 3)
    grid = grid.reshape(d, rows * g, cols * g)
    top, bottom, left, right = _unpadded_size(rows * g, cols * g, *image_hw)
    grid = grid[:, top:bottom, left:right]
    h, w = _shrunk_size(grid.shape[1], grid.shape[2], g, anyres_max)
    if (h, w) != grid.shape[1:]:
        grid = resize_bilinear(grid, h, w)
    newline = np.broadcast_to(image_newline.reshape(d, 1, 1), (d, h, 1))
    grid = np.concatenate([grid, newline], axis=2).reshape(d, -1).T
    return np.concatenate([base, grid.astype(features.dtype)], axis=0)
