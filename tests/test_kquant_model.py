"""Files that mix the K-quant, Q5 and IQ4 types with the older ones: each tensor
runs its own kernel, the logits stay within 8-bit-activation error of the F32
copy dequantised by gguf-py, `bluelm-cpp info` names each type's kernel, and
bad files (unknown type, row width, block count, non-finite scales) raise a
ModelFormatError naming the tensor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from kquant_files import LAYER_TYPES, patch_tensor_info, set_block_scale, write_mixed

import bluelm_cpp
from bluelm_cpp import _core
from bluelm_cpp.cli import main as cli_main
from bluelm_cpp.convert.requantize import requantize_gguf
from bluelm_cpp.errors import ModelFormatError

NEW_TYPES = [T.Q5_0, T.Q5_1, T.IQ4_NL, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS]
# Measured on write_mixed's model (48 random tokens, AVX-512 and scalar tables):
# max|diff| / max|logit| 0.031, mean KL 0.0003, top-1 agreement 1.0. Random
# weights give near-tied logits, so the bars are on the logits, with margin.
REL_BAR, KL_BAR = 0.06, 0.003


def _logits(path: Path, n_tok: int = 48) -> np.ndarray:
    m = _core.LlamaModel(str(path))
    ctx = _core.Context(m, 64, 16, 2, "f32")
    ids = np.random.default_rng(1).integers(0, m.n_vocab, n_tok).tolist()
    ctx.eval(ids, True)
    return np.asarray(ctx.logits())


def mean_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over rows of KL(softmax(p) || softmax(q)), in nats."""
    lp = p_logits - p_logits.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    lq = q_logits - q_logits.max(1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(1, keepdims=True))
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


def _check_against_f32_copy(path: Path, tmp_path: Path) -> None:
    ref = tmp_path / "f32.gguf"
    requantize_gguf(path, ref, "f32", force=True)  # weights dequantised by gguf-py
    a, b = _logits(ref), _logits(path)
    rel = float(np.abs(a - b).max() / np.abs(a).max())
    kl = mean_kl(a, b)
    assert rel <= REL_BAR and kl <= KL_BAR, (rel, kl)


def test_mixed_file_runs_each_tensor_with_its_type(tmp_path: Path) -> None:
    p = tmp_path / "mixed.gguf"
    used = write_mixed(p)
    assert {t.name for t in LAYER_TYPES} | {"Q6_K"} <= set(used.values())
    m = _core.LlamaModel(str(p))
    types = {t["name"]: t["type_name"] for t in m.tensors}
    assert all(types[n] == t for n, t in used.items())
    _check_against_f32_copy(p, tmp_path)


@pytest.mark.parametrize("qtype", NEW_TYPES, ids=lambda t: t.name)
def test_all_matrices_of_one_new_type(tmp_path: Path, qtype: T) -> None:
    p = tmp_path / "one.gguf"
    write_mixed(p, emb_type=qtype, out_type=qtype, layer_types=[qtype], seed=int(qtype))
    _check_against_f32_copy(p, tmp_path)


def test_info_names_each_types_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "mixed.gguf"
    used = write_mixed(p)
    assert cli_main(["info", str(p), "--tensors"]) == 0
    report = json.loads(capsys.readouterr().out)
    r = gguf.GGUFReader(p)
    want: dict[str, int] = {}
    for t in r.tensors:
        want[t.tensor_type.name] = want.get(t.tensor_type.name, 0) + 1
    assert report["tensor_types"] == want
    want_n = dict(want)
    repack_on = os.environ.get("BLUELM_REPACK") != "0"
    isa = _core.isa()
    # every new type has an AVX2 kernel (the AVX-512 tables inherit it)
    for type_name, k in report["kernels"].items():
        assert k["isa"] == isa
        want = ("scalar",) if isa == "scalar" else ("simd", "scalar fallback")
        if isa.startswith("avx") and type_name in {t.name for t in NEW_TYPES}:
            want = ("simd",)
        if isa.startswith("neon") and type_name in {t.name for t in NEW_TYPES}:
            # every new type has a dotprod kernel (i8mm inherits it); baseline NEON has none
            want = ("scalar fallback",) if isa == "neon" else ("simd",)
        assert k["kernel"] in want, (type_name, k)
        if isa.startswith("avx512") and type_name in {"Q5_0", "Q5_1"} and repack_on:
            # every row count here is a multiple of 16: all run the rows-in-lanes
            # kernel (kernels/avx512/q5_x16.cpp)
            assert k["repacked"] == want_n[type_name], k
            assert k["layout"].startswith(type_name.lower() + "_x16"), k
    rows = {t["name"]: t for t in report["tensor_list"]}
    assert rows["token_embd.weight"]["role"] == "lookup"
    assert rows["output.weight"]["role"] == "matmul"
    assert rows["output_norm.weight"]["role"] == "vector"
    for name, type_name in used.items():
        assert rows[name]["type"] == type_name


def test_repacked_groups_give_the_file_layouts_logits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The row groups interleaved at load and the file layout (interleaved per
    # call) run the same tiles of the same table: identical logits.
    p = tmp_path / "kq.gguf"
    write_mixed(
        p, emb_type=T.Q6_K, out_type=T.Q6_K, layer_types=[T.Q4_K, T.Q5_K, T.Q6_K, T.Q5_0, T.Q5_1]
    )
    ids = np.random.default_rng(2).integers(0, 64, 24).tolist()

    def logits() -> tuple[np.ndarray, int]:
        m = _core.LlamaModel(str(p))
        out = []
        for n_tok in (24, 1):  # prefill tiles, then decode of one token
            ctx = _core.Context(m, 64, 16, 2, "f16")
            ctx.eval(ids[:n_tok], True)
            out.append(np.asarray(ctx.logits()).reshape(n_tok, -1))
        return np.concatenate(out), m.repacked_bytes

    packed, n_packed = logits()
    monkeypatch.setenv("BLUELM_REPACK", "0")
    plain, n_plain = logits()
    assert n_plain == 0
    if _core.isa().startswith("avx"):
        assert n_packed > 0
    assert np.array_equal(packed, plain)


def test_info_under_the_scalar_table(tmp_path: Path) -> None:
    p = tmp_path / "mixed.gguf"
    write_mixed(p)
    out = subprocess.run(
        [sys.executable, "-m", "bluelm_cpp.cli", "info", str(p)],
        env={**os.environ, "BLUELM_ISA": "scalar"},
        capture_output=True,
        text=True,
        check=True,
    )
    kernels = json.loads(out.stdout)["kernels"]
    assert kernels and all(
        k == {"isa": "scalar", "kernel": "scalar", "repacked": 0} for k in kernels.values()
    )


# --- bad files


def _expect_format_error(path: Path, *patterns: str) -> None:
    for load in (_core.LlamaModel, bluelm_cpp.Model):
        with pytest.raises(ModelFormatError) as e:
            load(str(path))
        for pat in patterns:
            assert pat in str(e.value), str(e.value)


def test_type_the_runtime_lacks_names_tensor_and_type(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    write_mixed(p)
    patch_tensor_info(p, "blk.0.ffn_down.weight", qtype=int(T.IQ2_XXS))
    _expect_format_error(p, "tensor 'blk.0.ffn_down.weight' has type 16 (IQ2_XXS)", "not support")


def test_row_width_not_a_multiple_of_the_block(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    used = write_mixed(p)
    assert used["blk.1.ffn_down.weight"] == "Q4_K"  # [512, 256] in ggml order
    patch_tensor_info(p, "blk.1.ffn_down.weight", dims=[384, 256])
    _expect_format_error(
        p,
        "tensor 'blk.1.ffn_down.weight' row length 384 is not a multiple of the Q4_K block size"
        " (256)",
    )


def test_block_count_larger_than_the_tensors_data(tmp_path: Path) -> None:
    p = tmp_path / "x.gguf"
    write_mixed(p)  # token_embd: Q4_K [256, 64], the first tensor's data
    patch_tensor_info(p, "token_embd.weight", dims=[256, 65])
    _expect_format_error(
        p,
        "tensor 'token_embd.weight' of shape [256, 65] needs 65 Q4_K blocks",
        "holds only 64 before tensor",
    )


# (type, byte offset of an fp16 scale field in its block)
SCALE_FIELDS = [
    (T.Q4_K, 0),
    (T.Q4_K, 2),
    (T.Q5_K, 2),
    (T.Q6_K, 208),
    (T.Q3_K, 108),
    (T.Q2_K, 80),
    (T.Q2_K, 82),
    (T.IQ4_XS, 0),
    (T.Q5_0, 0),
    (T.Q5_1, 2),
    (T.IQ4_NL, 0),
    (T.Q4_0, 0),
]


@pytest.mark.parametrize(("qtype", "offset"), SCALE_FIELDS, ids=lambda v: getattr(v, "name", v))
@pytest.mark.parametrize("bits", [0x7C00, 0xFE00], ids=["inf", "nan"])
def test_non_finite_scale_names_the_tensor(
    tmp_path: Path, qtype: T, offset: int, bits: int
) -> None:
    p = tmp_path / "x.gguf"
    write_mixed(p, layer_types=[qtype], emb_type=T.Q8_0, out_type=T.Q8_0)
    set_block_scale(p, "blk.1.ffn_up.weight", 5, offset, bits)
    want = f"tensor 'blk.1.ffn_up.weight' ({qtype.name}) has a non-finite scale in block 5"
    _expect_format_error(p, want)
