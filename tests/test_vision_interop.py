"""mmproj files shared with llama.cpp, both directions (docs/vision_format.md, "llama.cpp").

* llama.cpp's legacy LLaVA mmproj of tiny_llava_ov (data/tiny_llava_ov/legacy,
  written by llama.cpp's own legacy tools, data/make_legacy_mmproj.py) in our
  runtime, against transformers' outputs recorded by data/make_tiny_vision.py;
* our mmproj files (F32, Q8_0), converted here, against the embeddings llama.cpp's
  mtmd computed on them (data/tiny_llava_ov/mtmd, data/record_mtmd_vision.py).
  The recording holds the keys llama.cpp's loader reads and a hash of every
  tensor, so these tests first check that the converter still writes that file;
* bad legacy files: errors that name the key or the tensor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from vision_gguf_writer import rewrite_gguf
from vision_interop import consulted_keys, cos, tensor_hashes

from bluelm_cpp import Model, _core
from bluelm_cpp.convert.vision import convert_vision_checkpoint
from bluelm_cpp.errors import ModelFormatError
from bluelm_cpp.vision.embed import ImageEmbedder

DATA = Path(__file__).resolve().parent / "data"
LLAVA = DATA / "tiny_llava_ov"
LEGACY = LLAVA / "legacy" / "mmproj-model-f16.gguf"
V = gguf.GGUFValueType


@pytest.fixture(scope="module")
def ref() -> Any:
    return np.load(LLAVA / "reference.npz")


@pytest.fixture(scope="module")
def recorded() -> tuple[dict[str, Any], Any]:
    return json.loads((LLAVA / "mtmd" / "mtmd.json").read_text()), np.load(
        LLAVA / "mtmd" / "mtmd_embeddings.npz"
    )


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("interop")
    out = {}
    for vt in ("f32", "q8_0"):
        out["llm"], out[vt] = d / "llm.gguf", d / f"mmproj-{vt}.gguf"
        convert_vision_checkpoint(
            LLAVA, out["llm"], "f32", vt, mmproj=out[vt], force=True, progress=False
        )
    out["bluelm_v"] = d / "bluelm-v-mmproj.gguf"
    convert_vision_checkpoint(
        DATA / "tiny_bluelm_v", d / "bl.gguf", "f32", "f32", mmproj=out["bluelm_v"], progress=False
    )
    return out


def _all_pixels(ref: Any) -> np.ndarray:
    """The recordings' input: the three images' patches, in order."""
    return np.concatenate([ref[f"pixel_values_{k}"] for k in range(3)]).astype(np.float32)


def _per_patch_min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return min(cos(x, y) for x, y in zip(a, b))


# --- llama.cpp's legacy file in our runtime ------------------------------------------------


def test_legacy_file_is_the_recorded_one() -> None:
    info = json.loads((LLAVA / "legacy" / "legacy.json").read_text())
    assert hashlib.sha256(LEGACY.read_bytes()).hexdigest() == info["sha256"]


def test_legacy_file_resolves_as_llamacpp_reads_it() -> None:
    c = _core.VisionModel(str(LEGACY)).config
    assert c["clip.vision.projection_dim"] == 0 and c["proj_dim"] == 64  # from mm.2.weight
    assert c["ffn_naming"] == "legacy_swapped"  # fc1 stored as ffn_down
    assert c["image_newline_tensor"] == "model.image_newline"
    assert list(c["clip.vision.feature_layer"]) == [2] and c["n_layer"] == 2
    assert c["projector"] == "mlp" and c["weight_type"] == "F16" and not c["has_post_ln"]


def test_legacy_file_matches_transformers(ref: Any) -> None:
    vm = _core.VisionModel(str(LEGACY))
    for k in range(3):
        got, want = vm.encode(ref[f"pixel_values_{k}"]), ref[f"projector_{k}"]
        assert got.shape == want.shape
        assert cos(got, want) >= 0.9999
        assert _per_patch_min_cos(got, want) >= 0.9999


def test_legacy_file_packs_images_as_transformers(ref: Any) -> None:
    """Anyres packing with the legacy 'model.image_newline': what enters the LLM."""
    emb = ImageEmbedder(LEGACY)
    assert emb.n_embd == 64
    for k in range(3):
        got, want = emb.embed(ref[f"image_{k}"]), ref[f"embeddings_{k}"]
        assert got.shape == want.shape
        assert cos(got, want) >= 0.9999


def test_model_with_legacy_mmproj_matches_transformers_logits(ours: dict, ref: Any) -> None:
    meta = json.loads((LLAVA / "reference.json").read_text())
    with Model(ours["llm"], mmproj=LEGACY, n_ctx=256, n_threads=2, kv_type="f32") as m:
        for k in range(3):
            parts = m._prompt_parts(meta["prompt"], [ref[f"image_{k}"]], chat=False)
            with m._session():
                m._prefiller.prefill(parts)
                last = m._ctx.logits()
            want = ref[f"logits_{k}"][-1]
            assert np.abs(last - want).max() <= 5e-4 * np.abs(want).max()
            assert int(np.argmax(last)) == int(np.argmax(want))


# --- our files in llama.cpp --------------------------------------------------------------


@pytest.mark.parametrize("vt", ["f32", "q8_0"])
def test_converter_still_writes_the_file_llamacpp_read(ours: dict, recorded: tuple, vt: str):
    info, _ = recorded
    rec = info["files"][vt]
    again = "the converter's output changed: re-record with tests/data/record_mtmd_vision.py"
    assert consulted_keys(ours[vt]) == rec["keys"], again
    assert tensor_hashes(ours[vt]) == rec["tensors"], again
    # The key that makes llama.cpp run every stored layer (without it: block_count - 1).
    assert rec["keys"]["clip.vision.feature_layer"] == ["ARRAY", "INT32", [2]]


@pytest.mark.parametrize("vt", ["f32", "q8_0"])
def test_our_mmproj_gives_llamacpp_embeddings(ours: dict, recorded: tuple, ref: Any, vt: str):
    """Our runtime and llama.cpp's clip on the same file and pixels, and llama-mtmd-cli
    on a 70x70 image (llama.cpp's own preprocessing: rescale, normalise)."""
    info, z = recorded
    vm = _core.VisionModel(str(ours[vt]))
    got = vm.encode(_all_pixels(ref))
    assert _per_patch_min_cos(got, z[vt]) >= 0.999
    mean, std = (
        np.asarray(vm.config[f"clip.vision.image_{s}"], np.float32) for s in ("mean", "std")
    )
    pix = ((z["cli_image"] / np.float32(255) - mean) / std).astype(np.float32)
    assert cos(vm.encode(pix.transpose(2, 0, 1)[None].copy())[0], z[f"cli_{vt}"]) >= 0.999


def test_legacy_file_gives_llamacpp_embeddings(recorded: tuple, ref: Any) -> None:
    _, z = recorded
    got = _core.VisionModel(str(LEGACY)).encode(_all_pixels(ref))
    assert _per_patch_min_cos(got, z["legacy_f16"]) >= 0.999


def test_mlp_file_without_feature_layer_runs_as_llamacpp(recorded: tuple, ref: Any, tmp_path):
    """llama.cpp runs block_count - 1 layers of such a file; so do we (one layer here)."""
    _, z = recorded
    bare = tmp_path / "no-feature-layer.gguf"
    rewrite_gguf(LEGACY, bare, drop_keys=["clip.vision.feature_layer"])
    vm = _core.VisionModel(str(bare))
    assert vm.config["n_layer"] == 1
    got = vm.encode(_all_pixels(ref))
    assert _per_patch_min_cos(got, z["legacy_f16_no_feature_layer"]) >= 0.999
    assert cos(got, np.concatenate([ref[f"projector_{k}"] for k in range(3)])) < 0.99


def test_bluelm_v_projector_is_refused_by_llamacpp(ours: dict, recorded: tuple) -> None:
    """mlp_downsample is this project's own: llama.cpp's loader names it and stops."""
    info, _ = recorded
    name = _core.VisionModel(str(ours["bluelm_v"])).config["clip.projector_type"]
    assert name == "mlp_downsample"
    assert info["mlp_downsample"]["clip_init"].endswith(f"unknown projector type: {name}")
    assert info["mlp_downsample"]["llama_mtmd_cli_exit_status"] != 0


# --- bad legacy files ----------------------------------------------------------------------


def _bad(tmp_path: Path, **kw: Any) -> str:
    path = tmp_path / "bad.gguf"
    rewrite_gguf(LEGACY, path, **kw)
    with pytest.raises(ModelFormatError) as e:
        _core.VisionModel(str(path))
    return str(e.value)


FL, PD = "clip.vision.feature_layer", "clip.vision.projection_dim"


@pytest.mark.parametrize(
    "key, value, names",
    [
        (PD, (32, V.UINT32, None), [PD, "mm.2.weight"]),
        (FL, ([3], V.ARRAY, V.INT32), [FL, "out of range"]),
        (FL, ([0], V.ARRAY, V.INT32), [FL, "out of range"]),
        (FL, ([1, 2], V.ARRAY, V.INT32), [FL, "only one"]),
        (FL, (["2"], V.ARRAY, V.STRING), [FL, "integers"]),
        ("clip.vision.projector_type", ("mlp_downsample", V.STRING, None), ["clip.projector_type"]),
        ("clip.vision.block_count", (1, V.UINT32, None), [FL, "block_count"]),
        ("clip.vision.feed_forward_length", (96, V.UINT32, None), ["v.blk.0.ffn_", "shape"]),
    ],
)
def test_inconsistent_key_is_named(tmp_path: Path, key: str, value: tuple, names: list[str]):
    msg = _bad(tmp_path, set_keys={key: value})
    assert all(n in msg for n in names), msg


@pytest.mark.parametrize(
    "tensor",
    [
        "v.blk.1.ffn_up.weight",
        "v.blk.0.ffn_down.weight",
        "v.blk.1.attn_q.bias",
        "mm.2.weight",
        "mm.0.bias",
        "v.position_embd.weight",
    ],
)
def test_missing_tensor_is_named(tmp_path: Path, tensor: str) -> None:
    assert f"'{tensor}' is missing" in _bad(tmp_path, drop_tensors=[tensor])


def test_unsupported_legacy_layouts_are_named(tmp_path: Path) -> None:
    row = np.zeros(64, np.float32)
    assert "'v.class_embd'" in _bad(tmp_path, add_tensors={"v.class_embd": row})
    assert "'mm.3.weight'" in _bad(
        tmp_path, add_tensors={"mm.3.weight": np.zeros((64, 64), np.float32)}
    )
    assert "'v.image_newline'" in _bad(tmp_path, add_tensors={"v.image_newline": row})


def test_anyres_file_without_newline_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no-newline.gguf"
    rewrite_gguf(LEGACY, path, drop_tensors=["model.image_newline"])
    with pytest.raises(ModelFormatError, match="v.image_newline.*model.image_newline"):
        ImageEmbedder(path)
