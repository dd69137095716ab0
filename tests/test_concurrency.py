"""Concurrency and interruption: several models in several threads give the
single-threaded results; one model shared by threads serialises its requests
(and refuses re-entry from the thread that holds an open stream, and direct
concurrent use of a native context); a KeyboardInterrupt during generation
returns control at once and leaves the model giving a fresh model's output.

References are this runtime's own single-threaded greedy outputs on a fresh
model (greedy decoding is deterministic), which tests/test_llamacpp_parity.py
ties to llama.cpp.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import bluelm_cpp
from bluelm_cpp import _core
from bluelm_cpp.errors import BlueLMError, InvalidArgumentError

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "1, 2, 3, 4,",
]
N_TOKENS = 8


def _load(path: Path, n_ctx: int = 256) -> bluelm_cpp.Model:
    return bluelm_cpp.Model(path, n_ctx=n_ctx, n_threads=1)


@pytest.fixture(scope="module")
def reference(smollm2_file: Path) -> dict[str, str]:
    """Each prompt's greedy continuation, one fresh model per prompt, one thread."""
    out = {}
    for p in PROMPTS:
        with _load(smollm2_file) as m:
            out[p] = m.generate(p, N_TOKENS, temperature=0)
    assert len(set(out.values())) == len(PROMPTS)  # distinct, so mix-ups would show
    return out


def _run_threads(n: int, work) -> list[Any]:
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    return results


def test_models_in_threads_match_single_threaded(
    smollm2_file: Path, reference: dict[str, str]
) -> None:
    models = [_load(smollm2_file) for _ in PROMPTS]
    try:
        barrier = threading.Barrier(len(PROMPTS))

        def work(i: int) -> list[str]:
            barrier.wait()
            return [models[i].generate(PROMPTS[i], N_TOKENS, temperature=0) for _ in range(2)]

        results = _run_threads(len(PROMPTS), work)
    finally:
        for m in models:
            m.close()
    for p, r in zip(PROMPTS, results):
        assert r == [reference[p]] * 2


def test_shared_model_serialises_requests(
    smollm2: bluelm_cpp.Model, reference: dict[str, str]
) -> None:
    barrier = threading.Barrier(len(PROMPTS) * 2)

    def work(i: int) -> str:
        p = PROMPTS[i % len(PROMPTS)]
        barrier.wait()
        if i % 2:
            return "".join(smollm2.generate(p, N_TOKENS, temperature=0, stream=True))
        return smollm2.generate(p, N_TOKENS, temperature=0)

    results = _run_threads(len(PROMPTS) * 2, work)
    for i, r in enumerate(results):
        assert r == reference[PROMPTS[i % len(PROMPTS)]]


def test_open_stream_refuses_reentry_in_same_thread(smollm2: bluelm_cpp.Model) -> None:
    stream = smollm2.generate(PROMPTS[0], N_TOKENS, temperature=0, stream=True)
    next(iter(stream))
    with pytest.raises(BlueLMError, match="unfinished generation"):
        smollm2.generate(PROMPTS[1], 2, temperature=0)
    stream.close()  # releases the model
    assert smollm2.generate(PROMPTS[1], 2, temperature=0)


def test_native_context_refuses_concurrent_use(smollm2_file: Path) -> None:
    lm = _core.LlamaModel(str(smollm2_file))
    ctx = _core.Context(lm, 512, 512, 1, "f16")
    long_prompt = [(7 * i) % 40000 + 100 for i in range(500)]
    worker = threading.Thread(target=ctx.eval, args=(long_prompt,))
    refused = False
    worker.start()
    try:
        while worker.is_alive() and not refused:
            try:
                ctx.truncate(0)
            except InvalidArgumentError as e:
                assert "already in use by another thread" in str(e)
                refused = True
            if not refused:
                # the eval had not started yet (or just ended): the truncate was legal
                time.sleep(0.001)
    finally:
        worker.join()
    assert refused, "the eval (GIL released) never overlapped a concurrent call"


def test_interrupt_from_stream_consumer(smollm2_file: Path, reference: dict[str, str]) -> None:
    with _load(smollm2_file) as m:
        got: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            for piece in m.generate(PROMPTS[2], 200, temperature=0, stream=True):
                got.append(piece)
                if len(got) == 3:
                    raise KeyboardInterrupt
        assert got
        # The abandoned stream released the model; output is a fresh model's.
        assert m.generate(PROMPTS[0], N_TOKENS, temperature=0) == reference[PROMPTS[0]]
        assert m.generate(PROMPTS[2], N_TOKENS, temperature=0) == reference[PROMPTS[2]]


@pytest.mark.parametrize("when_s", [0.0, 0.05, 0.3])
def test_keyboard_interrupt_returns_at_once(
    smollm2_file: Path, reference: dict[str, str], when_s: float
) -> None:
    """Ctrl-C (interrupt_main from a timer) during prefill or decoding."""
    with _load(smollm2_file, n_ctx=1024) as m:
        long_prompt = " ".join(["lorem ipsum dolor sit amet"] * 40)  # 2-3 prefill chunks
        assert 200 < len(m.tokenize(long_prompt)) < 500
        m.generate(PROMPTS[1], 2, temperature=0)  # warm caches and code paths
        fired = threading.Event()
        fired_at = [0.0]

        def fire() -> None:
            fired_at[0] = time.perf_counter()
            fired.set()
            _thread.interrupt_main()

        timer = threading.Timer(when_s, fire)
        start = time.perf_counter()
        try:
            with pytest.raises(KeyboardInterrupt):
                timer.start()  # inside: the interrupt may land while the timer starts
                m.generate(long_prompt, 1000, temperature=0)
                time.sleep(5)  # finished before the timer: still take the interrupt here
        finally:
            timer.cancel()
        stopped = time.perf_counter()
        assert fired.is_set()
        # One prefill chunk or one decode step at most: well under a second on
        # a quiet machine, 3 s allows a busy CI; ASan makes a chunk ~20x slower.
        bound = 60.0 if os.environ.get("BLUELM_SANITIZED") == "1" else 3.0
        late = stopped - fired_at[0]
        assert late < bound, f"interrupt honoured after {late:.2f} s"
        assert stopped - start < when_s + bound + 2.0
        for p in (PROMPTS[0], PROMPTS[3]):
            assert m.generate(p, N_TOKENS, temperature=0) == reference[p]
