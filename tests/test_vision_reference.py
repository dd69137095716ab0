"""The PyTorch references behind tests/data/: the recorded outputs come back from
the saved folders (through transformers' own classes for LLaVA-OneVision and
SigLIP), and the BlueLM-V reference's downsampler and splice follow the contract.
Skipped without torch/transformers (CI); the recorded data is what CI checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bluelm_cpp.errors import InvalidArgumentError  # noqa: E402
from bluelm_cpp.vision.reference import (  # noqa: E402
    BlueLMVForConditionalGeneration,
    downsample_tokens,
)

DATA = Path(__file__).resolve().parent / "data"


def test_downsampler_pads_bottom_right_and_concatenates_in_contract_order():
    s, c = 5, 3
    x = torch.arange(s * s * c, dtype=torch.float32).reshape(1, s * s, c) + 1
    y = downsample_tokens(x, 2)
    assert y.shape == (1, 9, 4 * c)
    grid = torch.zeros(6, 6, c)
    grid[:5, :5] = x.reshape(s, s, c)
    for i in range(3):
        for j in range(3):
            want = torch.cat(
                [
                    grid[2 * i, 2 * j],
                    grid[2 * i, 2 * j + 1],
                    grid[2 * i + 1, 2 * j],
                    grid[2 * i + 1, 2 * j + 1],
                ]
            )
            assert torch.equal(y[0, 3 * i + j], want)


def test_bluelm_v_reference_reproduces_recorded_outputs():
    model = BlueLMVForConditionalGeneration.from_pretrained(DATA / "tiny_bluelm_v")
    z = np.load(DATA / "tiny_bluelm_v" / "reference.npz")
    for k in range(3):
        pv = torch.from_numpy(z[f"pixel_values_{k}"])
        enc = model.encode_images(pv)
        # PyTorch's CPU kernels sum in an ISA-dependent order: recorded on an AVX2
        # Zen 3, an AVX-512 Xeon reproduces it to 2e-6 (values up to about 4).
        assert np.allclose(enc["encoder"].numpy(), z[f"encoder_{k}"], rtol=0, atol=1e-5)
        assert np.allclose(enc["embeddings"].numpy(), z[f"embeddings_{k}"], rtol=0, atol=1e-5)
        logits = model(torch.from_numpy(z[f"input_ids_{k}"])[None], pv)[0, -8:]
        assert np.allclose(logits.detach().numpy(), z[f"logits_{k}"], rtol=0, atol=1e-5)


def test_bluelm_v_splice_is_in_patch_order():
    model = BlueLMVForConditionalGeneration.from_pretrained(DATA / "tiny_bluelm_v")
    z = np.load(DATA / "tiny_bluelm_v" / "reference.npz")
    ids = torch.from_numpy(z["input_ids_0"])[None]
    pv = torch.from_numpy(z["pixel_values_0"])
    lm = model.language_model
    with torch.no_grad():
        emb = lm.get_input_embeddings()(ids).clone()
        pos = (ids[0] == model.config.image_token_id).nonzero()[:, 0]
        emb[0, pos] = torch.from_numpy(z["embeddings_0"]).reshape(-1, emb.shape[-1])
        want = lm(inputs_embeds=emb, use_cache=False).logits
    assert torch.allclose(model(ids, pv), want, atol=1e-6)
    assert pos.numel() == z["embeddings_0"].shape[0] * z["embeddings_0"].shape[1]


def test_bluelm_v_placeholder_mismatch_is_an_error():
    model = BlueLMVForConditionalGeneration.from_pretrained(DATA / "tiny_bluelm_v")
    z = np.load(DATA / "tiny_bluelm_v" / "reference.npz")
    ids = torch.from_numpy(z["input_ids_0"])[None]
    with pytest.raises(InvalidArgumentError, match="placeholder"):
        first = int((ids[0] == model.config.image_token_id).nonzero()[0, 0])
        fewer = torch.cat([ids[:, :first], ids[:, first + 1 :]], dim=1)
        model(fewer, torch.from_numpy(z["pixel_values_0"]))
    with pytest.raises(InvalidArgumentError, match="no image"):
        model(ids)


def test_llava_ov_recorded_outputs_come_back_through_transformers():
    from transformers import LlavaOnevisionForConditionalGeneration

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(
        DATA / "tiny_llava_ov", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    z = np.load(DATA / "tiny_llava_ov" / "reference.npz")
    for k in range(3):
        pv = torch.from_numpy(z[f"pixel_values_{k}"])[None]
        sizes = torch.from_numpy(z[f"image_size_{k}"])[None]
        with torch.no_grad():
            out = model(
                input_ids=torch.from_numpy(z[f"input_ids_{k}"])[None],
                pixel_values=pv,
                image_sizes=sizes,
            )
        assert np.allclose(out.logits[0, -8:].numpy(), z[f"logits_{k}"], atol=1e-5)


def test_siglip_recorded_outputs_come_back_through_transformers():
    from transformers import SiglipVisionModel

    model = SiglipVisionModel.from_pretrained(
        DATA / "tiny_siglip", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    z = np.load(DATA / "tiny_siglip" / "reference.npz")
    with torch.no_grad():
        o = model(pixel_values=torch.from_numpy(z["pixel_values"]), output_hidden_states=True)
    assert np.allclose(o.last_hidden_state.numpy(), z["last_hidden_state"], atol=1e-5)
    assert np.allclose(o.hidden_states[-1].numpy(), z["hidden_last_layer"], atol=1e-5)
