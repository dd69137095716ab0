"""Image -> LLM input embeddings with the native encoder (``_core.VisionModel``).

Patches follow the file's family: BlueLM-V (``mlp_downsample``: relaxed grid,
thumbnail last, 2x2 token merge) or LLaVA-OneVision (``mlp`` with pinpoints:
base image first, anyres packing with unpadding and ``image_newline`` as
transformers' ``LlavaOnevisionModel.pack_image_features``).

Example:
    >>> enc = ImageEmbedder("mmproj.gguf")  # doctest: +SKIP
    >>> enc.embed("cat.jpg").shape  # doctest: +SKIP
    (1764, 2048)
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .. import _core
from ..errors import InvalidArgumentError
from .images import ImageInput, load_image
from .patches import SIGLIP_MEAN, SIGLIP_STD, bluelm_v_patches, llava_onevision_patches


def _triple(v: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(v, (list, tuple)) and len(v) == 3:
        return (float(v[0]), float(v[1]), float(v[2]))
    return default


def unpad_features(x: np.ndarray, image_h: int, image_w: int) -> np.ndarray:
    """transformers' ``unpad_image`` on ``[D, H, W]`` grid features."""
    cur_h, cur_w = x.shape[1:]
    if image_w / image_h > cur_w / cur_h:
        new_h = int(round(image_h * (cur_w / image_w), 7))
        pad = (cur_h - new_h) // 2
        return x[:, pad : cur_h - pad, :]
    new_w = int(round(image_w * (cur_h / image_h), 7))
    pad = (cur_w - new_w) // 2
    return x[:, :, pad : cur_w - pad]


def bilinear_resize(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """torch's ``interpolate(mode="bilinear", align_corners=False)`` on ``[D, H, W]``."""
    d, h, w = x.shape

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, fy = axis(h, out_h)
    x0, x1, fx = axis(w, out_w)
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bot = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return (top * (1 - fy)[None, :, None] + bot * fy[None, :, None]).astype(np.float32)


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
        self.n_threads = n_threads
        self.batch_size = batch_size
        c = self.config
        self.image_size = int(c["clip.vision.image_size"])
        self.mean = _triple(c.get("clip.vision.image_mean"), SIGLIP_MEAN)
        self.std = _triple(c.get("clip.vision.image_std"), SIGLIP_STD)
        self.projector = str(c["projector"])
        self.image_token = str(c.get("bluelm.vision.image_token", "<image>"))
        tid = c.get("bluelm.vision.image_token_id")
        self.image_token_id: int | None = int(tid) if tid is not None else None
        pins = c.get("clip.vision.image_grid_pinpoints")
        self.pinpoints: list[tuple[int, int]] | None = (
            [(int(pins[i]), int(pins[i + 1])) for i in range(0, len(pins) - 1, 2)] if pins else None
        )
        self.anyres_max = int(c.get("bluelm.vision.anyres_max_patches", 0) or 0)

    @property
    def n_embd(self) -> int:
        """Width of the rows given to the LLM."""
        return (
            int(self.config["clip.vision.projection_dim"])
            if self.projector != "none"
            else int(self.config["clip.vision.embedding_length"])
        )

    def encode_patches(self, pixels: np.ndarray) -> np.ndarray:
        """``[N, 3, S, S]`` normalised float32 -> ``[N, T, D]`` projector output."""
        return self._vm.encode(
            np.ascontiguousarray(pixels, np.float32), self.n_threads, self.batch_size
        )

    def embed(self, image: ImageInput) -> np.ndarray:
        """One image -> ``[rows, D]`` float32 embeddings, in the order they enter the LLM."""
        img = load_image(image)
        if self.projector == "mlp" and self.pinpoints:
            return self._embed_llava_ov(img)
        c = self.config
        pix, _ = bluelm_v_patches(
            img,
            patch_side=self.image_size,
            method=str(c.get("bluelm.vision.grid_method", "relaxed")),
            max_side=int(c["bluelm.vision.max_grid_side"])
            if "bluelm.vision.max_grid_side" in c
            else None,
            max_patches=int(c.get("bluelm.vision.max_patches", 9)),
            alpha=float(c.get("bluelm.vision.alpha", 0.1)),
            mean=self.mean,
            std=self.std,
        )
        emb = self.encode_patches(pix)
        return emb.reshape(-1, emb.shape[-1])

    def _embed_llava_ov(self, img: Any) -> np.ndarray:
        assert self.pinpoints is not None
        pix, layout = llava_onevision_patches(
            img, self.pinpoints, self.image_size, self.mean, self.std
        )
        feats = self.encode_patches(pix)  # [1 + rows*cols, g*g, D], base image first
        g = int(round(math.sqrt(feats.shape[1])))
        d = feats.shape[-1]
        base = feats[0]
        rows, cols = layout.rows, layout.cols
        grid = (
            feats[1:]
            .reshape(rows, cols, g, g, d)
            .transpose(4, 0, 2, 1, 3)
            .reshape(d, rows * g, cols * g)
        )
        grid = unpad_features(grid, img.height, img.width)
        if self.anyres_max > 0:
            h, w = grid.shape[1:]
            ratio = math.sqrt(h * w / (self.anyres_max * g * g))
            if ratio > 1.1:
                grid = bilinear_resize(grid, int(h // ratio), int(w // ratio))
        newline = self._vm_newline()
        if newline is not None:
            grid = np.concatenate(
                [grid, np.broadcast_to(newline[:, None, None], (d, grid.shape[1], 1))], axis=2
            )
        packed = grid.reshape(d, -1).T
        return np.ascontiguousarray(np.concatenate([base, packed]), np.float32)

    def _vm_newline(self) -> np.ndarray | None:
        if not self.config.get("has_image_newline"):
            return None
        if not hasattr(self, "_newline"):
            import gguf

            r = gguf.GGUFReader(self.path)
            t = next(t for t in r.tensors if t.name == "v.image_newline")
            self._newline = np.asarray(t.data, np.float32).reshape(-1)
        return self._newline


def check_images(images: Any) -> list[Any]:
    """``images`` as a list (a single image is not accepted, to avoid iterating bytes/arrays)."""
    if isinstance(images, (str, bytes, bytearray, np.ndarray)) or not hasattr(images, "__iter__"):
        raise InvalidArgumentError("images must be a list of images")
    return list(images)
