"""Write tiny random vision checkpoints and their PyTorch reference outputs.

Creates, under ``tests/data/``:

* ``tiny_siglip/`` -- a bare ``SiglipVisionModel`` (image 70, patch 14: a 5x5
  token grid, hidden 64, 2 layers, 4 heads, MLP 128, no pooling head).
* ``tiny_llava_ov/`` -- ``LlavaOnevisionForConditionalGeneration`` with that
  vision shape, a 2-layer Qwen2 (hidden 64, tied embeddings), anyres pinpoints
  in multiples of 70, the PIL image processor and a BPE tokenizer with ``<image>``.
* ``tiny_bluelm_v/`` -- :mod:`bluelm_cpp.vision.reference`'s BlueLM-V layout:
  the same vision shape (5x5 tokens, zero-padded to 6x6 -> 9 tokens of 4*64),
  projector, and a 2-layer LLaMA (hidden 64, untied head).

Each folder gets ``reference.npz`` (inputs, encoder outputs, projector
outputs, logits) and ``reference.json`` (versions, prompts, shapes); see
``tests/data/VISION_README.md``. Needs torch and transformers:

    python tests/data/make_tiny_vision.py
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

DATA_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DATA_DIR))
sys.path.insert(0, str(DATA_DIR.parent.parent))
from make_tiny_transformers import (  # noqa: E402
    LLAMA_CHAT_TEMPLATE,
    QWEN_CHAT_TEMPLATE,
    build_tokenizer,
    randomise_extras,
)

from bluelm_cpp.vision import bluelm_v_patches  # noqa: E402
from bluelm_cpp.vision.reference import (  # noqa: E402
    BlueLMVConfig,
    BlueLMVForConditionalGeneration,
)

IMAGE_SIZE = 70
PATCH = 14
VISION = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
    "vision_use_head": False,
}
TEXT = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.08,
    "hidden_act": "silu",
}
# anyres canvases, transformers' [height, width] order
PINPOINTS = [[70, 70], [70, 140], [140, 70], [140, 140], [70, 210], [210, 70]]
MEAN = [0.48145466, 0.4578275, 0.40821073]  # CLIP's, so mean/std handling is exercised
STD = [0.26862954, 0.26130258, 0.27577711]
N_LOGITS = 8  # logits recorded for the last positions (the prompt after the image)


def test_image(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth colour gradients plus noise, so resampling has something to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [
            127 + 100 * np.sin(x / 7.0 + seed),
            127 + 100 * np.cos(y / 5.0 - seed),
            255 * (x + y) / (width + height),
        ],
        axis=-1,
    )
    img += rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def meta(generator_seed: int, **extra: Any) -> dict[str, Any]:
    return {
        "generator": "tests/data/make_tiny_vision.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "seed": generator_seed,
        "dtype": "float32",
        "attn_implementation": "eager",
        **extra,
    }


def fresh(name: str) -> Path:
    out = DATA_DIR / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def save_tokenizer(out: Path, special: list[str], bos: str | None, eos: str, template: str) -> Any:
    tok = build_tokenizer(special)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=eos, unk_token=None
    )
    fast.chat_template = template
    fast.save_pretrained(out)
    return fast


def spread(model: torch.nn.Module, seed: int, scale: float) -> None:
    """Re-draw every weight matrix N(0, scale) so activations are not tiny."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "embedding" not in name:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) * scale / np.sqrt(fan_in))


def round_to_f16(model: torch.nn.Module) -> None:
    """Keep only float16-representable weights: the files store float16 (half the
    size) and the float32 references are exact for them."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))


def save_f16(model: Any, out: Path) -> None:
    # a copy: .to(float16) would also round float buffers (RoPE inv_freq) in place
    copy.deepcopy(model).to(torch.float16).save_pretrained(out, safe_serialization=True)


# --- tiny_siglip ------------------------------------------------------------------


def make_siglip() -> None:
    out = fresh("tiny_siglip")
    seed = 20250701
    torch.manual_seed(seed)
    cfg = SiglipVisionConfig(**VISION)
    model = SiglipVisionModel(cfg).to(torch.float32).eval()
    model.config._attn_implementation = "eager"
    spread(model, seed + 1, 1.0)
    randomise_extras(model, seed + 2)
    round_to_f16(model)
    save_f16(model, out)
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-1, 1, (3, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    with torch.no_grad():
        o = model(pixel_values=torch.from_numpy(pixels), output_hidden_states=True)
    np.savez_compressed(
        out / "reference.npz",
        pixel_values=pixels,
        last_hidden_state=o.last_hidden_state.numpy(),  # after post_layernorm
        hidden_last_layer=o.hidden_states[-1].numpy(),  # before post_layernorm
        hidden_second_last=o.hidden_states[-2].numpy(),  # vision_feature_layer -2
    )
    m = meta(seed, architecture="SiglipVisionModel", shapes={"pixel_values": list(pixels.shape)})
    (out / "reference.json").write_text(json.dumps(m, indent=2) + "\n")


# --- tiny_llava_ov ----------------------------------------------------------------

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
LLAVA_IMAGES = [(150, 80, 1), (50, 120, 2), (64, 60, 3)]  # (width, height, seed)


def chat_prompt(template_kind: str) -> str:
    q = "What is in the image?"
    if template_kind == "qwen":
        return f"<|im_start|>user\n<image>\n{q}<|im_end|>\n<|im_start|>assistant\n"
    return (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"<image>\n{q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def expand(ids: list[int], image_id: int, n: int) -> np.ndarray:
    if ids.count(image_id) != 1:
        raise RuntimeError(f"prompt has {ids.count(image_id)} image tokens")
    i = ids.index(image_id)
    return np.asarray(ids[:i] + [image_id] * n + ids[i + 1 :], dtype=np.int64)


def make_llava_ov() -> None:
    out = fresh("tiny_llava_ov")
    seed = 20250702
    fast = save_tokenizer(out, QWEN_SPECIAL, None, "<|im_end|>", QWEN_CHAT_TEMPLATE)
    image_id = fast.convert_tokens_to_ids("<image>")
    tcfg = Qwen2Config(
        **TEXT, rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=0, eos_token_id=2
    )
    cfg = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**VISION).to_dict(),
        text_config=tcfg.to_dict(),
        image_token_id=image_id,
        image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(cfg).to(torch.float32).eval()
    spread(model.model.vision_tower, seed + 1, 1.0)
    spread(model.model.multi_modal_projector, seed + 3, 1.0)
    randomise_extras(model, seed + 2)
    round_to_f16(model)
    save_f16(model, out)
    proc = LlavaOnevisionImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=PINPOINTS,
        image_mean=MEAN,
        image_std=STD,
    )
    proc.save_pretrained(out)

    base_ids = fast.encode(chat_prompt("qwen"), add_special_tokens=False)
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, Any] = {}
    inner = model.model
    for k, (w, h, s) in enumerate(LLAVA_IMAGES):
        img = test_image(w, h, s)
        pf = proc(img, return_tensors="pt")
        pv, sizes = pf["pixel_values"], pf["image_sizes"]
        with torch.no_grad():
            vo = inner.vision_tower(pixel_values=pv[0], output_hidden_states=True)
            enc = vo.hidden_states[-1]
            proj = inner.multi_modal_projector(enc)
            packed, _ = inner.pack_image_features(
                [proj], sizes, image_newline=inner.image_newline, vision_aspect_ratio="anyres_max_9"
            )
            feats = inner.get_image_features(pixel_values=pv, image_sizes=sizes).pooler_output
            feats = torch.cat(list(feats), 0) if isinstance(feats, (list, tuple)) else feats
            if not torch.equal(feats, packed[0]):
                raise RuntimeError("get_image_features differs from the step-by-step path")
            ids = expand(base_ids, image_id, packed[0].shape[0])
            logits = model(
                input_ids=torch.from_numpy(ids)[None],
                pixel_values=pv,
                image_sizes=sizes,
                use_cache=False,
            ).logits[0]
        arrays[f"image_{k}"] = img
        arrays[f"pixel_values_{k}"] = pv[0].numpy()
        arrays[f"image_size_{k}"] = sizes[0].numpy().astype(np.int64)  # (height, width)
        arrays[f"encoder_{k}"] = enc.numpy()
        arrays[f"projector_{k}"] = proj.numpy()
        arrays[f"embeddings_{k}"] = packed[0].numpy()
        arrays[f"input_ids_{k}"] = ids
        arrays[f"logits_{k}"] = logits[-N_LOGITS:].numpy()
        shapes[f"image_{k}"] = {n: list(a.shape) for n, a in arrays.items() if n.endswith(f"_{k}")}
    np.savez_compressed(out / "reference.npz", **arrays)
    m = meta(
        seed,
        architecture="LlavaOnevisionForConditionalGeneration",
        image_token_id=image_id,
        prompt=chat_prompt("qwen"),
        logits_positions=f"last {N_LOGITS}",
        shapes=shapes,
    )
    (out / "reference.json").write_text(json.dumps(m, indent=2) + "\n")


# --- tiny_bluelm_v ----------------------------------------------------------------

LLAMA_SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<image>",
]
BLUELM_IMAGES = [(130, 60, 4), (64, 60, 5), (50, 110, 6)]  # 2:1 + thumb, 1:1, 1:2 + thumb


def make_bluelm_v() -> None:
    out = fresh("tiny_bluelm_v")
    seed = 20250703
    fast = save_tokenizer(
        out, LLAMA_SPECIAL, "<|begin_of_text|>", "<|end_of_text|>", LLAMA_CHAT_TEMPLATE
    )
    image_id = fast.convert_tokens_to_ids("<image>")
    cfg = BlueLMVConfig(
        vision_config=dict(VISION),
        text_config={
            **TEXT,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        image_token_id=image_id,
        image_mean=MEAN,
        image_std=STD,
    )
    torch.manual_seed(seed)
    model = BlueLMVForConditionalGeneration(cfg)
    spread(model.vision_tower, seed + 1, 1.0)
    spread(model.multi_modal_projector, seed + 3, 1.0)
    randomise_extras(model.module, seed + 2)
    round_to_f16(model.module)
    model.save_pretrained(out, dtype="float16")
    again = BlueLMVForConditionalGeneration.from_pretrained(out)

    base_ids = fast.encode(chat_prompt("llama"), add_special_tokens=False)
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, Any] = {}
    for k, (w, h, s) in enumerate(BLUELM_IMAGES):
        img = test_image(w, h, s)
        pix, layout = bluelm_v_patches(img, patch_side=IMAGE_SIZE, mean=MEAN, std=STD)
        pv = torch.from_numpy(pix)
        enc = model.encode_images(pv)
        n_tok = enc["embeddings"].shape[0] * enc["embeddings"].shape[1]
        ids = expand(base_ids, image_id, n_tok)
        logits = model(torch.from_numpy(ids)[None], pv)[0]
        check = again(torch.from_numpy(ids)[None], pv)[0]
        if not torch.equal(logits, check):
            raise RuntimeError("reloaded BlueLM-V differs")
        arrays[f"image_{k}"] = img
        arrays[f"pixel_values_{k}"] = pix
        arrays[f"grid_{k}"] = np.asarray([layout.cols, layout.rows], np.int64)
        arrays[f"encoder_{k}"] = enc["encoder"].numpy()
        arrays[f"embeddings_{k}"] = enc["embeddings"].numpy()
        arrays[f"input_ids_{k}"] = ids
        arrays[f"logits_{k}"] = logits[-N_LOGITS:].numpy()
        shapes[f"image_{k}"] = {n: list(a.shape) for n, a in arrays.items() if n.endswith(f"_{k}")}
        shapes[f"image_{k}"]["thumbnail"] = layout.thumbnail
    np.savez_compressed(out / "reference.npz", **arrays)
    m = meta(
        seed,
        architecture="BlueLMVForConditionalGeneration",
        image_token_id=image_id,
        prompt=chat_prompt("llama"),
        logits_positions=f"last {N_LOGITS}",
        shapes=shapes,
    )
    (out / "reference.json").write_text(json.dumps(m, indent=2) + "\n")


def main() -> None:
    make_siglip()
    make_llava_ov()
    make_bluelm_v()
    for name in ("tiny_siglip", "tiny_llava_ov", "tiny_bluelm_v"):
        size = sum(f.stat().st_size for f in (DATA_DIR / name).iterdir())
        print(f"{name}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
