"""Leak check: loading and freeing the SmolLM2 GGUF many times, with a short
generation in between, releases the file mapping and descriptor every time and
keeps resident memory flat.

Bound: after a warm-up (allocator arenas, lazily built kernel tables, Python
caches), resident memory may grow by at most LEAK_BOUND_MB over the remaining
cycles. One cycle allocates about 0.2 MB of logits, a KV cache of 0.2 to 1 MB
and, through the mapping, touches the whole 90 MB file, so a leak of any of
those per cycle exceeds the bound many times over (a 0.2 MB leak x 480 cycles
is 96 MB), while the growth measured over 500 cycles (after 20 of warm-up)
was +0.00 MB for the native cycles and +2.4 MB for full ``Model`` cycles
(allocator and Python-cache noise), so 16 MB leaves room for noise and still
catches any per-cycle leak above ~35 KB.

Cycles: 500 loads of the native model (the C++ reader, weights, context,
sampler) and, since the Python tokenizer build makes a full ``Model`` take
~0.4 s, 40 full ``Model`` loads in CI; set BLUELM_LEAK_MODEL_CYCLES=500 for
the full count. Under ASan (BLUELM_SANITIZED=1) RSS is meaningless
(quarantine), so the cycles are fewer and LeakSanitizer does the judging.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

import bluelm_cpp
from bluelm_cpp import _core

SANITIZED = os.environ.get("BLUELM_SANITIZED") == "1"
LEAK_BOUND_MB = 16.0
WARMUP = 20


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _mappings_of(path: Path) -> int:
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith(real))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")


def _cycles(kind_default: int, env: str) -> int:
    n = int(os.environ.get(env, kind_default))
    return min(n, 2 * WARMUP) if SANITIZED else n


def _check(growth: list[float], path: Path, fds0: int, maps0: int, label: str) -> None:
    gc.collect()
    # maps0: mappings held before the cycles (a session fixture's open model).
    assert _mappings_of(path) == maps0, f"{label}: the model file is still mapped"
    assert _open_fds() <= fds0, f"{label}: file descriptors leaked"
    if SANITIZED:
        return
    rise = growth[-1] - growth[WARMUP - 1]
    print(
        f"{label}: {len(growth)} cycles, RSS after warm-up {growth[WARMUP - 1]:.1f} MB, "
        f"at end {growth[-1]:.1f} MB, growth {rise:+.2f} MB (bound {LEAK_BOUND_MB} MB)"
    )
    assert rise < LEAK_BOUND_MB, (
        f"{label}: RSS grew by {rise:.1f} MB over {len(growth) - WARMUP} cycles"
    )


def test_native_load_free_500(smollm2_file: Path) -> None:
    n = _cycles(500, "BLUELM_LEAK_NATIVE_CYCLES")
    gc.collect()
    fds0, maps0 = _open_fds(), _mappings_of(smollm2_file)
    rss: list[float] = []
    first = None
    for i in range(n):
        lm = _core.LlamaModel(str(smollm2_file))
        ctx = _core.Context(lm, 32, 32, 1, "f16")
        ctx.eval([1, 504, 3458, 314])
        s = _core.Sampler(_core.SamplingParams(repeat_penalty=1.1, seed=i))
        tok = s.sample(ctx)
        ctx.eval([tok])
        logits = ctx.logits()
        if first is None:
            first = logits.copy()
        elif i % 50 == 0:
            assert ctx.n_past == 5
        del ctx, lm, s, logits
        rss.append(_rss_mb())
    assert first is not None and np.isfinite(first).all()
    _check(rss, smollm2_file, fds0, maps0, "native")


def test_model_load_free(smollm2_file: Path) -> None:
    n = _cycles(40, "BLUELM_LEAK_MODEL_CYCLES")
    assert n > WARMUP
    gc.collect()
    fds0, maps0 = _open_fds(), _mappings_of(smollm2_file)
    rss: list[float] = []
    outputs = set()
    for _ in range(n):
        m = bluelm_cpp.Model(smollm2_file, n_ctx=64, n_threads=1)
        outputs.add(m.generate("The capital of France is", 2, temperature=0))
        m.close()
        del m
        rss.append(_rss_mb())
    assert len(outputs) == 1  # every fresh model answers the same
    _check(rss, smollm2_file, fds0, maps0, "Model")
