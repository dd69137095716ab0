"""Vision hyperparameters read from a checkpoint's config.json (and
preprocessor_config.json): which of the three supported vision architectures
it is and the sizes, grid and projector settings the converter writes.

Example:
    >>> from pathlib import Path
    >>> from bluelm_cpp.convert.vision_hparams import is_vision_checkpoint
    >>> is_vision_checkpoint(Path("no/such/folder"))
    False
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError

VISION_ARCHITECTURES = (
    "BlueLMVForConditionalGeneration",
    "LlavaOnevisionForConditionalGeneration",
    "SiglipVisionModel",
)
# SiglipVisionConfig's defaults, for configs that leave keys out
_SIGLIP_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 16,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
    "num_channels": 3,
}


@dataclass(frozen=True)
class VisionHParams:
    """What the vision keys say, read from config.json (+ preprocessor_config.json)."""

    hidden: int
    ff: int
    n_layer_file: int  # layers in the checkpoint
    n_layer: int  # layers that are run (clip.vision.block_count)
    n_head: int
    image_size: int
    patch_size: int
    eps: float
    projector: str  # "mlp", "mlp_downsample" or "none"
    proj_dim: int
    post_ln: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grid_method: str
    alpha: float
    max_side: int
    max_patches: int
    downsample: int
    proj_ln_eps: float
    pinpoints_wh: tuple[tuple[int, int], ...] = ()
    anyres_max: int = 0
    image_token: str = "<image>"
    image_token_id: int | None = None

    @property
    def n_pos(self) -> int:
        """Position embeddings: one per token of the patch grid."""
        return (self.image_size // self.patch_size) ** 2


# --- config -------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot read JSON: {e}") from e
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: not a JSON object")
    return data


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json as a dict, with clear errors."""
    if not model_dir.is_dir():
        raise ModelFormatError(f"{model_dir}: model folder does not exist or is not a folder")
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelFormatError(
            f"{model_dir}: no config.json (is this a Hugging Face model folder?)"
        )
    return _read_json(path)


def hf_architecture(config: dict[str, Any]) -> str | None:
    """``architectures[0]`` (or a bare SigLIP's ``model_type``), if any."""
    names = config.get("architectures")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    if config.get("model_type") == "siglip_vision_model":
        return "SiglipVisionModel"
    return None


def is_vision_checkpoint(model_dir: str | os.PathLike[str]) -> bool:
    """True when the folder's config.json names a vision architecture this module converts.

    Example:
        >>> is_vision_checkpoint("tests/data/tiny_llama")       # doctest: +SKIP
        False
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return False
    try:
        return hf_architecture(_read_json(path)) in VISION_ARCHITECTURES
    except ModelFormatError:
        return False


def _positive_int(c: dict[str, Any], key: str, where: str) -> int:
    v = c.get(key, _SIGLIP_DEFAULTS.get(key))
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ModelFormatError(f"{where}: {key} must be a positive integer, got {v!r}")
    return v


def _triple(v: Any, what: str, where: str) -> tuple[float, float, float]:
    if isinstance(v, (int, float)):
        v = [v] * 3
    if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, (int, float)) for x in v):
        raise ModelFormatError(f"{where}: {what} must be 3 numbers, got {v!r}")
    return (float(v[0]), float(v[1]), float(v[2]))


def read_vision_hparams(model_dir: Path, config: dict[str, Any], arch: str) -> VisionHParams:
    """Vision hyperparameters for ``arch`` (one of :data:`VISION_ARCHITECTURES`)."""
    where = str(model_dir / "config.json")
    vc = config if arch == "SiglipVisionModel" else config.get("vision_config")
    if not isinstance(vc, dict):
        raise ModelFormatError(f"{where}: no vision_config object")
    act = vc.get("hidden_act", "gelu_pytorch_tanh")
    if act not in ("gelu_pytorch_tanh", "gelu_new"):
        raise ModelFormatError(f"{where}: vision hidden_act {act!r} is not supported (GELU-tanh)")
    if vc.get("model_type", "siglip_vision_model") != "siglip_vision_model":
        raise ModelFormatError(f"{where}: vision tower {vc.get('model_type')!r} is not SigLIP")
    n_layer_file = _positive_int(vc, "num_hidden_layers", where)
    hidden = _positive_int(vc, "hidden_size", where)
    n_head = _positive_int(vc, "num_attention_heads", where)
    if hidden % n_head:
        raise ModelFormatError(f"{where}: vision hidden_size {hidden} not a multiple of {n_head}")
    image_size = _positive_int(vc, "image_size", where)
    patch_size = _positive_int(vc, "patch_size", where)
    if image_size % patch_size:
        raise ModelFormatError(f"{where}: image_size {image_size} not a multiple of {patch_size}")
    pre_path = model_dir / "preprocessor_config.json"
    pre = _read_json(pre_path) if pre_path.is_file() else {}
    mean = _triple(pre.get("image_mean", config.get("image_mean", 0.5)), "image_mean", where)
    std = _triple(pre.get("image_std", config.get("image_std", 0.5)), "image_std", where)
    common: dict[str, Any] = {
        "hidden": hidden,
        "ff": _positive_int(vc, "intermediate_size", where),
        "n_layer_file": n_layer_file,
        "n_head": n_head,
        "image_size": image_size,
        "patch_size": patch_size,
        "eps": float(vc.get("layer_norm_eps", 1e-6)),
        "mean": mean,
        "std": std,
    }
    if arch == "SiglipVisionModel":
        return VisionHParams(
            **common,
            n_layer=n_layer_file,
            projector="none",
            proj_dim=hidden,
            post_ln=True,
            grid_method="relaxed",
            alpha=0.1,
            max_side=3,
            max_patches=9,
            downsample=1,
            proj_ln_eps=1e-5,
        )
    tc = config.get("text_config")
    if not isinstance(tc, dict) or not isinstance(tc.get("hidden_size"), int):
        raise ModelFormatError(f"{where}: text_config.hidden_size is missing")
    if arch == "BlueLMVForConditionalGeneration":
        tok_id = config.get("image_token_id")
        return VisionHParams(
            **common,
            n_layer=n_layer_file,
            projector="mlp_downsample",
            proj_dim=tc["hidden_size"],
            post_ln=True,
            grid_method=str(config.get("grid_method", "relaxed")),
            alpha=float(config.get("alpha", 0.1)),
            max_side=int(config.get("max_grid_side", 4)),
            max_patches=int(config.get("max_patches", 9)),
            downsample=int(config.get("downsample", 2)),
            proj_ln_eps=float(config.get("projector_ln_eps", 1e-5)),
            image_token=str(config.get("image_token", "<image>")),
            image_token_id=tok_id if isinstance(tok_id, int) else None,
        )
    # LLaVA-OneVision
    layer = config.get("vision_feature_layer", -1)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise ModelFormatError(
            f"{where}: vision_feature_layer {layer!r} is not supported (one int)"
        )
    # hidden_states[0] is the embeddings, [i] the output of layer i
    n_run = n_layer_file + 1 + layer if layer < 0 else layer
    if not 1 <= n_run <= n_layer_file:
        raise ModelFormatError(f"{where}: vision_feature_layer {layer} is out of range")
    strategy = config.get("vision_feature_select_strategy", "full")
    if strategy != "full":
        raise ModelFormatError(
            f"{where}: vision_feature_select_strategy {strategy!r} is not supported "
            "(SigLIP has no CLS token; LLaVA-OneVision uses 'full')"
        )
    act = config.get("projector_hidden_act", "gelu")
    if act != "gelu":
        raise ModelFormatError(f"{where}: projector_hidden_act {act!r} is not supported (gelu)")
    # the model's pinpoints (pack_image_features) must be the processor's too
    pins = config.get("image_grid_pinpoints", pre.get("image_grid_pinpoints"))
    if (
        not isinstance(pins, list)
        or not pins
        or not all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(x, int) and x > 0 and x % image_size == 0 for x in p)
            for p in pins
        )
    ):
        raise ModelFormatError(
            f"{where}: image_grid_pinpoints must be a list of [height, width], "
            f"multiples of image_size {image_size}"
        )
    if "image_grid_pinpoints" in pre and pre["image_grid_pinpoints"] != pins:
        raise ModelFormatError(
            f"{pre_path}: image_grid_pinpoints differ from config.json's; the processor "
            "and the model must agree"
        )
    ratio = str(config.get("vision_aspect_ratio", "anyres_max_9"))
    m = re.fullmatch(r"anyres_max_(\d+)", ratio)
    if m is None:
        raise ModelFormatError(f"{where}: vision_aspect_ratio {ratio!r} is not anyres_max_N")
    tok_id = config.get("image_token_id", config.get("image_token_index"))
    return VisionHParams(
        **common,
        n_layer=n_run,
        projector="mlp",
        proj_dim=tc["hidden_size"],
        post_ln=False,
        grid_method="anyres",
        alpha=0.1,
        max_side=max(max(h, w) // image_size for h, w in pins),
        max_patches=max((h // image_size) * (w // image_size) for h, w in pins),
        downsample=1,
        proj_ln_eps=1e-5,
        pinpoints_wh=tuple((w, h) for h, w in pins),
        anyres_max=int(m.group(1)),
        image_token_id=tok_id if isinstance(tok_id, int) else None,
    )
