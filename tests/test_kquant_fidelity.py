"""Fidelity of the K-quant, Q5 and IQ4 kernels on a real model (issue 12).

For each llama-quantize mix the test builds the file itself: the bundled
SmolLM2-135M-Instruct Q4_1, dequantised by gguf-py and re-quantised by the C++
quantiser with llama-quantize's per-tensor policy (requantize_gguf). The file
must be what ``llama-quantize --allow-requantize`` writes from the same Q4_1
file (every tensor's type and all tensor data bit for bit, as recorded by
tests/data/record_llamacpp_mixes.py; e.g. Q4_K_M = Q5_0 x166, Q4_K x16, Q8_0
x15, Q6_K x14, since SmolLM2's rows of 576 are not multiples of 256). Its logits
over a 96-token text are compared with
those of an F32 copy of the SAME file whose weights were dequantised by gguf-py:
the difference is the runtime's arithmetic (8-bit activations, float sums),
not the quantisation. Bars: mean KL <= 0.012 and top-1 agreement >= 88%
(this runtime's Q4_0 / Q8_0 / Q4_1 measure 0.0059 / 0.91, 0.0043 / 0.97,
0.0046 / 0.97 on such a test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_convert_kquants import REC, data_record
from test_kquant_model import mean_kl

import bluelm_cpp
from bluelm_cpp.convert.requantize import requantize_gguf

MIXES = ["q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "q2_k", "iq4_xs", "iq4_nl", "q5_0", "q5_1"]
KL_BAR, TOP1_BAR = 0.012, 0.88
N_TOKENS = 96

TEXT = (
    "The lighthouse stood at the end of a narrow spit of rock, and for nearly a hundred "
    "years its keepers had written the weather into a leather book each evening. When the "
    "last keeper retired, the town council argued for months about what to do with the "
    "building. Some wanted a museum, others a small hotel, and a few simply wanted it left "
    "alone so that the gulls could have it. In the end a group of students offered to "
    "restore the lamp and to keep the old book going, one line a day, as long as the light "
    "still turned."
)


def _logits(path: Path) -> np.ndarray:
    with bluelm_cpp.Model(path, n_ctx=128, n_batch=N_TOKENS, n_threads=2) as m:
        ids = m.tokenize(TEXT)[:N_TOKENS]
        assert len(ids) == N_TOKENS
        return np.asarray(m.eval_logits(ids, all_positions=True))


@pytest.fixture(scope="module")
def smollm2_f32(smollm2_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled Q4_1 dequantised by gguf-py once (the same floats every mix
    would get from the Q4_1 file itself, without dequantising it nine times)."""
    out = tmp_path_factory.mktemp("smollm2") / "f32.gguf"
    requantize_gguf(smollm2_file, out, "f32")
    return out


@pytest.mark.parametrize("mix", MIXES)
def test_mix_within_activation_error_of_its_f32_copy(
    smollm2_f32: Path, tmp_path: Path, mix: str
) -> None:
    qfile, ffile = tmp_path / f"{mix}.gguf", tmp_path / f"{mix}.f32.gguf"
    types = requantize_gguf(smollm2_f32, qfile, mix)
    want = REC["models"]["smollm2_q4_1"][mix]
    assert data_record(qfile) == (want["types"], want["sha256"])
    requantize_gguf(qfile, ffile, "f32")
    try:
        q, f = _logits(qfile), _logits(ffile)
    finally:
        ffile.unlink()
    kl = mean_kl(f, q)
    top1 = float((q.argmax(1) == f.argmax(1)).mean())
    print(f"{mix}: mean KL {kl:.4f}, top-1 {top1:.3f}, types {sorted(set(types.values()))}")
    assert kl <= KL_BAR and top1 >= TOP1_BAR, (mix, kl, top1)
