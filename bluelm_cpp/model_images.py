"""Patch pixels of an image for the prefill scheduler, from the vision file's
settings (BlueLM-V layout: relaxed grid in raster order, thumbnail last).

Example:
    >>> image_patches(vision_config, "cat.jpg").shape  # doctest: +SKIP
    (9, 3, 384, 384)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .vision import bluelm_v_patches


def image_patches(config: dict[str, Any], image: Any) -> np.ndarray:
    """Normalised patches ``[n, 3, S, S]`` of ``image`` for the vision file's grid rule."""
    if config.get("projector") != "mlp_downsample":
        raise InvalidArgumentError(
            f"images for a '{config.get('projector')}' projector are not supported by the "
            "prefill scheduler (only the BlueLM-V mlp_downsample layout)"
        )
    side = config.get("bluelm.vision.max_grid_side")
    px, _ = bluelm_v_patches(
        image,
        patch_side=int(config["clip.vision.image_size"]),
        method=str(config.get("bluelm.vision.grid_method", "relaxed")),
        max_side=int(side) if side is not None else None,
        max_patches=int(config.get("bluelm.vision.max_patches", 9)),
        alpha=float(config.get("bluelm.vision.alpha", 0.1)),
        mean=config.get("clip.vision.image_mean", (0.5, 0.5, 0.5)),
        std=config.get("clip.vision.image_std", (0.5, 0.5, 0.5)),
    )
    return px
