"""Vision converter: tiny BlueLM-V, LLaVA-OneVision and SigLIP checkpoints -> GGUF,
read back by an independent numpy implementation of docs/vision_format.md and
compared with the PyTorch outputs recorded in tests/data/ (make_tiny_vision.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import vision_oracle as oracle
from compare import cosine, rel_err

from bluelm_cpp.convert import main as convert_main
from bluelm_cpp.convert.vision import convert_vision_checkpoint
from bluelm_cpp.errors import InvalidArgumentError, ModelFileError, ModelFormatError

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vision_gguf")
    out = {}
    for name in ("tiny_bluelm_v", "tiny_llava_ov"):
        out[name, "f32"] = d / f"{name}.gguf"
        convert_vision_checkpoint(DATA / name, out[name, "f32"], "f32", "f32", progress=False)
        out[name, "llm"], out[name, "q8"] = d / f"{name}-llm.gguf", d / f"{name}-mmproj.gguf"
        convert_vision_checkpoint(
            DATA / name, out[name, "llm"], "f32", "q8_0", mmproj=out[name, "q8"], progress=False
        )
    out["tiny_siglip", "f32"] = d / "siglip.gguf"
    convert_vision_checkpoint(
        DATA / "tiny_siglip", out["tiny_siglip", "f32"], vision_outtype="f32", progress=False
    )
    return out


def _expect_projected(name: str, z, k: int) -> np.ndarray:
    return z[f"embeddings_{k}"] if name == "tiny_bluelm_v" else z[f"projector_{k}"]


@pytest.mark.parametrize("name", ["tiny_bluelm_v", "tiny_llava_ov"])
def test_f32_file_reproduces_pytorch_encoder_and_projector(files, name):
    keys, t, types = oracle.read_gguf(files[name, "f32"])
    z = np.load(DATA / name / "reference.npz")
    for k in range(3):
        enc = oracle.encode(keys, t, z[f"pixel_values_{k}"])
        assert rel_err(enc, z[f"encoder_{k}"]) < 1e-5
        assert rel_err(oracle.project(keys, t, enc), _expect_projected(name, z, k)) < 1e-5
    assert set(types.values()) == {"F32"}


@pytest.mark.parametrize("name", ["tiny_bluelm_v", "tiny_llava_ov"])
def test_q8_0_mmproj_keeps_cosine_above_0_999(files, name):
    keys, t, types = oracle.read_gguf(files[name, "q8"])
    z = np.load(DATA / name / "reference.npz")
    for k in range(3):
        emb = oracle.project(keys, t, oracle.encode(keys, t, z[f"pixel_values_{k}"]))
        assert cosine(emb, _expect_projected(name, z, k)) >= 0.999
    assert types["v.patch_embd.weight"] == "F16"  # row 3*14*14 = 588
    assert types["v.position_embd.weight"] == "F32"
    assert types["v.blk.0.attn_q.weight"] == "Q8_0" and types["mm.0.weight"] == "Q8_0"
    assert all(types[n] == "F32" for n in t if t[n].ndim == 1)


def test_bare_siglip_matches_last_hidden_state(files):
    keys, t, _ = oracle.read_gguf(files["tiny_siglip", "f32"])
    z = np.load(DATA / "tiny_siglip" / "reference.npz")
    assert keys["clip.projector_type"] == "none" and "v.post_ln.weight" in t
    assert rel_err(oracle.encode(keys, t, z["pixel_values"]), z["last_hidden_state"]) < 1e-5


def test_keys_follow_the_contract(files):
    bk, bt, _ = oracle.read_gguf(files["tiny_bluelm_v", "f32"])
    cfg = json.loads((DATA / "tiny_bluelm_v" / "config.json").read_text())
    assert bk["general.architecture"] == "llama"
    assert bk["clip.projector_type"] == bk["clip.vision.projector_type"] == "mlp_downsample"
    assert bk["clip.has_vision_encoder"] and bk["clip.use_gelu"]
    assert (bk["clip.vision.image_size"], bk["clip.vision.patch_size"]) == (70, 14)
    assert (bk["clip.vision.embedding_length"], bk["clip.vision.feed_forward_length"]) == (64, 128)
    assert (bk["clip.vision.block_count"], bk["clip.vision.attention.head_count"]) == (2, 4)
    assert bk["clip.vision.feature_layer"] == [2]  # llama.cpp runs block_count - 1 without it
    assert bk["clip.vision.projection_dim"] == 64
    assert np.allclose(bk["clip.vision.image_mean"], cfg["image_mean"])
    assert np.allclose(bk["clip.vision.image_std"], cfg["image_std"])
    assert bk["bluelm.vision.grid_method"] == "relaxed"
    assert np.isclose(bk["bluelm.vision.alpha"], 0.1)
    assert (bk["bluelm.vision.max_grid_side"], bk["bluelm.vision.max_patches"]) == (3, 9)
    assert bk["bluelm.vision.downsample"] == 2 and bk["bluelm.vision.image_token"] == "<image>"
    assert bk["bluelm.vision.image_token_id"] == cfg["image_token_id"]
    assert bk["clip.vision.mm_patch_merge_type"] == "flat"
    assert "mm.input_norm.weight" in bt and "v.image_newline" not in bt

    ok, ot, _ = oracle.read_gguf(files["tiny_llava_ov", "f32"])
    cfg = json.loads((DATA / "tiny_llava_ov" / "config.json").read_text())
    assert ok["general.architecture"] == "qwen2" and ok["clip.projector_type"] == "mlp"
    pins = [x for h, w in cfg["image_grid_pinpoints"] for x in (w, h)]
    assert list(ok["clip.vision.image_grid_pinpoints"]) == pins
    assert ok["clip.vision.mm_patch_merge_type"] == "spatial_unpad"
    assert (
        ok["bluelm.vision.grid_method"] == "anyres" and ok["bluelm.vision.anyres_max_patches"] == 9
    )
    assert "v.post_ln.weight" not in ot  # LLaVA-OV uses hidden_states[-1], before post-LN
    newline = np.load(DATA / "tiny_llava_ov" / "reference.npz")["embeddings_0"]
    assert any(np.array_equal(ot["v.image_newline"], row) for row in newline)


@pytest.mark.parametrize("name", ["tiny_bluelm_v", "tiny_llava_ov"])
def test_split_files_hold_the_same_tensors_as_the_combined_one(files, name):
    ck, ct, _ = oracle.read_gguf(files[name, "f32"])
    lk, lt, _ = oracle.read_gguf(files[name, "llm"])
    mk, mt, _ = oracle.read_gguf(files[name, "q8"])
    assert not any(n.startswith(("v.", "mm.")) for n in lt)
    assert not any(k.startswith("clip.") for k in lk)
    assert set(lt) | set(mt) == set(ct) and not set(lt) & set(mt)
    assert mk["general.architecture"] == "clip" and mk["general.type"] == "mmproj"
    for n in lt:
        assert np.array_equal(lt[n], ct[n]), n
    assert lk["tokenizer.ggml.tokens"] == ck["tokenizer.ggml.tokens"]


@pytest.mark.parametrize("name", ["tiny_bluelm_v", "tiny_llava_ov"])
def test_llm_part_loads_in_the_runtime(files, name):
    core = pytest.importorskip("bluelm_cpp._core")
    m = core.LlamaModel(str(files[name, "llm"]))
    assert (m.n_vocab, m.n_embd, m.n_layer) == (512, 64, 2)


def test_cli_writes_mmproj(tmp_path):
    llm, mm = tmp_path / "llm.gguf", tmp_path / "mm.gguf"
    argv = [str(DATA / "tiny_llava_ov"), "-o", str(llm), "--mmproj", str(mm), "--quiet"]
    assert convert_main([*argv, "--vision-outtype", "f16"]) == 0
    _, _, types = oracle.read_gguf(mm)
    assert types["v.blk.0.attn_q.weight"] == "F16"
    assert convert_main(argv) == 1  # exists without --force
    assert (
        convert_main(
            [str(DATA / "tiny_llama"), "-o", str(tmp_path / "x.gguf"), "--mmproj", str(mm)]
        )
        == 1
    )


def _copy(name: str, tmp_path: Path) -> Path:
    d = tmp_path / name
    shutil.copytree(DATA / name, d)
    return d


def _edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def test_vision_feature_layer_minus_two_drops_the_last_layer(tmp_path):
    d = _copy("tiny_llava_ov", tmp_path)
    _edit_config(d, vision_feature_layer=-2)
    out = tmp_path / "o.gguf"
    convert_vision_checkpoint(d, out, "f32", "f32", progress=False)
    keys, t, _ = oracle.read_gguf(out)
    assert keys["clip.vision.block_count"] == 1
    assert "v.blk.0.ln1.weight" in t and "v.blk.1.ln1.weight" not in t


@pytest.mark.parametrize(
    "change, err",
    [
        ({"vision_feature_select_strategy": "default"}, ModelFormatError),
        ({"vision_feature_layer": [-2, -1]}, ModelFormatError),
        ({"vision_feature_layer": -5}, ModelFormatError),
        ({"architectures": ["Nope"]}, ModelFormatError),
        ({"image_grid_pinpoints": [[70]]}, ModelFormatError),
        ({"vision_aspect_ratio": "pad"}, ModelFormatError),
    ],
)
def test_bad_configs(tmp_path, change, err):
    d = _copy("tiny_llava_ov", tmp_path)
    _edit_config(d, **change)
    with pytest.raises(err):
        convert_vision_checkpoint(d, tmp_path / "o.gguf", progress=False)
    assert not (tmp_path / "o.gguf").exists()


def test_wrong_shape_and_bad_arguments(tmp_path):
    d = _copy("tiny_bluelm_v", tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["vision_config"]["intermediate_size"] = 96
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="shape"):
        convert_vision_checkpoint(d, tmp_path / "o.gguf", progress=False)
    src = DATA / "tiny_bluelm_v"
    with pytest.raises(InvalidArgumentError):
        convert_vision_checkpoint(src, tmp_path / "a.gguf", vision_outtype="q4_0", progress=False)
    with pytest.raises(InvalidArgumentError):
        convert_vision_checkpoint(
            src, tmp_path / "a.gguf", mmproj=tmp_path / "a.gguf", progress=False
        )
    with pytest.raises(InvalidArgumentError):
        convert_vision_checkpoint(
            DATA / "tiny_siglip", tmp_path / "a.gguf", mmproj=tmp_path / "b.gguf"
        )
    (tmp_path / "exists.gguf").write_bytes(b"x")
    with pytest.raises(ModelFileError):
        convert_vision_checkpoint(src, tmp_path / "exists.gguf", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.gguf", "tiny_bluelm_v"]


def _legacy_name(n: str) -> str:
    # the names of the llava-hf hub checkpoints (transformers 4)
    if n.startswith("vision_tower."):
        return "vision_tower.vision_model." + n[len("vision_tower.") :]
    return n


def _v5_model_prefix_name(n: str) -> str:
    # transformers 5's in-memory names (model.language_model.*, model.vision_tower.*)
    if n.startswith("language_model.model."):
        return "model.language_model." + n[len("language_model.model.") :]
    if n.startswith("language_model.lm_head"):
        return n[len("language_model.") :]
    return "model." + n


@pytest.mark.parametrize("rename", [_legacy_name, _v5_model_prefix_name])
def test_other_checkpoint_name_layouts_convert_identically(tmp_path, files, rename):
    from safetensors.numpy import load_file, save_file

    d = _copy("tiny_llava_ov", tmp_path)
    tensors = load_file(str(d / "model.safetensors"))
    save_file({rename(k): v for k, v in tensors.items()}, str(d / "model.safetensors"))
    out = tmp_path / "o.gguf"
    convert_vision_checkpoint(d, out, "f32", "f32", progress=False)
    _, got, _ = oracle.read_gguf(out)
    _, want, _ = oracle.read_gguf(files["tiny_llava_ov", "f32"])
    assert set(got) == set(want)
    assert all(np.array_equal(got[n], want[n]) for n in want)


def test_bare_siglip_with_vision_model_prefix(tmp_path, files):
    from safetensors.numpy import load_file, save_file

    d = _copy("tiny_siglip", tmp_path)
    tensors = load_file(str(d / "model.safetensors"))
    save_file({"vision_model." + k: v for k, v in tensors.items()}, str(d / "model.safetensors"))
    out = tmp_path / "o.gguf"
    convert_vision_checkpoint(d, out, vision_outtype="f32", progress=False)
    _, got, _ = oracle.read_gguf(out)
    _, want, _ = oracle.read_gguf(files["tiny_siglip", "f32"])
    assert all(np.array_equal(got[n], want[n]) for n in want) and set(got) == set(want)
