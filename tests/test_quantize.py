"""The C++ block codecs against references written by others.

* Quantisers (``_core.quantize``): bit-identical to llama.cpp's
  ``ggml_quantize_chunk`` without an importance matrix (what llama-quantize
  writes) and, for Q8_K, to ``quantize_row_q8_K_ref``, on the recording of
  tests/data/record_quantize.py; live against llama.cpp's library on fresh
  inputs when a llama.cpp build is present.
* Dequantisation (``_core.dequantize``, the runtime's ``dequantize_row``):
  bit-identical to gguf-py's ``gguf.quants.dequantize`` for every type, on
  quantised data and on random block bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from bluelm_cpp import _core
from bluelm_cpp.errors import InvalidArgumentError

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
from record_quantize import TYPES, Ggml, find_lib  # noqa: E402

RECORDING = np.load(DATA / "llamacpp_quantize.npz")
DEQUANT_TYPES = (T.Q4_0, T.Q4_1, T.Q8_0, *TYPES)


def _diff(ours: np.ndarray, ref: np.ndarray) -> str:
    bad = np.nonzero(~(ours == ref).all(axis=1))[0]
    return f"{len(bad)} of {len(ref)} rows differ (first: {bad[:8].tolist()})"


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_quantize_matches_llamacpp_recording(qtype: T) -> None:
    x, ref = RECORDING["x"], RECORDING[qtype.name]
    ours = _core.quantize(int(qtype), x)
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref), _diff(ours, ref)


def test_q8_k_matches_llamacpp_recording() -> None:
    x, ref = RECORDING["x"], RECORDING["Q8_K"]
    ours = _core.quantize(int(T.Q8_K), x)
    assert np.array_equal(ours, ref), _diff(ours, ref)


def test_recording_covers_real_weights() -> None:
    # 66 synthetic rows, then the SmolLM2 rows (the recording must have been made with them)
    assert RECORDING["x"].shape == (69, 512)
    assert np.abs(RECORDING["x"][63:]).max() > 0


_LIB = find_lib()


@pytest.mark.skipif(_LIB is None, reason="no llama.cpp build (libggml-base) here")
@pytest.mark.parametrize("qtype", (*TYPES, T.Q8_K), ids=lambda t: t.name)
def test_quantize_matches_llamacpp_live(qtype: T) -> None:
    assert _LIB is not None
    g = Ggml(_LIB)
    rng = np.random.default_rng(7)
    x = (rng.standard_t(4, (64, 1024)) * rng.uniform(1e-3, 10, (64, 1))).astype(np.float32)
    ref = g.quantize_q8_k(x) if qtype == T.Q8_K else g.quantize(qtype, x)
    ours = _core.quantize(int(qtype), x)
    assert np.array_equal(ours, ref), _diff(ours, ref)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_quantize_threads_and_row_splits_give_the_same_bytes(qtype: T) -> None:
    x = RECORDING["x"]
    one = _core.quantize(int(qtype), x, 1)
    assert np.array_equal(_core.quantize(int(qtype), x, 3), one)
    assert np.array_equal(_core.quantize(int(qtype), x[5]), one[5])


def _random_blocks(qtype: T, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random block bytes whose fp16 scale fields are finite (gguf-py and the
    runtime then compute ordinary numbers; NaN payloads are not compared)."""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    offsets = {
        T.Q4_0: (0,),
        T.Q4_1: (0, 2),
        T.Q8_0: (0,),
        T.Q5_0: (0,),
        T.Q5_1: (0, 2),
        T.IQ4_NL: (0,),
        T.Q2_K: (80, 82),
        T.Q3_K: (108,),
        T.Q4_K: (0, 2),
        T.Q5_K: (0, 2),
        T.Q6_K: (208,),
        T.IQ4_XS: (0,),
    }[qtype]
    for off in offsets:
        h = rng.standard_normal(n_blocks).astype(np.float16)
        b[:, off : off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    return b


@pytest.mark.parametrize("qtype", DEQUANT_TYPES, ids=lambda t: t.name)
def test_dequantize_matches_gguf_py(qtype: T) -> None:
    rng = np.random.default_rng(int(qtype))
    datasets = [_random_blocks(qtype, 300, rng)]
    if _core.can_quantize(int(qtype)):
        datasets.append(_core.quantize(int(qtype), RECORDING["x"]))
    for raw in datasets:
        ours = _core.dequantize(int(qtype), raw)
        ref = gguf.quants.dequantize(raw, qtype).reshape(-1)
        assert ours.shape == ref.shape
        bad = np.nonzero(ours.view(np.uint32) != ref.view(np.uint32))[0]
        first = bad[:5]
        assert bad.size == 0, f"{bad.size} differ, first at {first}: {ours[first]} vs {ref[first]}"


def test_quantize_round_trip_error_is_small() -> None:
    # Not a reference check: a sanity bound on each type's relative RMS error.
    x = RECORDING["x"][:6]  # the normal rows
    bound = {
        "Q2_K": 0.35,
        "Q3_K": 0.2,
        "IQ4_NL": 0.12,
        "IQ4_XS": 0.12,
        "Q4_K": 0.12,
        "Q5_0": 0.06,
        "Q5_1": 0.06,
        "Q5_K": 0.06,
        "Q6_K": 0.03,
    }
    for t in TYPES:
        y = _core.dequantize(int(t), _core.quantize(int(t), x)).reshape(x.shape)
        rel = float(np.sqrt(((y - x) ** 2).mean() / (x**2).mean()))
        assert rel < bound[t.name], (t.name, rel)


def test_quantize_and_dequantize_refuse_bad_arguments() -> None:
    x = np.ones((2, 256), np.float32)
    with pytest.raises(InvalidArgumentError, match="cannot quantise to Q8_0"):
        _core.quantize(int(T.Q8_0), x)
    with pytest.raises(InvalidArgumentError, match="unknown tensor type 99"):
        _core.quantize(99, x)
    with pytest.raises(InvalidArgumentError, match="96 values is not a whole number of Q4_K"):
        _core.quantize(int(T.Q4_K), np.ones((2, 96), np.float32))
    with pytest.raises(InvalidArgumentError, match="1-D or 2-D"):
        _core.quantize(int(T.Q4_K), np.ones((2, 2, 256), np.float32))
    with pytest.raises(InvalidArgumentError, match="number of Q6_K blocks of 210 bytes"):
        _core.dequantize(int(T.Q6_K), np.zeros(211, np.uint8))
