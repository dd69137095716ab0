"""LLaVA-OneVision anyres packing in numpy vs transformers' pack_image_features:
recorded (tests/data/tiny_llava_ov) and live on random features, including the
bilinear shrink that anyres_max_N triggers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bluelm_cpp.errors import InvalidArgumentError
from bluelm_cpp.vision import llava_onevision_patches, select_pinpoint
from bluelm_cpp.vision.packing import llava_onevision_token_count, pack_llava_onevision

D = Path(__file__).resolve().parent / "data" / "tiny_llava_ov"


def test_recorded_packing_is_reproduced():
    from safetensors.numpy import load_file

    z = np.load(D / "reference.npz")
    newline = load_file(str(D / "model.safetensors"))["image_newline"].astype(np.float32)
    pins = [(w, h) for h, w in json.loads((D / "config.json").read_text())["image_grid_pinpoints"]]
    for k in range(3):
        _, lay = llava_onevision_patches(z[f"image_{k}"], pins, 70)
        hw = tuple(int(x) for x in z[f"image_size_{k}"])
        got = pack_llava_onevision(z[f"projector_{k}"], lay.cols, lay.rows, hw, newline)
        assert np.array_equal(got, z[f"embeddings_{k}"])
        assert llava_onevision_token_count(lay.cols, lay.rows, hw, 5) == got.shape[0]


@pytest.mark.parametrize("anyres_max", [9, 4, 1])
def test_live_against_transformers(anyres_max):
    torch = pytest.importorskip("torch")
    mod = pytest.importorskip("transformers.models.llava_onevision.modeling_llava_onevision")
    g, side, d = 6, 84, 8
    pins_hw = [[side * r, side * c] for r in range(1, 4) for c in range(1, 4)]
    fake = SimpleNamespace(
        config=SimpleNamespace(
            vision_config=SimpleNamespace(image_size=side, patch_size=side // g),
            image_grid_pinpoints=pins_hw,
        )
    )
    rng = np.random.default_rng(anyres_max)
    newline = rng.standard_normal(d).astype(np.float32)
    for _ in range(25):
        h, w = (int(x) for x in rng.integers(20, 400, 2))
        cw, ch = select_pinpoint(w, h, [(pw, ph) for ph, pw in pins_hw])
        cols, rows = cw // side, ch // side
        feats = rng.standard_normal((1 + cols * rows, g * g, d)).astype(np.float32)
        want, _ = mod.LlavaOnevisionModel.pack_image_features(
            fake,
            [torch.from_numpy(feats)],
            torch.tensor([[h, w]]),
            image_newline=torch.from_numpy(newline),
            vision_aspect_ratio=f"anyres_max_{anyres_max}",
        )
        got = pack_llava_onevision(feats, cols, rows, (h, w), newline, anyres_max)
        assert got.shape == tuple(want[0].shape), (h, w)
        assert np.abs(got - want[0].numpy()).max() < 1e-5, (h, w)
        assert llava_onevision_token_count(cols, rows, (h, w), g, anyres_max) == got.shape[0]


def test_bad_shapes():
    with pytest.raises(InvalidArgumentError):
        pack_llava_onevision(np.zeros((4, 4, 2), np.float32), 2, 2, (10, 10), np.zeros(2))
    with pytest.raises(InvalidArgumentError):
        pack_llava_onevision(np.zeros((5, 5, 2), np.float32), 2, 2, (10, 10), np.zeros(2))
