"""Model with images: placeholders, chat image parts, encode_image, KV reuse, errors.

References are the recorded PyTorch outputs in tests/data/tiny_bluelm_v and
tests/data/tiny_llava_ov (made by tests/data/make_tiny_vision.py with
transformers): prompt ids with the image tokens expanded, image embeddings as
they enter the LLM, and the logits of the last prompt positions.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bluelm_cpp import Model
from bluelm_cpp.convert.vision import convert_vision_checkpoint
from bluelm_cpp.errors import ImageError, InvalidArgumentError, ModelFileError

DATA = Path(__file__).parent / "data"
NAMES = ["tiny_bluelm_v", "tiny_llava_ov"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("vlm")
    out = {}
    for name in NAMES:
        out[name] = d / f"{name}.gguf"
        convert_vision_checkpoint(
            DATA / name, out[name], outtype="f32", vision_outtype="f32", progress=False
        )
    # The same LLaVA-OV as an LLM file plus a separate mmproj file.
    out["llm"], out["mmproj"] = d / "llm.gguf", d / "mmproj.gguf"
    convert_vision_checkpoint(
        DATA / "tiny_llava_ov",
        out["llm"],
        outtype="f32",
        vision_outtype="f32",
        mmproj=out["mmproj"],
        progress=False,
    )
    return out


def _ref(name: str) -> tuple[Any, dict[str, Any]]:
    return np.load(DATA / name / "reference.npz"), json.loads(
        (DATA / name / "reference.json").read_text()
    )


def _model(path: Path, **kw: Any) -> Model:
    return Model(path, n_ctx=256, n_threads=2, n_batch=16, kv_type="f32", **kw)


@pytest.mark.parametrize("name", NAMES)
def test_encode_image_matches_pytorch_record(files: dict, name: str) -> None:
    ref, _ = _ref(name)
    with _model(files[name]) as m:
        for k in range(3):
            got = m.encode_image(ref[f"image_{k}"])
            want = ref[f"embeddings_{k}"].reshape(-1, got.shape[-1])
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("name", NAMES)
def test_prompt_with_image_matches_pytorch_record(files: dict, name: str) -> None:
    """Prompt ids (image tokens expanded) and the last logit equal the reference's."""
    ref, meta = _ref(name)
    with _model(files[name]) as m:
        for k in range(3):
            parts = m._prompt_parts(meta["prompt"], [ref[f"image_{k}"]], chat=False)
            ids = []
            for p in parts:  # token lists and the image, whose rows the placeholders fill
                n = None if isinstance(p, list) else m._prefiller.image(p).n_rows
                ids += p if n is None else [meta["image_token_id"]] * n
            assert ids == ref[f"input_ids_{k}"].tolist()
            with m._session():
                m._prefiller.prefill(parts)
                last = m._ctx.logits()
            want = ref[f"logits_{k}"][-1]
            assert np.abs(last - want).max() <= 1e-4 * np.abs(want).max()
            # Greedy generation starts with the reference's top token.
            first = m.generate(
                meta["prompt"], images=[ref[f"image_{k}"]], max_tokens=1, temperature=0
            )
            assert first == m.detokenize([int(np.argmax(want))])


def test_mmproj_file_equals_combined_file(files: dict) -> None:
    ref, meta = _ref("tiny_llava_ov")
    img = ref["image_0"]
    with _model(files["tiny_llava_ov"]) as a, _model(files["llm"], mmproj=files["mmproj"]) as b:
        np.testing.assert_array_equal(a.encode_image(img), b.encode_image(img))
        kw = dict(max_tokens=4, temperature=0)
        assert a.generate(meta["prompt"], images=[img], **kw) == b.generate(
            meta["prompt"], images=[img], **kw
        )


def _png_data_url(arr: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_chat_image_parts(files: dict, tmp_path: Path) -> None:
    from PIL import Image

    ref, _ = _ref("tiny_bluelm_v")
    arr = ref["image_0"]
    path = tmp_path / "img.png"
    Image.fromarray(arr).save(path)
    question = {"type": "text", "text": "What is in the image?"}
    with _model(files["tiny_bluelm_v"]) as m:
        want = m.generate(
            m.format_chat([{"role": "user", "content": "<image>\nWhat is in the image?"}]),
            images=[arr],
            max_tokens=6,
            temperature=0,
        )
        for part in (
            {"type": "image_url", "image_url": {"url": _png_data_url(arr)}},
            {"type": "image_url", "image_url": {"url": str(path)}},
            {"type": "image", "image": Image.fromarray(arr)},
        ):
            msgs = [{"role": "user", "content": [part, question]}]
            assert m.chat(msgs, max_tokens=6, temperature=0) == want
            assert "".join(m.chat(msgs, max_tokens=6, temperature=0, stream=True)) == want


def test_kv_cache_is_never_reused_across_images(files: dict) -> None:
    ref, meta = _ref("tiny_bluelm_v")
    a, b = ref["image_1"], 255 - ref["image_1"]  # same size, different pixels
    kw = dict(max_tokens=5, temperature=0)
    with _model(files["tiny_bluelm_v"]) as fresh:
        want_b = fresh.generate(meta["prompt"], images=[b], **kw)
    with _model(files["tiny_bluelm_v"]) as m:
        out_a = m.generate(meta["prompt"], images=[a], **kw)
        key_a = {t[0] for t in m._cached if isinstance(t, tuple)}
        assert m.generate(meta["prompt"], images=[b], **kw) == want_b
        key_b = {t[0] for t in m._cached if isinstance(t, tuple)}
        assert len(key_a) == len(key_b) == 1 and key_a != key_b
        assert m.generate(meta["prompt"], images=[a], **kw) == out_a


def test_image_errors(files: dict, tmp_path: Path) -> None:
    ref, meta = _ref("tiny_bluelm_v")
    img = ref["image_1"]
    with _model(files["tiny_bluelm_v"]) as m:
        with pytest.raises(InvalidArgumentError, match="placeholder"):
            m.generate(meta["prompt"], images=[img, img], max_tokens=1)
        with pytest.raises(InvalidArgumentError, match="placeholder"):
            m.generate("no placeholder here", images=[img], max_tokens=1)
        with pytest.raises(InvalidArgumentError, match="list"):
            m.generate(meta["prompt"], images=img, max_tokens=1)
        with pytest.raises(InvalidArgumentError, match="text"):
            m.generate([1, 2, 3], images=[img], max_tokens=1)
        with pytest.raises(ImageError):
            m.encode_image(b"not an image")
        with pytest.raises(ImageError):
            m.encode_image(np.zeros((0, 5, 3), np.uint8))
        with pytest.raises(ImageError):
            m.encode_image("data:image/png;base64,AAAA")
        url = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
        with pytest.raises(InvalidArgumentError, match="http"):
            m.chat([{"role": "user", "content": [url]}], max_tokens=1)
    with pytest.raises(ModelFileError):
        Model(files["llm"], mmproj=tmp_path / "missing.gguf")
    from bluelm_cpp.convert.writer import convert_checkpoint

    text_only = tmp_path / "text.gguf"
    convert_checkpoint(DATA / "tiny_llama", text_only, "f32", progress=False)
    with Model(text_only, n_ctx=64, n_threads=1) as t:
        assert t.vision is None
        with pytest.raises(InvalidArgumentError, match="text-only"):
            t.generate("<image> hi", images=[img], max_tokens=1)
        with pytest.raises(InvalidArgumentError, match="text-only"):
            t.encode_image(img)
        part = {"type": "image", "image": img}
        with pytest.raises(InvalidArgumentError, match="text-only"):
            t.chat([{"role": "user", "content": [part]}], max_tokens=1)


# -- one prompt path: LLaVA-OneVision images get what BlueLM-V images get ------


def test_llava_prepare_image_matches_a_plain_request(files: dict) -> None:
    """prepare_image (the anyres-packed rows, encoded in the background) gives the
    output of a fresh model given the raw image, without a second encode."""
    ref, meta = _ref("tiny_llava_ov")
    img = ref["image_0"]
    kw = dict(max_tokens=5, temperature=0)
    with _model(files["tiny_llava_ov"]) as fresh:
        want = fresh.generate(meta["prompt"], images=[img], **kw)
        want_rows = fresh.encode_image(img)
    with _model(files["tiny_llava_ov"]) as m:
        h = m.prepare_image(img)
        np.testing.assert_array_equal(h.result(timeout=60), want_rows)  # = the PyTorch-checked rows
        n0 = m.vision.native.n_patches_encoded
        assert m.generate(meta["prompt"], images=[h], **kw) == want
        assert m.vision.native.n_patches_encoded == n0 and m.last_stats["n_patches_encoded"] == 0


def test_llava_prepare_image_with_prompt_prefills_ahead(files: dict) -> None:
    ref, meta = _ref("tiny_llava_ov")
    img = ref["image_1"]
    kw = dict(max_tokens=5, temperature=0)
    before, question = meta["prompt"].split("<image>")
    with _model(files["tiny_llava_ov"]) as fresh:
        want = fresh.generate(meta["prompt"], images=[img], **kw)
        total = fresh.last_stats["n_prefilled"]
    with _model(files["tiny_llava_ov"]) as m:
        h = m.prepare_image(img, before + "<image>")
        assert h.kv_ready(timeout=60) and h.kv_error is None
        n_ahead = len(m._cached)
        assert n_ahead == len(m.tokenize(before, parse_special=True)) + h.n_rows
        assert m.generate(meta["prompt"], images=[h], **kw) == want
        st = m.last_stats
        assert st["n_reused"] == n_ahead and st["n_reused"] + st["n_prefilled"] == total
        assert st["n_patches_encoded"] == 0


def test_llava_chat_second_turn_reuses_the_image(files: dict) -> None:
    """Turn 2 of a conversation neither re-encodes the image nor re-prefills it."""
    ref, _ = _ref("tiny_llava_ov")
    part = {"type": "image", "image": ref["image_2"]}
    msgs = [{"role": "user", "content": [part, {"type": "text", "text": "\nDescribe it."}]}]
    with _model(files["tiny_llava_ov"]) as m:
        first = m.chat(msgs, max_tokens=4, temperature=0)
        n1 = m.last_stats["n_prefilled"]
        assert m.last_stats["n_patches_encoded"] == 2  # base image + 1 grid patch
        msgs += [{"role": "assistant", "content": first}, {"role": "user", "content": "More?"}]
        second = m.chat(msgs, max_tokens=4, temperature=0)
        st = m.last_stats
        assert st["n_patches_encoded"] == 0 and st["n_reused"] >= n1
    with _model(files["tiny_llava_ov"]) as fresh:
        assert fresh.chat(msgs, max_tokens=4, temperature=0) == second
        assert fresh.last_stats["n_prefilled"] == st["n_reused"] + st["n_prefilled"]


def test_text_and_images_share_one_prefix_cache(files: dict) -> None:
    """Keys: token ids for text, (image key, row) for image rows, the same for
    both layouts; a different image never matches."""
    ref, meta = _ref("tiny_llava_ov")
    with _model(files["tiny_llava_ov"]) as m:
        m.generate(meta["prompt"], images=[ref["image_0"]], max_tokens=1, temperature=0)
        keys = m._cached
        img_keys = {k[0] for k in keys if isinstance(k, tuple)}
        assert len(img_keys) == 1 and all(isinstance(k, int) for k in keys[:3])
        m.generate(meta["prompt"], images=[255 - ref["image_0"]], max_tokens=1, temperature=0)
        first_row = next(i for i, k in enumerate(keys) if isinstance(k, tuple))
        assert m.last_stats["n_reused"] <= first_row  # the other image's rows are never reused
