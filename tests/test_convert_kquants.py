"""The converter's llama-quantize outtypes against llama.cpp.

For each mix and each trained tiny model (tests/data/trained_*: rows of 128,
so every K type falls back to its 32-block replacement as llama-quantize
makes it, and trained_llama_k, rows of 256/512, true K-quant blocks), the
converted file must hold exactly what llama-quantize writes from the F32
conversion (every tensor's type, and the tensor data bit for bit), and the
16 tokens llama.cpp greedy-decodes from it must equal ours (or, where they
differ, the first difference must be a near tie of our logits). llama.cpp's
side is recorded by tests/data/record_llamacpp_mixes.py and checked live when
llama-cpp-python is installed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from llamacpp_greedy import greedy_llamacpp

from bluelm_cpp import Model, _core
from bluelm_cpp.convert import convert_checkpoint

DATA = Path(__file__).resolve().parent / "data"
REC = json.loads((DATA / "llamacpp_mixes.json").read_text())
MODELS = ["trained_llama", "trained_qwen2", "trained_llama_k"]
MIXES = ["q4_k_m", "q5_k_m", "q6_k", "q5_0", "q5_1", "q3_k_m", "q2_k", "iq4_nl", "iq4_xs"]
NEAR_TIE = 0.05  # top-1 minus top-2 logit, where a 1-ulp-scale difference may flip the argmax


def data_record(path: Path) -> tuple[dict[str, str], str]:
    """Each tensor's type and the SHA-256 of all tensor data, tensors in name order
    (as tests/data/record_llamacpp_mixes.py computes it with gguf-py's reader)."""
    tensors = _core.GGUFFile(str(path)).tensors
    data = np.memmap(path, np.uint8, mode="r")
    h = hashlib.sha256()
    for t in sorted(tensors, key=lambda t: t["name"]):  # llama-quantize orders by layer
        h.update(data[t["offset"] : t["offset"] + t["nbytes"]])
    return {t["name"]: t["type_name"] for t in tensors}, h.hexdigest()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("kquant_gguf")
    paths = {}
    for name in MODELS:
        for mix in MIXES:
            p = out / f"{name}.{mix}.gguf"
            convert_checkpoint(DATA / name, p, mix, progress=False)
            paths[name, mix] = p
    return paths


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("name", MODELS)
def test_converted_file_is_what_llama_quantize_writes(
    converted: dict[tuple[str, str], Path], name: str, mix: str
) -> None:
    want = REC["models"][name][mix]
    types, digest = data_record(converted[name, mix])
    assert types == want["types"]
    assert digest == want["sha256"]


def _greedy_with_margins(path: Path, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    """Greedy tokens as llama.cpp's loop makes them (the prompt as one batch, then one
    token per step, no stop), with our top-1 minus top-2 logit at each step."""
    toks: list[int] = []
    margins: list[float] = []
    with Model(str(path), kv_type="f32", n_ctx=256) as m:
        ctx = m._require_open()
        ctx.eval(list(prompt), False)
        for _ in range(n):
            logits = np.asarray(ctx.logits()).reshape(-1)
            top2 = np.sort(logits)[-2:]
            margins.append(float(top2[1] - top2[0]))
            toks.append(int(np.argmax(logits)))
            ctx.eval([toks[-1]], False)
    return toks, margins


def _assert_same_or_near_tie(ours: list[int], theirs: list[int], margins: list[float]) -> None:
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            why = f"token {i}: ours {a}, llama.cpp {b}, our top-2 margin {margins[i]:.3f}"
            assert margins[i] < NEAR_TIE, why
            return


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("name", MODELS)
def test_greedy_tokens_equal_llama_cpp(
    converted: dict[tuple[str, str], Path], name: str, mix: str
) -> None:
    prompt = np.load(DATA / name / "reference.npz")["greedy_prompt"].tolist()
    theirs = REC["models"][name][mix]["greedy"]
    assert len(theirs) == REC["greedy_tokens"] == 16
    ours, margins = _greedy_with_margins(converted[name, mix], prompt, 16)
    _assert_same_or_near_tie(ours, theirs, margins)


@pytest.mark.parametrize("mix", ["q4_k_m", "q3_k_m", "iq4_xs"])
def test_llama_cpp_live_loads_and_agrees(converted: dict[tuple[str, str], Path], mix: str) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    path = converted["trained_llama_k", mix]
    prompt = np.load(DATA / "trained_llama_k" / "reference.npz")["greedy_prompt"].tolist()
    theirs = greedy_llamacpp(path, prompt, 16)
    assert theirs == REC["models"]["trained_llama_k"][mix]["greedy"]
    ours, margins = _greedy_with_margins(path, prompt, 16)
    _assert_same_or_near_tie(ours, theirs, margins)
