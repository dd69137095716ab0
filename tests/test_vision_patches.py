"""Patch pixels equal transformers' image processors' (LLaVA-OneVision, PIL backend).

Recorded (CI, no transformers): tests/data/vision_patches/ (script there).
Live (when transformers is installed): the processor on the same sizes, and the
BlueLM-V layout against the processor's own resize/pad/crop helpers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bluelm_cpp.vision import (
    SIGLIP_MEAN,
    SIGLIP_STD,
    bluelm_v_patches,
    bluelm_v_patches_uint8,
    llava_onevision_patches,
    llava_onevision_patches_uint8,
    plan_grid,
)

DATA = Path(__file__).resolve().parent / "data" / "vision_patches"
sys.path.insert(0, str(DATA))
from record_processor import SIZES, synthetic_image  # noqa: E402

META = json.loads((DATA / "llava_ov_processor.json").read_text())
CASES = META["cases"]


def test_recorded_sizes_are_the_script_sizes():
    assert [(c["width"], c["height"]) for c in CASES] == SIZES
    assert len(CASES) >= 20


@pytest.mark.parametrize("i", range(len(CASES)))
def test_llava_ov_pixels_match_recorded_processor(i):
    c = CASES[i]
    rec = np.load(DATA / "llava_ov_processor.npz")[f"sub_{i}"]
    px, layout = llava_onevision_patches_uint8(synthetic_image(c["width"], c["height"], c["seed"]))
    assert px.shape[0] == c["n_patches"] == layout.n_patches
    sub = px[:, :: META["stride"], :: META["stride"]]
    assert np.abs(sub.astype(int) - rec.astype(int)).max() <= 1  # <= 1/255 before normalising
    sums = np.array([p.astype(np.int64).sum() for p in px])
    # a mean difference above 1/255 per value would move a sum by more than this
    assert np.abs(sums - np.array(c["patch_sums"])).max() <= px[0].size


def test_llava_ov_pixels_match_live_processor():
    pil = pytest.importorskip(
        "transformers.models.llava_onevision.image_processing_pil_llava_onevision"
    )
    proc = pil.LlavaOnevisionImageProcessorPil(image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD)
    raw = pil.LlavaOnevisionImageProcessorPil(do_rescale=False, do_normalize=False)
    for c in CASES:
        img = synthetic_image(c["width"], c["height"], c["seed"])
        kw = {"return_tensors": "np", "input_data_format": "channels_last"}
        want_u8 = raw(img, **kw)["pixel_values"][0]
        got_u8, _ = llava_onevision_patches_uint8(img)
        assert np.abs(got_u8.transpose(0, 3, 1, 2) - want_u8).max() <= 1, (c["width"], c["height"])
        if c["width"] * c["height"] < 400_000:  # normalised output, on the smaller ones
            want = proc(img, **kw)["pixel_values"][0]
            got, _ = llava_onevision_patches(img)
            assert np.abs(got - want).max() <= 1e-6


def test_llava_ov_small_side_and_custom_pinpoints():
    pil = pytest.importorskip(
        "transformers.models.llava_onevision.image_processing_pil_llava_onevision"
    )
    pins_hw = [[70, 70], [70, 140], [140, 70], [140, 140], [70, 210], [210, 70]]
    mean, std = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)
    proc = pil.LlavaOnevisionImageProcessorPil(
        size={"height": 70, "width": 70},
        image_grid_pinpoints=pins_hw,
        image_mean=mean,
        image_std=std,
    )
    for i, (w, h) in enumerate([(150, 80), (50, 120), (64, 60), (333, 71), (9, 200)]):
        img = synthetic_image(w, h, 100 + i)
        want = proc(img, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
        got, _ = llava_onevision_patches(img, [(pw, ph) for ph, pw in pins_hw], 70, mean, std)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-6


def test_bluelm_v_layout_uses_the_processors_resize_pad_crop():
    pil = pytest.importorskip(
        "transformers.models.llava_onevision.image_processing_pil_llava_onevision"
    )
    from transformers.image_transforms import divide_to_patches
    from transformers.image_utils import PILImageResampling, SizeDict

    proc = pil.LlavaOnevisionImageProcessorPil()
    for i, (w, h) in enumerate([(500, 102), (768, 1536), (394, 390), (1000, 300), (77, 900)]):
        img = synthetic_image(w, h, 200 + i)
        cols, rows = plan_grid(w, h)
        chw = img.transpose(2, 0, 1)
        target = (rows * 384, cols * 384)
        resized = proc._resize_for_patching(chw, target, resample=PILImageResampling.BICUBIC)
        want = divide_to_patches(proc._pad_for_patching(resized, target), patch_size=384)
        if (cols, rows) != (1, 1):
            want.append(
                proc.resize(chw, SizeDict(height=384, width=384), PILImageResampling.BICUBIC)
            )
        got, layout = bluelm_v_patches_uint8(img)
        assert (layout.cols, layout.rows) == (cols, rows)
        assert layout.thumbnail == (None if (cols, rows) == (1, 1) else "last")
        assert np.abs(got.transpose(0, 3, 1, 2).astype(int) - np.stack(want).astype(int)).max() <= 1


def test_bluelm_v_patch_counts_and_normalisation():
    img = synthetic_image(500, 102, 7)
    pix, layout = bluelm_v_patches(img, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    u8, _ = bluelm_v_patches_uint8(img)
    assert pix.dtype == np.float32 and pix.shape == (3, 3, 384, 384)
    assert layout.n_patches == 3 and (layout.cols, layout.rows) == (2, 1)
    want = (u8.transpose(0, 3, 1, 2) / 255.0 - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array(
        [0.2, 0.25, 0.5]
    )[:, None, None]
    assert np.abs(pix - want).max() < 1e-5


def test_recorded_tiny_bluelm_v_pixels_are_reproduced():
    # tests/data/make_tiny_vision.py made these with this module; a change here
    # must be a deliberate re-recording
    ref = json.loads((DATA.parent / "tiny_bluelm_v" / "config.json").read_text())
    z = np.load(DATA.parent / "tiny_bluelm_v" / "reference.npz")
    for k in range(3):
        pix, layout = bluelm_v_patches(
            z[f"image_{k}"], patch_side=70, mean=ref["image_mean"], std=ref["image_std"]
        )
        assert [layout.cols, layout.rows] == list(z[f"grid_{k}"])
        assert np.abs(pix - z[f"pixel_values_{k}"]).max() <= 1e-6


def test_recorded_tiny_llava_ov_pixels_are_reproduced():
    d = DATA.parent / "tiny_llava_ov"
    pre = json.loads((d / "preprocessor_config.json").read_text())
    pins = [(w, h) for h, w in json.loads((d / "config.json").read_text())["image_grid_pinpoints"]]
    z = np.load(d / "reference.npz")
    for k in range(3):
        pix, _ = llava_onevision_patches(
            z[f"image_{k}"], pins, 70, pre["image_mean"], pre["image_std"]
        )
        assert np.abs(pix - z[f"pixel_values_{k}"]).max() <= 1e-6
