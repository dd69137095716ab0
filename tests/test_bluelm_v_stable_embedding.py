"""BlueLM-V with BlueLM's embedding LayerNorm (``use_stable_embedding``): the
reference (bluelm_cpp/vision/reference.py) normalises the token embeddings
only, the converter folds that LayerNorm into token_embd, and the runtime
gives the reference's logits with text and with image rows. Needs torch and
transformers (the reference); skipped without them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    from bluelm_cpp.convert.vision import convert_vision_checkpoint
    from bluelm_cpp.vision.reference import BlueLMVConfig, BlueLMVForConditionalGeneration

    src = DATA / "tiny_bluelm_v"
    cfg = BlueLMVConfig.from_dict(json.loads((src / "config.json").read_text()))
    cfg.use_stable_embedding = True
    torch.manual_seed(5)
    model = BlueLMVForConditionalGeneration(cfg)
    ln = model.language_model.model.embed_layer_norm
    with torch.no_grad():
        ln.weight.copy_(1 + 0.3 * torch.randn(ln.weight.shape))
        ln.bias.copy_(0.3 * torch.randn(ln.bias.shape))
    d = tmp_path_factory.mktemp("bluelm_v_stable")
    model.save_pretrained(d)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(src / f, d / f)
    saved = json.loads((d / "config.json").read_text())
    assert saved["text_config"]["architectures"] == ["BlueLMForCausalLM"]
    out = d / "model.gguf"
    convert_vision_checkpoint(d, out, outtype="f32", vision_outtype="f32", progress=False)
    return model, out


def test_text_logits(stable: tuple[object, Path]) -> None:
    from bluelm_cpp import Model

    model, path = stable
    ids = np.random.default_rng(1).integers(6, 500, 40).tolist()
    want = model(torch.tensor([ids]))[0].numpy()
    got = Model(str(path), kv_type="f32").eval_logits(ids, all_positions=True)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_image_rows_are_not_normalised(stable: tuple[object, Path]) -> None:
    from bluelm_cpp import _core

    model, path = stable
    cfg = model.config
    pixels = torch.randn(1, 3, cfg.vision_config["image_size"], cfg.vision_config["image_size"])
    rows = model.encode_images(pixels)["embeddings"][0].numpy().astype(np.float32)
    before, after = [7, 8, 9], [10, 11]
    ids = before + [cfg.image_token_id] * rows.shape[0] + after
    want = model(torch.tensor([ids]), pixels)[0, -1].numpy()
    ctx = _core.Context(_core.LlamaModel(str(path)), 128, 64, 2, kv_type="f32")
    ctx.eval(before)
    ctx.eval_embeddings(rows)
    ctx.eval(after)
    got = np.asarray(ctx.logits())
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
