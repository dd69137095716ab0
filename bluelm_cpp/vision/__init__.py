"""Images in: loading, grid planning, patch pixels, LLaVA-OneVision packing, and the
BlueLM-V PyTorch reference (``bluelm_cpp.vision.reference``, needs torch).

Example:
    >>> from bluelm_cpp.vision import plan_grid
    >>> plan_grid(500, 102)
    (2, 1)
"""

from __future__ import annotations

from .grid import METHODS, candidate_grids, effective_and_wasted, plan_grid
from .images import MAX_ASPECT_RATIO, MAX_PIXELS, load_image
from .packing import llava_onevision_token_count, pack_llava_onevision
from .patches import (
    LLAVA_OV_PINPOINTS,
    SIGLIP_MEAN,
    SIGLIP_STD,
    PatchLayout,
    bluelm_v_patches,
    bluelm_v_patches_uint8,
    llava_onevision_patches,
    llava_onevision_patches_uint8,
    select_pinpoint,
)
from .settings import VisionSettings, image_token_count, preprocess_image

__all__ = [
    "LLAVA_OV_PINPOINTS",
    "MAX_ASPECT_RATIO",
    "MAX_PIXELS",
    "METHODS",
    "SIGLIP_MEAN",
    "SIGLIP_STD",
    "PatchLayout",
    "VisionSettings",
    "bluelm_v_patches",
    "bluelm_v_patches_uint8",
    "candidate_grids",
    "effective_and_wasted",
    "image_token_count",
    "llava_onevision_patches",
    "llava_onevision_patches_uint8",
    "llava_onevision_token_count",
    "pack_llava_onevision",
    "load_image",
    "plan_grid",
    "preprocess_image",
    "select_pinpoint",
]
