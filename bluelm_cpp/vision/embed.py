"""Image -> LLM input embeddings with the native encoder (``_core.VisionModel``).

Preprocessing follows the file's settings (:mod:`bluelm_cpp.vision.settings`):
BlueLM-V (relaxed grid, thumbnail last, 2x2 token merge) or LLaVA-OneVision
(anyres, base image first, packed by :func:`~bluelm_cpp.vision.packing.pack_llava_onevision`
as transformers' ``pack_image_features``).

Example:
    >>> enc = ImageEmbedder("mmproj.gguf")  # doctest: +SKIP
    >>> enc.embed("cat.jpg").shape  # doctest: +SKIP
    (1764, 2048)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import _core
from ..errors import InvalidArgumentError, ModelFormatError
from .images import ImageInput, load_image
from .packing import pack_llava_onevision
from .patches import PatchLayout
from .settings import VisionSettings, preprocess_image


class ImageEmbedder:
    """The vision tower of a GGUF (mmproj or combined) turning images into LLM rows.

    Args:
        path: the GGUF with ``v.*`` / ``mm.*`` tensors.
        n_threads: encoder threads.
        batch_size: patches per encoder batch (4, the paper's); memory is bounded by it.
    """

    def __init__(
        self, path: str | os.PathLike[str], n_threads: int = 1, batch_size: int = 4
    ) -> None:
        self.path = os.fspath(path)
        self._vm = _core.VisionModel(self.path)
        self.config: dict[str, Any] = self._vm.config
        self.settings = VisionSettings.from_metadata(self.config)
        self.n_threads = n_threads
        self.batch_size = batch_size
        self._newline: np.ndarray | None = None
        if self.settings.grid_method == "anyres" and not self.config.get("has_image_newline"):
            raise ModelFormatError(
                f"'{self.path}': anyres packing needs tensor 'v.image_newline' "
                "('model.image_newline' in llama.cpp's legacy files)"
            )

    @property
    def projector(self) -> str:
        """The projector type: ``mlp_downsample`` (BlueLM-V), ``mlp`` or ``none``."""
        return str(self.config["projector"])

    @property
    def image_token(self) -> str:
        """The placeholder text of prompts (``bluelm.vision.image_token``)."""
        return self.settings.image_token

    @property
    def image_token_id(self) -> int | None:
        """The placeholder's id in the LLM's vocabulary, when the file says."""
        return self.settings.image_token_id

    @property
    def n_embd(self) -> int:
        """Width of the rows given to the LLM."""
        return int(self.config["proj_dim"])  # resolved from the tensors (legacy files say 0)

    def encode_patches(self, pixels: np.ndarray) -> np.ndarray:
        """``[N, 3, S, S]`` normalised float32 -> ``[N, T, D]`` projector output."""
        x = np.ascontiguousarray(pixels, np.float32)
        return self._vm.encode(x, self.n_threads, self.batch_size)

    @property
    def native(self) -> _core.VisionModel:
        """The native encoder (``_core.VisionModel``) this embedder runs."""
        return self._vm

    def embed(self, image: ImageInput) -> np.ndarray:
        """One image -> ``[rows, D]`` float32 embeddings, in the order they enter the LLM."""
        pix, layout = preprocess_image(load_image(image), self.settings)
        return self.rows(self.encode_patches(pix), layout)

    def rows(self, features: np.ndarray, layout: PatchLayout) -> np.ndarray:
        """Projected patches ``[N, T, D]`` of an image cut as ``layout`` -> its
        ``[rows, D]`` LLM rows (anyres: packed; otherwise the patches in order)."""
        if self.settings.grid_method == "anyres":
            w, h = layout.image_size
            return pack_llava_onevision(
                features,
                layout.cols,
                layout.rows,
                (h, w),
                self._image_newline(),
                self.settings.anyres_max,
            )
        return np.ascontiguousarray(features.reshape(-1, features.shape[-1]))

    def _image_newline(self) -> np.ndarray:
        if self._newline is None:
            import gguf

            name = self.config["image_newline_tensor"]  # v.image_newline or the legacy name
            t = next(t for t in gguf.GGUFReader(self.path).tensors if t.name == name)
            data = gguf.quants.dequantize(t.data, t.tensor_type)
            self._newline = np.asarray(data, np.float32).reshape(-1)
        return self._newline


def check_images(images: Any) -> list[Any]:
    """``images`` as a list (one bare image is refused, to avoid iterating bytes/arrays)."""
    if isinstance(images, (str, bytes, bytearray, np.ndarray)) or not hasattr(images, "__iter__"):
        raise InvalidArgumentError("images must be a list of images")
    return list(images)
