"""PyTorch reference of the BlueLM-V layout (needs torch and transformers).

No BlueLM-V weights are public, so the model family is defined here:
transformers' ``SiglipVisionModel`` (its ``last_hidden_state``, i.e. after
``post_layernorm``) -> 2x2 token downsampler -> projector ``LayerNorm(4C) ->
Linear(4C, D) -> GELU(erf) -> Linear(D, D)`` -> transformers'
``LlamaForCausalLM``. Image embeddings replace the ``<image>`` placeholder
tokens of ``input_ids`` in patch order (all tokens of patch 0, then patch 1...).
With ``use_stable_embedding`` (the BlueLM text models' setting) the token
embeddings pass through ``LayerNorm(hidden, eps=rms_norm_eps)``
(``language_model.model.embed_layer_norm``) before the image rows replace the
placeholders: the projector's output enters the LLM as it is, as BlueLM's
``BlueLMModel`` normalises what ``embed_tokens`` returns and nothing else.

Downsampler: the ``s x s`` token grid (27x27 for SigLIP so400m at 384) is
zero-padded at the bottom and right to an even side (28x28), and each 2x2
block becomes one token, channels concatenated in the order (row 0 col 0,
row 0 col 1, row 1 col 0, row 1 col 1); the merged tokens are in raster
(row-major) order. (VILA's ``flat_square`` has the same channel order but
emits tokens column-major; this family is defined row-major.)

Files (``save_pretrained`` / ``from_pretrained``): ``config.json`` (see
docs/bluelm_v_reference.md) and ``model.safetensors`` with the tensor names
``vision_tower.vision_model.*``, ``multi_modal_projector.{input_norm,linear_1,
linear_2}.*``, ``language_model.model.*`` and ``language_model.lm_head.weight``.

Example:
    >>> from bluelm_cpp.vision.reference import BlueLMVConfig, BlueLMVForConditionalGeneration
    >>> cfg = BlueLMVConfig(vision_config=BlueLMVConfig.so400m_vision(),
    ...                     text_config={"hidden_size": 2560, "num_hidden_layers": 28,
    ...                                  "num_attention_heads": 20, "intermediate_size": 6912,
    ...                                  "vocab_size": 100096},
    ...                     image_token_id=100095)                 # doctest: +SKIP
    >>> model = BlueLMVForConditionalGeneration(cfg)               # doctest: +SKIP
    >>> model.save_pretrained("tiny_bluelm_v")                     # doctest: +SKIP
    >>> again = BlueLMVForConditionalGeneration.from_pretrained("tiny_bluelm_v")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, ModelFormatError

ARCHITECTURE = "BlueLMVForConditionalGeneration"
MODEL_TYPE = "bluelm_v"


@dataclass
class BlueLMVConfig:
    """Everything that defines a BlueLM-V model; written as ``config.json``.

    ``vision_config`` holds ``SiglipVisionConfig`` arguments, ``text_config``
    ``LlamaConfig`` arguments. Grid settings are the relaxed rule's (PAPER.md).
    """

    vision_config: dict[str, Any]
    text_config: dict[str, Any]
    image_token_id: int
    image_token: str = "<image>"
    downsample: int = 2
    projector_ln_eps: float = 1e-5  # nn.LayerNorm's default, as VILA's mlp_downsample
    grid_method: str = "relaxed"
    alpha: float = 0.1
    max_grid_side: int = 4  # 768x1536 phone screens plan as 2:4 (PAPER.md)
    max_patches: int = 9
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    use_stable_embedding: bool = False  # BlueLM's embedding LayerNorm (see the module doc)

    @staticmethod
    def so400m_vision() -> dict[str, Any]:
        """SigLIP so400m-patch14-384's vision settings (PAPER.md)."""
        return {
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 384,
            "patch_size": 14,
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu_pytorch_tanh",
            "vision_use_head": False,
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content. With ``use_stable_embedding`` the text part
        is a ``BlueLMForCausalLM`` (the converter folds its embedding LayerNorm)."""
        d = {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE}
        d.update(asdict(self))
        if self.use_stable_embedding:
            d["text_config"] = {
                **self.text_config,
                "architectures": ["BlueLMForCausalLM"],
                "use_stable_embedding": True,
            }
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlueLMVConfig:
        """Read a ``config.json`` dict, ignoring ``architectures``/``model_type``."""
        keys = set(cls.__dataclass_fields__)
        unknown = set(d) - keys - {"architectures", "model_type", "dtype"}
        if unknown:
            raise ModelFormatError(f"BlueLM-V config.json: unknown keys {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in keys})

    @property
    def tokens_per_patch(self) -> int:
        """LLM tokens per encoder patch after the downsampler (196 for so400m)."""
        side = self.vision_config["image_size"] // self.vision_config["patch_size"]
        merged = -(-side // self.downsample)
        return merged * merged


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError("the BlueLM-V reference needs torch: pip install torch") from e
    return torch


def downsample_tokens(x: Any, factor: int = 2) -> Any:
    """``[B, s*s, C]`` -> ``[B, ceil(s/f)^2, f*f*C]`` (zero-pad bottom/right, raster order).

    Example:
        >>> import torch                                             # doctest: +SKIP
        >>> downsample_tokens(torch.zeros(1, 729, 8)).shape          # doctest: +SKIP
        torch.Size([1, 196, 32])
    """
    torch = _torch()
    b, t, c = x.shape
    s = int(round(t**0.5))
    if s * s != t:
        raise InvalidArgumentError(f"{t} tokens are not a square grid")
    p = -(-s // factor) * factor
    grid = x.reshape(b, s, s, c)
    if p != s:
        grid = torch.nn.functional.pad(grid, (0, 0, 0, p - s, 0, p - s))
    m = p // factor
    # [b, m, fr, m, fc, c] -> [b, m(row), m(col), fr, fc, c]
    grid = grid.reshape(b, m, factor, m, factor, c).permute(0, 1, 3, 2, 4, 5)
    return grid.reshape(b, m * m, factor * factor * c)


def _make_modules(cfg: BlueLMVConfig) -> dict[str, Any]:
    torch = _torch()
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

    nn = torch.nn
    vcfg = SiglipVisionConfig(**cfg.vision_config)
    vcfg._attn_implementation = "eager"
    text = {
        k: v
        for k, v in cfg.text_config.items()
        if k not in ("architectures", "use_stable_embedding")
    }
    tcfg = LlamaConfig(**text)
    tcfg._attn_implementation = "eager"
    c4 = vcfg.hidden_size * cfg.downsample * cfg.downsample
    d = tcfg.hidden_size
    projector = nn.Module()
    projector.input_norm = nn.LayerNorm(c4, eps=cfg.projector_ln_eps)
    projector.linear_1 = nn.Linear(c4, d)
    projector.act = nn.GELU()
    projector.linear_2 = nn.Linear(d, d)
    lm = LlamaForCausalLM(tcfg)
    if cfg.use_stable_embedding:
        lm.model.embed_layer_norm = nn.LayerNorm(tcfg.hidden_size, eps=tcfg.rms_norm_eps)
    return {
        "vision_tower": SiglipVisionModel(vcfg),
        "multi_modal_projector": projector,
        "language_model": lm,
    }


class BlueLMVForConditionalGeneration:
    """The BlueLM-V reference model: ``encode_images`` and ``forward`` (logits).

    A thin holder of three torch modules (``vision_tower``,
    ``multi_modal_projector``, ``language_model``) rather than an
    ``nn.Module`` subclass, so this file imports without torch.

    Example:
        >>> path = "tests/data/tiny_bluelm_v"
        >>> m = BlueLMVForConditionalGeneration.from_pretrained(path)  # doctest: +SKIP
        >>> out = m.encode_images(pixel_values)                      # doctest: +SKIP
        >>> out["embeddings"].shape                                  # doctest: +SKIP
        torch.Size([3, 9, 64])
    """

    def __init__(self, config: BlueLMVConfig) -> None:
        torch = _torch()
        self.config = config
        mods = _make_modules(config)
        self.module = torch.nn.ModuleDict(mods).to(torch.float32).eval()

    @property
    def vision_tower(self) -> Any:
        return self.module["vision_tower"]

    @property
    def multi_modal_projector(self) -> Any:
        return self.module["multi_modal_projector"]

    @property
    def language_model(self) -> Any:
        return self.module["language_model"]

    def project(self, features: Any) -> Any:
        """Encoder features ``[B, s*s, C]`` -> image embeddings ``[B, T, D]``."""
        p = self.multi_modal_projector
        x = downsample_tokens(features, self.config.downsample)
        return p.linear_2(p.act(p.linear_1(p.input_norm(x))))

    def encode_images(self, pixel_values: Any) -> dict[str, Any]:
        """Normalised pixels ``[N, 3, S, S]`` -> encoder output and image embeddings.

        Returns ``{"encoder": [N, s*s, C], "embeddings": [N, T, D]}``; ``encoder``
        is SigLIP's ``last_hidden_state`` (after ``post_layernorm``).
        """
        torch = _torch()
        with torch.no_grad():
            feats = self.vision_tower(pixel_values=pixel_values).last_hidden_state
            return {"encoder": feats, "embeddings": self.project(feats)}

    def forward(self, input_ids: Any, pixel_values: Any | None = None) -> Any:
        """Logits ``[B, L, vocab]`` for ``input_ids`` ``[B, L]`` whose placeholder
        tokens (``image_token_id``) are replaced by the image embeddings, in order.

        The number of placeholders must equal ``N * tokens_per_patch``.
        """
        torch = _torch()
        lm = self.language_model
        with torch.no_grad():
            embeds = lm.get_input_embeddings()(input_ids)
            if self.config.use_stable_embedding:
                embeds = lm.model.embed_layer_norm(embeds)
            mask = input_ids == self.config.image_token_id
            n_slots = int(mask.sum())
            if pixel_values is None:
                if n_slots:
                    raise InvalidArgumentError(f"{n_slots} image placeholders but no image")
            else:
                img = self.encode_images(pixel_values)["embeddings"]
                img = img.reshape(-1, img.shape[-1]).to(embeds.dtype)
                if img.shape[0] != n_slots:
                    raise InvalidArgumentError(
                        f"{n_slots} image placeholder tokens for {img.shape[0]} image embeddings"
                    )
                embeds = embeds.masked_scatter(mask[..., None].expand_as(embeds), img)
            return lm(inputs_embeds=embeds, use_cache=False).logits

    __call__ = forward

    def state_dict(self) -> dict[str, Any]:
        """Tensors under their file names (contiguous copies, so tied weights save)."""
        return {k: v.detach().contiguous().clone() for k, v in self.module.state_dict().items()}

    def save_pretrained(self, path: str | os.PathLike[str], dtype: str = "float32") -> None:
        """Write ``config.json`` and ``model.safetensors`` (``float32``, ``float16``
        or ``bfloat16`` tensors) into ``path``."""
        from safetensors.torch import save_file

        torch = _torch()
        if dtype not in ("float32", "float16", "bfloat16"):
            raise InvalidArgumentError(f"dtype must be float32, float16 or bfloat16, not {dtype!r}")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_dict()
        cfg["dtype"] = dtype
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        tensors = {k: v.to(getattr(torch, dtype)) for k, v in self.state_dict().items()}
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> BlueLMVForConditionalGeneration:
        """Load a folder written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        src = Path(path)
        cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
        if cfg.get("architectures", [None])[0] != ARCHITECTURE:
            raise ModelFormatError(f"{src}: config.json is not a {ARCHITECTURE}")
        model = cls(BlueLMVConfig.from_dict(cfg))
        state = load_file(str(src / "model.safetensors"))
        missing, unexpected = model.module.load_state_dict(state, strict=False)
        # a tied lm_head may be absent from older files; anything else is an error
        missing = [k for k in missing if k != "language_model.lm_head.weight"]
        if missing or unexpected:
            raise ModelFormatError(f"{src}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if model.language_model.config.tie_word_embeddings:
            model.language_model.tie_weights()
        return model
