"""Cut an image into encoder patches: resize, pad, crop, normalise.

Two layouts, both resampling with Pillow's bicubic filter on 8-bit RGB, as
transformers' (PIL-backend) image processors do, so pixels match theirs exactly:

* BlueLM-V (:func:`bluelm_v_patches`): the grid comes from :func:`plan_grid`
  (relaxed rule by default); the image is resized keeping its aspect ratio to
  fit the ``cols*S x rows*S`` canvas (LLaVA-NeXT's sizes: the long fit side is
  exact, the other is ``ceil``), centred on a black (0) canvas, cut into
  ``S x S`` patches in raster order, and the whole image squashed to ``S x S``
  is appended as a thumbnail **last**; a 1:1 grid gets no thumbnail.
* LLaVA-OneVision (:func:`llava_onevision_patches`): as
  ``LlavaOnevisionImageProcessor``: the canvas is the ``select_best_resolution``
  pick among ``image_grid_pinpoints``; same resize/pad/crop; the squashed base
  image comes **first** and is present for every grid.

Normalisation: ``(x / 255 - mean) / std`` per channel, float32, channels first.

Example:
    >>> import numpy as np
    >>> from bluelm_cpp.vision import bluelm_v_patches
    >>> pix, layout = bluelm_v_patches(np.zeros((102, 500, 3), np.uint8))
    >>> pix.shape, (layout.cols, layout.rows, layout.thumbnail)
    ((3, 3, 384, 384), (2, 1, 'last'))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .grid import plan_grid
from .images import ImageInput, load_image

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# LlavaOnevisionImageProcessor's default pinpoints as (width, height): every
# (w, h) with w, h in 384 * 1..6, listed with h outer as transformers does.
LLAVA_OV_PINPOINTS: tuple[tuple[int, int], ...] = tuple(
    (384 * w, 384 * h) for h in range(1, 7) for w in range(1, 7)
)


@dataclass(frozen=True)
class PatchLayout:
    """How the patches of one image are arranged.

    ``cols`` x ``rows`` local patches in raster order, plus a thumbnail
    (``"first"``, ``"last"`` or ``None``); ``image_size`` is the (width,
    height) of the input and ``patch_side`` the side of every patch.
    """

    cols: int
    rows: int
    thumbnail: str | None
    image_size: tuple[int, int]
    patch_side: int

    @property
    def n_patches(self) -> int:
        """Local patches plus the thumbnail, if any."""
        return self.cols * self.rows + (self.thumbnail is not None)


def fit_size(width: int, height: int, canvas_w: int, canvas_h: int) -> tuple[int, int]:
    """Size of the image resized (aspect kept) into the canvas, as transformers'
    ``get_patch_output_size``: the limiting side is exact, the other rounded up.

    Example:
        >>> fit_size(500, 102, 768, 384)
        (768, 157)
    """
    sw, sh = canvas_w / width, canvas_h / height
    if sw < sh:
        return canvas_w, min(math.ceil(height * sw), canvas_h)
    return min(math.ceil(width * sh), canvas_w), canvas_h


def resize(img: Any, width: int, height: int) -> Any:
    """Bicubic resize of an RGB ``PIL.Image`` (a no-op copy at the same size, as Pillow does)."""
    from PIL import Image

    return img.resize((width, height), resample=Image.BICUBIC)


def canvas(img: Any, canvas_w: int, canvas_h: int) -> np.ndarray:
    """The image fitted into a black ``canvas_h x canvas_w x 3`` uint8 canvas, centred.

    Example:
        >>> from PIL import Image
        >>> canvas(Image.new("RGB", (10, 5), (255, 0, 0)), 20, 20).shape
        (20, 20, 3)
    """
    w, h = fit_size(img.width, img.height, canvas_w, canvas_h)
    small = np.asarray(resize(img, w, h), dtype=np.uint8)
    out = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    y, x = (canvas_h - h) // 2, (canvas_w - w) // 2
    out[y : y + h, x : x + w] = small
    return out


def crop_grid(pixels: np.ndarray, side: int) -> list[np.ndarray]:
    """Raster-order ``side x side`` crops of an ``H x W x 3`` array (H, W multiples of side)."""
    h, w = pixels.shape[:2]
    return [
        pixels[y : y + side, x : x + side] for y in range(0, h, side) for x in range(0, w, side)
    ]


def normalise(patches: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``[N, S, S, 3]`` uint8 -> ``[N, 3, S, S]`` float32, ``(x/255 - mean) / std``.

    Example:
        >>> normalise(np.full((1, 2, 2, 3), 255, np.uint8), SIGLIP_MEAN, SIGLIP_STD)[0, :, 0, 0]
        array([1., 1., 1.], dtype=float32)
    """
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    x = patches.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1 / 255)
    return np.ascontiguousarray((x - m) / s, dtype=np.float32)


def bluelm_v_patches_uint8(
    image: ImageInput,
    patch_side: int = 384,
    method: str = "relaxed",
    max_side: int | None = None,
    max_patches: int = 9,
    alpha: float = 0.1,
) -> tuple[np.ndarray, PatchLayout]:
    """The BlueLM-V patches as uint8 ``[N, S, S, 3]`` before normalisation."""
    img = load_image(image)
    cols, rows = plan_grid(
        img.width, img.height, method, max_side, max_patches, alpha, patch_side=patch_side
    )
    tiles = crop_grid(canvas(img, cols * patch_side, rows * patch_side), patch_side)
    thumb = None
    if (cols, rows) != (1, 1):
        tiles.append(np.asarray(resize(img, patch_side, patch_side), np.uint8))
        thumb = "last"
    layout = PatchLayout(cols, rows, thumb, (img.width, img.height), patch_side)
    return np.stack(tiles), layout


def bluelm_v_patches(
    image: ImageInput,
    patch_side: int = 384,
    method: str = "relaxed",
    max_side: int | None = None,
    max_patches: int = 9,
    alpha: float = 0.1,
    mean: Sequence[float] = SIGLIP_MEAN,
    std: Sequence[float] = SIGLIP_STD,
) -> tuple[np.ndarray, PatchLayout]:
    """Normalised BlueLM-V patches ``[N, 3, S, S]`` float32 and their layout.

    Example:
        >>> import numpy as np
        >>> pix, lay = bluelm_v_patches(np.zeros((390, 394, 3), np.uint8))
        >>> pix.shape, lay.thumbnail
        ((1, 3, 384, 384), None)
    """
    tiles, layout = bluelm_v_patches_uint8(image, patch_side, method, max_side, max_patches, alpha)
    return normalise(tiles, mean, std), layout


def select_pinpoint(
    width: int, height: int, pinpoints: Sequence[tuple[int, int]]
) -> tuple[int, int]:
    """LLaVA-NeXT's ``select_best_resolution`` over ``(width, height)`` pinpoints.

    Example:
        >>> select_pinpoint(394, 390, LLAVA_OV_PINPOINTS)
        (768, 768)
    """
    if not pinpoints:
        raise InvalidArgumentError("image_grid_pinpoints is empty")
    best = pinpoints[0]
    re_max, rw_min = 0, float("inf")
    for cw, ch in pinpoints:
        scale = min(cw / width, ch / height)
        r_e = min(int(width * scale) * int(height * scale), width * height)
        r_w = cw * ch - r_e
        if r_e > re_max or (r_e == re_max and r_w < rw_min):
            best, re_max, rw_min = (cw, ch), r_e, r_w
    return best


def llava_onevision_patches_uint8(
    image: ImageInput,
    pinpoints: Sequence[tuple[int, int]] = LLAVA_OV_PINPOINTS,
    patch_side: int = 384,
) -> tuple[np.ndarray, PatchLayout]:
    """The LLaVA-OneVision anyres patches as uint8 ``[N, S, S, 3]`` (base image first)."""
    img = load_image(image)
    for cw, ch in pinpoints:
        if cw % patch_side or ch % patch_side or cw <= 0 or ch <= 0:
            raise InvalidArgumentError(
                f"pinpoint {cw}x{ch} is not a positive multiple of the patch side {patch_side}"
            )
    cw, ch = select_pinpoint(img.width, img.height, pinpoints)
    tiles = [np.asarray(resize(img, patch_side, patch_side), np.uint8)]
    tiles += crop_grid(canvas(img, cw, ch), patch_side)
    layout = PatchLayout(cw // patch_side, ch // patch_side, "first", img.size, patch_side)
    return np.stack(tiles), layout


def llava_onevision_patches(
    image: ImageInput,
    pinpoints: Sequence[tuple[int, int]] = LLAVA_OV_PINPOINTS,
    patch_side: int = 384,
    mean: Sequence[float] = SIGLIP_MEAN,
    std: Sequence[float] = SIGLIP_STD,
) -> tuple[np.ndarray, PatchLayout]:
    """Normalised LLaVA-OneVision patches ``[N, 3, S, S]`` and their layout.

    ``pinpoints`` are ``(width, height)`` pairs (the GGUF's order; transformers'
    config lists ``[height, width]``).

    Example:
        >>> import numpy as np
        >>> pix, lay = llava_onevision_patches(np.zeros((390, 394, 3), np.uint8))
        >>> pix.shape, (lay.cols, lay.rows, lay.thumbnail)
        ((5, 3, 384, 384), (2, 2, 'first'))
    """
    tiles, layout = llava_onevision_patches_uint8(image, pinpoints, patch_side)
    return normalise(tiles, mean, std), layout
