"""Converter tests that need torch / transformers (save_pretrained layouts,
pytorch_model.bin) or the C++ runtime (logits against transformers, llama.cpp
running our files); each skips with a reason when its package is missing.
The tiny checkpoints come from test_convert's builders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from test_convert import (  # noqa: E402
    DATA,
    HIDDEN,
    N_HEAD,
    N_KV,
    N_LAYER,
    as_f32,
    bpe_tokenizer,
    make_model,
    read,
)

from bluelm_cpp.convert import convert_checkpoint  # noqa: E402
from bluelm_cpp.convert.architectures import permute_interleaved_to_rotate_half  # noqa: E402

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
    for hf_name, name in [
        ("model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight"),
        ("model.embed_tokens.weight", "token_embd.weight"),
    ]:
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


def _recorded_f32(tmp_path: Path, name: str) -> tuple[Path, list[int], np.ndarray]:
    """The F32 conversion of a recorded checkpoint in tests/data, its prompt and
    transformers' logits (skips when the recording is missing)."""
    d = DATA / name
    if not (d / "reference.npz").is_file():
        pytest.skip(f"{d}/reference.npz is missing")
    ref_file = np.load(d / "reference.npz")
    out = tmp_path / "f32.gguf"
    convert_checkpoint(d, out, "f32", progress=False)
    return out, ref_file["prompt_ids"].tolist(), ref_file["logits"]


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_qwen2"])
def test_parity_recorded_reference(tmp_path: Path, name: str) -> None:
    """Same check without torch, on the recorded checkpoints in tests/data."""
    Model = _runtime_model()
    out, tokens, ref = _recorded_f32(tmp_path, name)
    got = np.asarray(Model(str(out), kv_type="f32").eval_logits(tokens, all_positions=True))
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_qwen2"])
def test_llama_cpp_runs_our_gguf(tmp_path: Path, name: str) -> None:
    """llama.cpp itself (llama-cpp-python) loads the F32 conversion and matches transformers."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    out, tokens, ref = _recorded_f32(tmp_path, name)
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
