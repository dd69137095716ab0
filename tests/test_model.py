"""The Model API on the real SmolLM2 GGUF: sampling, streaming, stop strings,
chat, and the errors bad input must raise (with the interpreter alive after)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

import bluelm_cpp
from bluelm_cpp import _core
from bluelm_cpp.errors import (
    BlueLMError,
    ContextOverflowError,
    InvalidArgumentError,
    ModelFileError,
    ModelFormatError,
)

DATA_DIR = Path(__file__).resolve().parent / "data"

# ------------------------------------------------------------------ sampling


def test_seeded_sampling_is_reproducible(smollm2: bluelm_cpp.Model) -> None:
    kw = dict(max_tokens=24, temperature=0.9, top_k=50, top_p=0.9, min_p=0.02, seed=1234)
    a = smollm2.generate("Once upon a time", **kw)
    b = smollm2.generate("Once upon a time", **kw)
    assert a == b and len(a) > 0
    others = {smollm2.generate("Once upon a time", **{**kw, "seed": s}) for s in range(5)}
    assert len(others) > 1, "different seeds should give different samples"


def test_stream_equals_non_stream(smollm2: bluelm_cpp.Model) -> None:
    kw = dict(max_tokens=40, temperature=0.8, seed=7)
    whole = smollm2.generate("Write a haiku about the sea 🌊.", **kw)
    pieces = list(smollm2.generate("Write a haiku about the sea 🌊.", stream=True, **kw))
    assert "".join(pieces) == whole
    for p in pieces:
        p.encode("utf-8")  # never a broken surrogate / partial character


def test_stop_string_cuts_text_in_stream_and_whole(smollm2: bluelm_cpp.Model) -> None:
    kw = dict(max_tokens=40, temperature=0.0)
    full = smollm2.generate("Count: 1, 2, 3, 4,", **kw)
    assert " 6" in full, full
    cut = smollm2.generate("Count: 1, 2, 3, 4,", stop=[" 6"], **kw)
    assert cut == full[: full.index(" 6")]
    assert "".join(smollm2.generate("Count: 1, 2, 3, 4,", stop=" 6", stream=True, **kw)) == cut


def test_greedy_is_argmax_of_eval_logits(smollm2: bluelm_cpp.Model) -> None:
    ids = smollm2.tokenize("The capital of France is")
    first = next(iter(smollm2.generate_tokens(ids, max_tokens=1, temperature=0)))
    assert first == int(np.argmax(smollm2.eval_logits(ids)))


def test_max_tokens_and_eog(smollm2: bluelm_cpp.Model) -> None:
    ids = smollm2.tokenize("Hello")
    assert len(list(smollm2.generate_tokens(ids, max_tokens=5, temperature=0))) == 5
    assert list(smollm2.generate_tokens(ids, max_tokens=0, temperature=0)) == []
    answer = smollm2.chat([{"role": "user", "content": "Say OK."}], max_tokens=64, temperature=0)
    assert "<|im_end|>" not in answer and len(answer) > 0


def test_chat_answers_and_reuses_prefix(smollm2: bluelm_cpp.Model) -> None:
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    answer = smollm2.chat(msgs, max_tokens=32, temperature=0)
    # llama.cpp's greedy answer to the same chat (recorded by tests/data/record_llamacpp.py;
    # this small Q4_1 model does not say "Paris" here, and neither must we).
    record = json.loads((DATA_DIR / "llamacpp_smollm2_q4_1.json").read_text(encoding="utf-8"))
    ref = next(g for g in record["generate"] if g["kind"] == "chat" and g["messages"] == msgs)
    assert answer == smollm2.detokenize(ref["generated_ids"][:32])
    # Same conversation again: identical greedy answer from the reused cache.
    assert smollm2.chat(msgs, max_tokens=32, temperature=0) == answer


def test_info(smollm2: bluelm_cpp.Model) -> None:
    info = smollm2.info
    assert info["arch"] == "llama" and info["n_vocab"] == 49152 and info["n_layer"] == 30
    assert info["isa"] in _core.available_isas()
    assert info["tokenizer"] == "gpt2"


# ------------------------------------------------------------------ bad input


def _expect(exc: type[BaseException], match: str, fn, *args, **kwargs) -> None:
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_missing_file(tmp_path: Path) -> None:
    _expect(ModelFileError, "does not exist", bluelm_cpp.Model, tmp_path / "nope.gguf")
    _expect(ModelFileError, "cannot open", _core.GGUFFile, str(tmp_path / "nope.gguf"))
    assert issubclass(ModelFileError, OSError) and issubclass(ModelFileError, BlueLMError)


def test_not_a_gguf(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    _expect(ModelFormatError, "not a GGUF file", bluelm_cpp.Model, p)
    p.write_bytes(b"GG")
    _expect(ModelFormatError, "only 2 bytes", bluelm_cpp.Model, p)
    assert issubclass(ModelFormatError, ValueError)


def test_truncated_gguf(tmp_path: Path, smollm2_file: Path) -> None:
    data = smollm2_file.read_bytes()
    for size in (100, 4096, 1_500_000, len(data) - 1000):
        p = tmp_path / f"trunc{size}.gguf"
        p.write_bytes(data[:size])
        with pytest.raises(ModelFormatError, match=str(p.name)):
            bluelm_cpp.Model(p)


def _write_tiny(
    path: Path, arch: str = "llama", emb_type=gguf.GGMLQuantizationType.F32, extra=None
) -> None:
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    rng = np.random.default_rng(0)
    vocab = 64

    def t(name: str, shape: tuple[int, ...]) -> None:
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))

    if emb_type == gguf.GGMLQuantizationType.F32:
        t("token_embd.weight", (vocab, 32))
    else:
        raw = np.zeros((vocab, 144), dtype=np.uint8)  # one Q4_K block (256 values) per row
        w.add_tensor("token_embd.weight", raw, raw_shape=(vocab, 144), raw_dtype=emb_type)
    t("output_norm.weight", (32,))
    for n, s in [
        ("attn_norm", (32,)),
        ("ffn_norm", (32,)),
        ("attn_q", (32, 32)),
        ("attn_k", (32, 32)),
        ("attn_v", (32, 32)),
        ("attn_output", (32, 32)),
        ("ffn_gate", (64, 32)),
        ("ffn_up", (64, 32)),
        ("ffn_down", (32, 64)),
    ]:
        t(f"blk.0.{n}.weight", s)
    if extra:
        extra(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_tiny_file_loads_and_runs(tmp_path: Path) -> None:
    p = tmp_path / "tiny.gguf"
    _write_tiny(p)
    m = _core.LlamaModel(str(p))
    ctx = _core.Context(m, 16, 4, 1, "f32")
    ctx.eval([1, 2, 3, 4, 5, 6], True)
    assert ctx.logits().shape == (6, 64) and np.isfinite(ctx.logits()).all()


def test_tensor_offset_past_end(tmp_path: Path) -> None:
    p = tmp_path / "tiny.gguf"
    _write_tiny(p)
    data = bytearray(p.read_bytes())
    f = _core.GGUFFile(str(p))
    last = max(f.tensors, key=lambda t: t["offset"])
    # Find the tensor-info record of `last` and push its relative offset past the file end.
    name = last["name"].encode()
    pos = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    n_dims = struct.unpack_from("<I", data, pos)[0]
    off_pos = pos + 4 + 8 * n_dims + 4
    struct.pack_into("<Q", data, off_pos, len(data) * 2 // 32 * 32)
    p.write_bytes(bytes(data))
    _expect(
        ModelFormatError,
        f"tensor '{last['name']}' data .* runs past the end",
        _core.GGUFFile,
        str(p),
    )


def test_unsupported_architecture(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    _write_tiny(p, arch="mamba")
    _expect(ModelFormatError, "architecture 'mamba' is not supported", bluelm_cpp.Model, p)


def test_unsupported_tensor_type(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    _write_tiny(p, emb_type=gguf.GGMLQuantizationType.Q4_K)
    _expect(ModelFormatError, r"token_embd.weight' has type 12 \(Q4_K\)", bluelm_cpp.Model, p)


def test_prompt_longer_than_context(smollm2_file: Path) -> None:
    m = bluelm_cpp.Model(smollm2_file, n_ctx=16, n_threads=1)
    _expect(ContextOverflowError, "16", m.generate, "word " * 40, max_tokens=4)
    _expect(ContextOverflowError, "n_ctx", m.eval_logits, list(range(17)))
    assert m.generate("Hi", max_tokens=2, temperature=0) is not None  # still usable


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": 0.0}, "top_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"top_k": -1}, "top_k"),
        ({"repeat_penalty": 0.0}, "repeat_penalty"),
        ({"max_tokens": -3}, "max_tokens"),
        ({"seed": -1}, "seed"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": [""]}, "stop"),
    ],
)
def test_invalid_sampling_values(smollm2: bluelm_cpp.Model, kwargs: dict, match: str) -> None:
    _expect(InvalidArgumentError, match, smollm2.generate, "Hi", **kwargs)
    assert isinstance(smollm2.generate("Hi", max_tokens=1, temperature=0), str)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_ctx": -5}, "n_ctx"),
        ({"n_batch": 0}, "n_batch"),
        ({"n_threads": 0}, "n_threads"),
        ({"kv_type": "q4"}, "kv_type"),
    ],
)
def test_invalid_model_arguments(smollm2_file: Path, kwargs: dict, match: str) -> None:
    _expect(InvalidArgumentError, match, bluelm_cpp.Model, smollm2_file, **kwargs)


def test_n_ctx_zero_is_the_trained_context(smollm2_file: Path) -> None:
    # As llama.cpp's n_ctx = 0; the trained length is the file's llama.context_length.
    trained = _core.GGUFFile(str(smollm2_file)).metadata["llama.context_length"]
    with bluelm_cpp.Model(smollm2_file, n_ctx=0, n_threads=1) as m:
        assert m.n_ctx == trained == m.info["n_ctx_train"]


def test_bad_token_ids(smollm2: bluelm_cpp.Model) -> None:
    _expect(InvalidArgumentError, "outside the vocabulary", smollm2.eval_logits, [1, 49152])
    _expect(InvalidArgumentError, "outside the vocabulary", smollm2.eval_logits, [-1])
    _expect(InvalidArgumentError, "at least one token", smollm2.eval_logits, [])
    _expect(InvalidArgumentError, "out of range", smollm2.detokenize, [10**9])


def test_images_to_text_model(smollm2: bluelm_cpp.Model) -> None:
    _expect(InvalidArgumentError, "text-only", smollm2.generate, "Describe", images=["x.png"])


def test_forced_unknown_isa_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import bluelm_cpp._core as c; c.isa()"
    r = subprocess.run(
        [sys.executable, "-c", code], env={"BLUELM_ISA": "sparc"}, capture_output=True, text=True
    )
    assert r.returncode != 0 and "BLUELM_ISA=sparc" in r.stderr


def test_closed_model_raises(smollm2_file: Path) -> None:
    m = bluelm_cpp.Model(smollm2_file, n_ctx=32, n_threads=1)
    m.close()
    _expect(BlueLMError, "closed", m.generate, "Hi")
