"""The C++ SigLIP encoder + projectors against PyTorch.

Recorded references (tests/data/tiny_*, made by tests/data/make_tiny_vision.py
with transformers) run without torch; a live transformers SiglipVisionModel
check with a shape that needs K padding (3*6*6 = 108, F = 120) runs when torch
is installed. Bars from issue 5: F32 within 1e-4 relative, Q8_0 cosine >= 0.999,
batched == one-by-one to 1e-6, logits after image + prompt within 1e-4 of the
largest logit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from compare import cosine, rel_err

from bluelm_cpp import _core
from bluelm_cpp.convert.vision import convert_vision_checkpoint
from bluelm_cpp.errors import InvalidArgumentError, ModelFileError, ModelFormatError

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(model, vision type) -> GGUF: combined files for the VLMs, mmproj for bare SigLIP."""
    d = tmp_path_factory.mktemp("vision")
    out: dict[tuple[str, str], Path] = {}
    for name in ("tiny_siglip", "tiny_bluelm_v", "tiny_llava_ov"):
        for vt in ("f32", "q8_0"):
            p = d / f"{name}_{vt}.gguf"
            convert_vision_checkpoint(
                DATA / name, p, outtype="f32", vision_outtype=vt, progress=False
            )
            out[(name, vt)] = p
    return out


# (model, encoder output key, projector output key)
CASES = [("tiny_bluelm_v", "encoder", "embeddings"), ("tiny_llava_ov", "encoder", "projector")]


def test_siglip_features_match_transformers_record(converted: dict) -> None:
    ref = np.load(DATA / "tiny_siglip" / "reference.npz")
    for vt in ("f32", "q8_0"):
        vm = _core.VisionModel(str(converted[("tiny_siglip", vt)]))
        assert vm.config["projector"] == "none"
        feats = vm.encode_features(ref["pixel_values"], 2)
        assert feats.shape == ref["last_hidden_state"].shape
        if vt == "f32":
            assert rel_err(feats, ref["last_hidden_state"]) < 1e-4
        else:
            assert cosine(feats, ref["last_hidden_state"]) >= 0.999
        # A bare encoder's embeddings are its features.
        np.testing.assert_array_equal(vm.encode(ref["pixel_values"], 1), feats)


@pytest.mark.parametrize("name,enc_key,proj_key", CASES)
@pytest.mark.parametrize("vt", ["f32", "q8_0"])
def test_vlm_embeddings_match_pytorch_record(
    converted: dict, name: str, enc_key: str, proj_key: str, vt: str
) -> None:
    ref = np.load(DATA / name / "reference.npz")
    vm = _core.VisionModel(str(converted[(name, vt)]))
    for k in range(3):
        px = ref[f"pixel_values_{k}"]
        feats = vm.encode_features(px, 2)
        emb = vm.encode(px, 2)
        want_f, want_e = ref[f"{enc_key}_{k}"], ref[f"{proj_key}_{k}"]
        assert feats.shape == want_f.shape and emb.shape == want_e.shape
        if vt == "f32":
            assert rel_err(feats, want_f) < 1e-4, k
            assert rel_err(emb, want_e) < 1e-4, k
        else:
            assert cosine(feats, want_f) >= 0.999, k
            assert cosine(emb, want_e) >= 0.999, k


@pytest.mark.parametrize("vt", ["f32", "q8_0"])
def test_batched_equals_one_by_one(converted: dict, vt: str) -> None:
    ref = np.load(DATA / "tiny_llava_ov" / "reference.npz")
    px = np.concatenate([ref["pixel_values_0"], ref["pixel_values_1"]])  # 8 patches
    vm = _core.VisionModel(str(converted[("tiny_llava_ov", vt)]))
    single = np.concatenate([vm.encode(px[i : i + 1], 1, batch_size=1) for i in range(len(px))])
    for threads, batch in ((1, 4), (2, 3), (2, 8), (3, 2)):
        got = vm.encode(px, threads, batch_size=batch)
        assert np.abs(got - single).max() <= 1e-6 * np.abs(single).max(), (threads, batch)


def test_vision_config_keys(converted: dict) -> None:
    cfg = _core.VisionModel(str(converted[("tiny_bluelm_v", "q8_0")])).config
    assert cfg["clip.vision.image_size"] == 70 and cfg["clip.vision.patch_size"] == 14
    assert (
        cfg["projector"] == "mlp_downsample" and cfg["n_tokens"] == 25 and cfg["n_out_tokens"] == 9
    )
    assert cfg["weight_type"] == "Q8_0" and cfg["has_post_ln"]


def _llm_logits_with_image(
    path: Path, ids: np.ndarray, image_id: int, emb: np.ndarray, n_batch: int
) -> np.ndarray:
    """Prefill text, the image rows at the placeholder run, then text; logits of every position."""
    model = _core.LlamaModel(str(path))
    ctx = _core.Context(model, 256, n_batch, 2, "f32")
    pos = np.flatnonzero(ids == image_id)
    assert len(pos) == len(emb) and np.all(np.diff(pos) == 1)
    ctx.eval([int(t) for t in ids[: pos[0]]], logits_all=True)
    rows = [ctx.logits()]
    ctx.eval_embeddings(np.ascontiguousarray(emb, np.float32), logits_all=True)
    rows.append(ctx.logits())
    ctx.eval([int(t) for t in ids[pos[-1] + 1 :]], logits_all=True)
    rows.append(ctx.logits())
    assert ctx.n_past == len(ids)
    return np.concatenate([r.reshape(-1, model.n_vocab) for r in rows])


@pytest.mark.parametrize("name", ["tiny_bluelm_v", "tiny_llava_ov"])
def test_logits_after_image_match_pytorch_record(converted: dict, name: str) -> None:
    import json

    ref = np.load(DATA / name / "reference.npz")
    image_id = json.loads((DATA / name / "reference.json").read_text())["image_token_id"]
    path = converted[(name, "f32")]
    vm = _core.VisionModel(str(path))
    for k in range(3):
        want = ref[f"logits_{k}"]
        recorded = ref[f"embeddings_{k}"].reshape(-1, ref[f"embeddings_{k}"].shape[-1])
        # The recorded embeddings test the decoder path alone; for BlueLM-V also
        # our own encoder's (LLaVA-OV's packing is Python-side, tested there).
        embs = [recorded]
        if name == "tiny_bluelm_v":
            embs.append(vm.encode(ref[f"pixel_values_{k}"], 2).reshape(-1, recorded.shape[1]))
        for emb in embs:
            for n_batch in (4, 64):
                got = _llm_logits_with_image(path, ref[f"input_ids_{k}"], image_id, emb, n_batch)[
                    -len(want) :
                ]
                assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), (k, n_batch)


def test_eval_embeddings_equals_token_eval(converted: dict) -> None:
    """Token embedding rows fed as embeddings give the tokens' logits."""
    import gguf

    path = converted[("tiny_bluelm_v", "f32")]
    r = gguf.GGUFReader(str(path))
    table = next(np.asarray(t.data, np.float32) for t in r.tensors if t.name == "token_embd.weight")
    ids = [1, 7, 42, 300, 11, 5, 9]
    model = _core.LlamaModel(str(path))
    a = _core.Context(model, 64, 3, 1, "f32")
    a.eval(ids, logits_all=True)
    b = _core.Context(model, 64, 3, 1, "f32")
    b.eval(ids[:2])
    b.eval_embeddings(table[ids[2:]], logits_all=True)
    assert b.n_past == len(ids)
    np.testing.assert_allclose(b.logits(), a.logits()[2:], rtol=0, atol=1e-5)


def test_bad_input_is_a_clear_error(converted: dict, tmp_path: Path) -> None:
    vm = _core.VisionModel(str(converted[("tiny_bluelm_v", "q8_0")]))
    good = np.zeros((1, 3, 70, 70), np.float32)
    with pytest.raises(InvalidArgumentError, match="float32"):
        vm.encode(good.astype(np.float64), 1)
    for shape in ((1, 3, 70, 69), (3, 70, 70), (0, 3, 70, 70), (1, 4, 70, 70)):
        with pytest.raises(InvalidArgumentError, match="shape"):
            vm.encode(np.zeros(shape, np.float32), 1)
    with pytest.raises(InvalidArgumentError, match="n_threads"):
        vm.encode(good, 0)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        vm.encode(good, 1, batch_size=0)
    # Non-contiguous input is accepted and gives the same result.
    wide = np.zeros((1, 3, 70, 140), np.float32)
    wide[..., ::2] = np.random.default_rng(0).standard_normal((1, 3, 70, 70))
    np.testing.assert_array_equal(
        vm.encode(wide[..., ::2], 1), vm.encode(np.ascontiguousarray(wide[..., ::2]), 1)
    )

    with pytest.raises(ModelFileError):
        _core.VisionModel(str(tmp_path / "missing.gguf"))
    data = converted[("tiny_siglip", "f32")].read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        _core.VisionModel(str(cut))
    text_only = DATA / "tiny_llama"
    if text_only.exists():
        from bluelm_cpp.convert.writer import convert_checkpoint

        p = tmp_path / "text.gguf"
        convert_checkpoint(text_only, p, "f32", progress=False)
        with pytest.raises(ModelFormatError, match="no vision encoder"):
            _core.VisionModel(str(p))

    ctx = _core.Context(_core.LlamaModel(str(converted[("tiny_bluelm_v", "f32")])), 16, 4, 1, "f32")
    with pytest.raises(InvalidArgumentError, match="shape"):
        ctx.eval_embeddings(np.zeros((2, 63), np.float32))
    with pytest.raises(InvalidArgumentError, match="float32"):
        ctx.eval_embeddings(np.zeros((2, 64), np.float64))
    from bluelm_cpp.errors import ContextOverflowError

    with pytest.raises(ContextOverflowError):
        ctx.eval_embeddings(np.zeros((17, 64), np.float32))


def test_siglip_live_transformers_with_padded_k(tmp_path: Path) -> None:
    """Patch K = 108 and F = 120 are not multiples of 32: re-quantised with padding."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from vision_gguf_writer import siglip_tensors, write_vision_gguf

    torch.manual_seed(0)
    hc = transformers.SiglipVisionConfig(
        hidden_size=64,
        intermediate_size=120,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=45,
        patch_size=6,
        vision_use_head=False,
        attn_implementation="eager",
    )
    model = transformers.SiglipVisionModel(hc).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = dict(
        image_size=45,
        patch_size=6,
        hidden=64,
        ff=120,
        layers=2,
        heads=4,
        proj_dim=64,
        projector="none",
    )
    tensors = siglip_tensors(model.state_dict(), cfg)
    x = torch.rand(3, 3, 45, 45) * 2 - 1
    with torch.no_grad():
        want = model(pixel_values=x).last_hidden_state.numpy()
    for vt in ("f32", "f16", "q8_0"):
        path = tmp_path / f"s_{vt}.gguf"
        write_vision_gguf(path, cfg, tensors, vt)
        vm = _core.VisionModel(str(path))
        got = vm.encode_features(x.numpy(), 2)
        if vt == "f32":
            assert rel_err(got, want) < 1e-4
        else:
            assert vm.config["weight_type"] == vt.upper()
            assert cosine(got, want) >= 0.999


def test_scalar_isa_gives_the_same_embeddings(converted: dict) -> None:
    """BLUELM_ISA=scalar runs the scalar vision ops and Q8_0 gemm (the reference);
    every other table this CPU runs matches it: the int8 gemms bit for bit, the
    element-wise ops and the F32 attention to rounding. The one exception is the
    int8 encoder of avx512_bf16, whose attention is int8 throughout: scores, u8
    weights and s8 V (kernels.h, i8_attention; bounds in tests/cpp/test_vision.cpp):
    measured 0.90% of the largest output, cosine 0.99997, on this input (0.86%
    with the earlier bf16 weights and V; 0.76-0.87% with those on the three
    recorded inputs, whose cosine to the PyTorch record was that of the F32
    attention: 0.999912-0.999920 against 0.999913-0.999918)."""
    import os
    import subprocess
    import sys

    ref = np.load(DATA / "tiny_bluelm_v" / "reference.npz")
    px = ref["pixel_values_0"]
    code = (
        "import sys, numpy as np; from bluelm_cpp import _core;"
        "vm = _core.VisionModel(sys.argv[1]); x = np.load(sys.argv[2]);"
        "np.save(sys.argv[3], vm.encode(x, 2))"
    )
    for vt in ("f32", "q8_0"):
        path = str(converted[("tiny_bluelm_v", vt)])
        d = Path(path).parent
        np.save(d / "px.npy", px)
        # one child per table, all at once (the machine's cores stay busy while
        # one child imports and the scalar encoder runs for seconds)
        runs = {
            isa: subprocess.Popen(
                [sys.executable, "-c", code, path, str(d / "px.npy"), str(d / f"out_{isa}.npy")],
                env=dict(os.environ, BLUELM_ISA=isa),
            )
            for isa in _core.available_isas()
        }
        out = {}
        for isa, run in runs.items():
            assert run.wait() == 0, isa
            out[isa] = np.load(d / f"out_{isa}.npy")
        for isa, got in out.items():
            if vt == "q8_0" and isa == "avx512_bf16":
                assert cosine(got, out["scalar"]) >= 0.9999 and rel_err(got, out["scalar"]) < 0.02
            else:
                assert rel_err(got, out["scalar"]) < 1e-5, (vt, isa)
