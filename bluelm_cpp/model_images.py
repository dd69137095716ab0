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
from .vision.images import load_image
from .vision.settings import VisionSettings, preprocess_image


def image_patches(config: dict[str, Any], image: Any) -> np.ndarray:
    """Normalised patches ``[n, 3, S, S]`` of ``image`` for the vision file's grid rule."""
    if config.get("projector") != "mlp_downsample":
        raise InvalidArgumentError(
            f"images for a '{config.get('projector')}' projector are not supported by the "
            "prefill scheduler (only the BlueLM-V mlp_downsample layout)"
        )
    px, _ = preprocess_image(load_image(image), VisionSettings.from_metadata(config))
    return px
