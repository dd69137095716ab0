"""How a Model turns images and prompts into prefill parts: patch pixels from
the vision file's settings, prompts split at the image placeholder, and chat
messages with OpenAI-style image parts.

Example:
    >>> split_at_images([1, 2, 5, 3], image_token_id=5, images=["img"])
    [[1, 2], 'img', [3]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .vision import bluelm_v_patches


def image_patches(config: dict[str, Any], image: Any) -> np.ndarray:
    """Normalised patches ``[n, 3, S, S]`` of ``image`` for the vision file's
    grid rule (BlueLM-V layout: grid in raster order, thumbnail last)."""
    if config.get("projector") != "mlp_downsample":
        raise InvalidArgumentError(
            f"images for a '{config.get('projector')}' projector are not supported by the "
            "prefill scheduler yet (only the BlueLM-V mlp_downsample layout)"
        )
    px, _ = bluelm_v_patches(
        image,
        patch_side=int(config["clip.vision.image_size"]),
        method=str(config.get("bluelm.vision.grid_method", "relaxed")),
        max_side=config.get("bluelm.vision.max_grid_side"),
        max_patches=int(config.get("bluelm.vision.max_patches", 9)),
        alpha=float(config.get("bluelm.vision.alpha", 0.1)),
        mean=config.get("clip.vision.image_mean", (0.5, 0.5, 0.5)),
        std=config.get("clip.vision.image_std", (0.5, 0.5, 0.5)),
    )
    return px


def split_at_images(ids: Sequence[int], image_token_id: int, images: Sequence[Any]) -> list[Any]:
    """Token lists with one image in place of each placeholder id, in order."""
    n_slots = sum(1 for t in ids if t == image_token_id)
    if n_slots != len(images):
        raise InvalidArgumentError(
            f"{len(images)} image(s) given but the prompt has {n_slots} image placeholder(s)"
        )
    parts: list[Any] = []
    run: list[int] = []
    k = 0
    for t in ids:
        if t == image_token_id:
            if run:
                parts.append(run)
            run = []
            parts.append(images[k])
            k += 1
        else:
            run.append(int(t))
    if run:
        parts.append(run)
    return parts


def chat_images(messages: list[Any], image_token: str) -> tuple[list[Any], list[Any]]:
    """Messages with each image part replaced by ``image_token`` text (content
    joined into one string) and the images in order. A part is
    ``{"type": "image_url", "image_url": {"url": ...}}`` (a path or a ``data:``
    URL) or ``{"type": "image", "image": <path, bytes, PIL or numpy image>}``.
    """
    out: list[Any] = []
    images: list[Any] = []
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            out.append(msg)
            continue
        text = []
        for p in content:
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text":
                text.append(str(p.get("text", "")))
            elif kind == "image_url":
                url = p.get("image_url")
                images.append(url.get("url") if isinstance(url, dict) else url)
                text.append(image_token)
            elif kind == "image":
                images.append(p.get("image"))
                text.append(image_token)
            else:
                raise InvalidArgumentError(f"unsupported message part {p!r}")
        out.append({**msg, "content": "".join(text)})
    return out, images


def has_image_parts(messages: Any) -> bool:
    for msg in messages if isinstance(messages, list) else []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("image", "image_url") for p in content
        ):
            return True
    return False
