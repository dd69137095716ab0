"""One-token decode splits each matrix's rows across the pool's threads, and a
thread waiting between jobs reads the start of its next part into its cache
(ThreadPool::set_warm): neither may change a bit. The reference is the same
file decoded on one thread (no split, no read-ahead), whose logits
test_kquant_model.py checks against gguf-py's F32 copy of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kquant_files import write_mixed

from bluelm_cpp import _core


def _decode(m: _core.LlamaModel, n_threads: int, steps: int = 8) -> np.ndarray:
    ctx = _core.Context(m, 64, 16, n_threads, "f32")
    ctx.eval([1, 5, 9, 2], False)
    rows = [np.asarray(ctx.logits(), dtype=np.float32).ravel()]
    for _ in range(steps):
        ctx.eval([int(rows[-1].argmax())], False)
        rows.append(np.asarray(ctx.logits(), dtype=np.float32).ravel())
    return np.stack(rows)


@pytest.mark.parametrize("repack", ["1", "0"], ids=["packed", "file_layout"])
def test_decode_logits_do_not_depend_on_the_thread_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repack: str
) -> None:
    p = tmp_path / "mixed.gguf"
    write_mixed(p, n_layer=3)  # every weight type, a Q6_K output
    monkeypatch.setenv("BLUELM_REPACK", repack)
    m = _core.LlamaModel(str(p))
    ref = _decode(m, 1)
    assert np.isfinite(ref).all()
    for n_threads in (2, 3):
        got = _decode(m, n_threads)
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), n_threads
