"""Vision settings from a GGUF's metadata, and the one preprocessing entry point.

Reads the keys of docs/vision_format.md (as ``GGUFFile.metadata`` or gguf-py
give them) into :class:`VisionSettings`; :func:`preprocess_image` then cuts an
image the way that file's model expects (BlueLM-V relaxed grid with the
thumbnail last, or LLaVA-OneVision anyres with the base image first), and
:func:`image_token_count` says how many placeholder tokens the image fills.

Example:
    >>> from bluelm_cpp.vision.settings import VisionSettings, preprocess_image
    >>> s = VisionSettings.from_metadata(gguf_file.metadata)      # doctest: +SKIP
    >>> pixels, layout = preprocess_image("photo.jpg", s)         # doctest: +SKIP
    >>> n_tokens = image_token_count(layout, s)                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, ModelFormatError
from .images import ImageInput
from .packing import llava_onevision_token_count
from .patches import PatchLayout, bluelm_v_patches, llava_onevision_patches

PROJECTORS = ("mlp", "mlp_downsample", "none")


@dataclass(frozen=True)
class VisionSettings:
    """The preprocessing-relevant vision keys of one model file."""

    projector: str
    image_size: int
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grid_method: str
    alpha: float
    max_grid_side: int
    max_patches: int
    downsample: int
    pinpoints: tuple[tuple[int, int], ...]  # (width, height)
    anyres_max: int
    image_token: str
    image_token_id: int | None

    @property
    def grid_side(self) -> int:
        """Encoder tokens per side of one patch (27 for SigLIP at 384)."""
        return self.image_size // self.patch_size

    @property
    def tokens_per_patch(self) -> int:
        """LLM tokens per encoded patch (196 for BlueLM-V, 729 for LLaVA)."""
        if self.projector == "mlp_downsample":
            side = -(-self.grid_side // self.downsample)
            return side * side
        return self.grid_side * self.grid_side

    @classmethod
    def from_metadata(cls, md: Mapping[str, Any]) -> VisionSettings:
        """Parse the keys; :class:`ModelFormatError` when the file has no vision tower.

        Example:
            >>> md = {"clip.has_vision_encoder": True, "clip.projector_type": "mlp_downsample",
            ...       "clip.vision.image_size": 384, "clip.vision.patch_size": 14}
            >>> VisionSettings.from_metadata(md).tokens_per_patch
            196
        """
        if not md.get("clip.has_vision_encoder"):
            raise ModelFormatError("the model file has no vision encoder (clip.* keys)")

        def get(key: str, default: Any = None) -> Any:
            v = md.get(key, default)
            if v is None:
                raise ModelFormatError(f"vision key {key} is missing")
            return v

        proj = str(md.get("clip.vision.projector_type", get("clip.projector_type")))
        if proj not in PROJECTORS:
            raise ModelFormatError(f"projector type {proj!r} is not supported ({PROJECTORS})")
        image_size, patch = int(get("clip.vision.image_size")), int(get("clip.vision.patch_size"))
        if image_size <= 0 or patch <= 0 or image_size % patch:
            raise ModelFormatError(f"image_size {image_size} / patch_size {patch} are invalid")
        flat = [int(x) for x in md.get("clip.vision.image_grid_pinpoints", [])]
        if len(flat) % 2:
            raise ModelFormatError("clip.vision.image_grid_pinpoints has an odd length")
        pins = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        if any(w <= 0 or h <= 0 or w % image_size or h % image_size for w, h in pins):
            raise ModelFormatError("image_grid_pinpoints must be multiples of image_size")
        method = str(md.get("bluelm.vision.grid_method", "anyres" if pins else "relaxed"))
        if method == "anyres" and not pins:
            raise ModelFormatError("grid_method anyres needs clip.vision.image_grid_pinpoints")
        mean = tuple(float(x) for x in md.get("clip.vision.image_mean", (0.5, 0.5, 0.5)))
        std = tuple(float(x) for x in md.get("clip.vision.image_std", (0.5, 0.5, 0.5)))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ModelFormatError(f"image_mean {mean} / image_std {std} are invalid")
        tok_id = md.get("bluelm.vision.image_token_id")
        return cls(
            projector=proj,
            image_size=image_size,
            patch_size=patch,
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            grid_method=method,
            alpha=float(md.get("bluelm.vision.alpha", 0.1)),
            max_grid_side=int(md.get("bluelm.vision.max_grid_side", 3)),
            max_patches=int(md.get("bluelm.vision.max_patches", 9)),
            downsample=int(
                md.get("bluelm.vision.downsample", 2 if proj == "mlp_downsample" else 1)
            ),
            pinpoints=pins,
            anyres_max=int(md.get("bluelm.vision.anyres_max_patches", 9)),
            image_token=str(md.get("bluelm.vision.image_token", "<image>")),
            image_token_id=int(tok_id) if tok_id is not None else None,
        )


def preprocess_image(image: ImageInput, s: VisionSettings) -> tuple[np.ndarray, PatchLayout]:
    """Normalised patches ``[N, 3, S, S]`` and their layout for the model ``s`` describes.

    Example:
        >>> pixels, layout = preprocess_image("photo.jpg", settings)  # doctest: +SKIP
    """
    if s.grid_method == "anyres":
        return llava_onevision_patches(image, s.pinpoints, s.image_size, s.mean, s.std)
    if s.grid_method not in ("relaxed", "llava_next", "internvl"):
        raise InvalidArgumentError(f"grid method {s.grid_method!r} is not supported")
    return bluelm_v_patches(
        image,
        s.image_size,
        s.grid_method,
        s.max_grid_side,
        s.max_patches,
        s.alpha,
        s.mean,
        s.std,
    )


def image_token_count(layout: PatchLayout, s: VisionSettings) -> int:
    """LLM tokens the image becomes: patches x tokens per patch, or the anyres packing's count.

    Example:
        >>> image_token_count(layout, settings)   # doctest: +SKIP
        588
    """
    if s.grid_method == "anyres":
        w, h = layout.image_size
        return llava_onevision_token_count(
            layout.cols, layout.rows, (h, w), s.grid_side, s.anyres_max
        )
    return layout.n_patches * s.tokens_per_patch
