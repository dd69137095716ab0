"""Fidelity of a long prompt against exact arithmetic (issue 15).

The prefill may sum in another order than llama.cpp, so instead of bit-identity with
llama.cpp it is held to exact arithmetic: the logits of all 1024 positions of a long
prompt through the bundled SmolLM2-135M-Instruct Q4_1 file, against those of an F32 copy
of the file whose weights gguf-py dequantised (built here; run with an F32 KV cache, the
path that matches transformers within 1e-4), must reach a mean KL divergence of at most
0.012 and a top-1 agreement of at least 88%, and be no worse than llama.cpp's own figures
on the same test (recorded by tests/data/record_long_prompt_fidelity.py with
llama-cpp-python, flash attention off, its default, and on; top-1 within the
spread llama.cpp shows between those two paths). The INT8 cache is held to the
absolute bars.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
import long_prompt_fidelity as lpf  # noqa: E402

RECORD = json.loads(lpf.RECORD.read_text(encoding="utf-8"))
IDS: list[int] = RECORD["prompt_ids"]
MAX_MEAN_KL = 0.012
MIN_TOP1 = 0.88


@pytest.fixture(scope="module")
def f32_logits(smollm2_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import bluelm_cpp

    if smollm2_file.name != RECORD["model"]:
        pytest.skip(f"{smollm2_file.name} is not the recorded {RECORD['model']}")
    path = tmp_path_factory.mktemp("fidelity") / "smollm2-f32.gguf"
    lpf.write_f32_copy(smollm2_file, path)
    m = bluelm_cpp.Model(path, n_ctx=len(IDS), n_threads=2, kv_type="f32")
    try:
        yield np.asarray(m.eval_logits(IDS, all_positions=True), np.float32)
    finally:
        m.close()
        path.unlink()


def _run(path: Path, kv_type: str) -> np.ndarray:
    import bluelm_cpp

    m = bluelm_cpp.Model(path, n_ctx=len(IDS), n_threads=2, kv_type=kv_type)
    try:
        assert m.tokenize(lpf.prompt_text())[: len(IDS)] == IDS
        return np.asarray(m.eval_logits(IDS, all_positions=True), np.float32)
    finally:
        m.close()


# llama.cpp's runs with an F16 KV cache (flash attention off, its default, and on).
F16_RUNS = ("n_batch128", "n_batch128_flash_attn", "n_batch512")


def test_long_prompt_close_to_exact_arithmetic(smollm2_file: Path, f32_logits: Any) -> None:
    got = lpf.figures(_run(smollm2_file, "f16"), f32_logits)
    theirs = {k: RECORD["llamacpp"][k] for k in F16_RUNS}
    print(f"ours (F16 KV): {got}")
    for name, fig in theirs.items():
        print(f"llama.cpp {name}: {fig}")
    assert got["mean_kl"] <= MAX_MEAN_KL and got["top1"] >= MIN_TOP1, got
    # No worse than llama.cpp with an F16 cache: mean KL at most that of its
    # worse attention path. Top-1 agreement moves by a few of the 1024
    # positions between two equally exact orders of arithmetic (llama.cpp's two
    # paths differ by 6; ours with an F32 and an F16 cache by about as many), so
    # it may lie below llama.cpp's worse path by at most that spread.
    kl = [f["mean_kl"] for f in theirs.values()]
    top1 = [f["top1"] for f in theirs.values()]
    assert got["mean_kl"] <= max(kl), (got, theirs)
    assert got["top1"] >= min(top1) - (max(top1) - min(top1)), (got, theirs)


def test_long_prompt_int8_kv(smollm2_file: Path, f32_logits: Any) -> None:
    # The paper's INT8 cache: held to the absolute bars.
    got = lpf.figures(_run(smollm2_file, "q8_0"), f32_logits)
    print(f"ours (INT8 KV): {got}")
    assert got["mean_kl"] <= MAX_MEAN_KL and got["top1"] >= MIN_TOP1, got
