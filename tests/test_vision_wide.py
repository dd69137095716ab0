"""The int8 encoder at so400m's width (C 1152, F 4304, 729 tokens a patch).

The tiny recorded models fit their tokens in one of the int8 gemm's token
chunks; at this width a batch of two patches spans several, so the chunk
edges and the split of chunks between threads are exercised. Checked
against the numpy oracle (tests/vision_oracle.py, float64 over the same file's
dequantised weights) with the bar of the Q8_0 fidelity tests (cosine >=
0.999), here for every token (measured: at least 0.99982), and bit for bit
across thread counts and batch sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import vision_oracle as oracle
from compare import cosine
from vision_gguf_writer import SO400M, random_tensors, write_vision_gguf

from bluelm_cpp import _core

WIDE = dict(SO400M, layers=1)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wide") / "wide_q8_0.gguf"
    write_vision_gguf(path, WIDE, random_tensors(WIDE), "q8_0")
    return path


def test_wide_int8_encoder_matches_oracle_and_is_thread_invariant(wide: Path) -> None:
    px = np.random.default_rng(5).uniform(-1, 1, (3, 3, 384, 384)).astype(np.float32)
    vm = _core.VisionModel(str(wide))
    got = vm.encode_features(px, 2, batch_size=3)
    keys, t, _ = oracle.read_gguf(wide)
    want = oracle.encode(keys, t, px[:2, :, :378, :378])  # 27 patches of 14: 378 of 384 pixels
    for i in range(2):  # every token (a row the quantisation missed would stand out)
        worst = min(cosine(got[i, j], want[i, j]) for j in range(want.shape[1]))
        assert worst >= 0.999, (i, worst)
    for threads, batch in ((1, 3), (3, 2), (2, 1)):
        again = vm.encode_features(px, threads, batch_size=batch)
        assert np.array_equal(again, got), (threads, batch)
