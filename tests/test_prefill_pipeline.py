"""The prefill scheduler (csrc/runtime) and the image prefill layer (bluelm_cpp/image_prefill.py).

Runs on the tiny BlueLM-V model of tests/data (random weights, PyTorch
reference recorded by tests/data/make_tiny_vision.py), converted at F32.
The overlapped and sequential paths must agree bit for bit; both must agree
with the recorded PyTorch logits; faults (cancel, KeyboardInterrupt, an
encoder error, two threads) must leave the context usable.
"""

from __future__ import annotations

import _thread
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bluelm_cpp import _core
from bluelm_cpp.convert.vision import convert_vision_checkpoint
from bluelm_cpp.errors import CancelledError, InvalidArgumentError, ModelFileError
from bluelm_cpp.image_prefill import ImagePrefiller

DATA = Path(__file__).parent / "data"
IMAGE_ID = 5  # tiny_bluelm_v's <image> token (tests/data/VISION_README.md)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("prefill") / "tiny_bluelm_v_f32.gguf"
    convert_vision_checkpoint(
        DATA / "tiny_bluelm_v", p, outtype="f32", vision_outtype="f32", progress=False
    )
    return p


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return dict(np.load(DATA / "tiny_bluelm_v" / "reference.npz"))


def split_prompt(ids: np.ndarray) -> tuple[list[int], list[int]]:
    """Text before and after the run of <image> placeholders."""
    where = np.flatnonzero(ids == IMAGE_ID)
    return ids[: where[0]].tolist(), ids[where[-1] + 1 :].tolist()


def greedy(ctx, n: int) -> list[int]:
    out = []
    for _ in range(n):
        t = int(np.argmax(ctx.logits()))
        out.append(t)
        ctx.eval([t])
    return out


@pytest.mark.parametrize("n_batch,vision_batch", [(3, 1), (4, 2), (128, 4)])
def test_pipelined_equals_sequential_and_pytorch(
    tiny: Path, ref: dict, n_batch: int, vision_batch: int
) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    for k in range(3):
        ids, px = ref[f"input_ids_{k}"], ref[f"pixel_values_{k}"]
        before, after = split_prompt(ids)
        segs = [("tokens", before), ("patches", px), ("tokens", after)]
        runs = {}
        for overlap in (False, True):
            ctx = _core.Context(lm, 256, n_batch, 1, "f32")
            st = ctx.prefill(
                segs, vm, overlap=overlap, n_threads_vision=1, vision_batch=vision_batch
            )
            assert st["n_rows"] == len(ids) == ctx.n_past
            assert st["n_patches"] == px.shape[0]
            logits = ctx.logits()
            runs[overlap] = (logits, greedy(ctx, 4))
        np.testing.assert_array_equal(runs[True][0], runs[False][0])
        assert runs[True][1] == runs[False][1]
        # The plain per-segment path (eval, eval_embeddings, eval) chunks the same way.
        ctx = _core.Context(lm, 256, n_batch, 1, "f32")
        ctx.eval(before)
        ctx.eval_embeddings(vm.encode(px, 1).reshape(-1, lm.n_embd))
        ctx.eval(after)
        np.testing.assert_array_equal(ctx.logits(), runs[True][0])
        # PyTorch reference (recorded): last position's logits within 1e-4 of the largest.
        want = ref[f"logits_{k}"][-1]
        assert np.abs(runs[True][0] - want).max() <= 1e-4 * np.abs(want).max()


def big_request(ref: dict, copies: int) -> tuple[list, int]:
    """One image repeated `copies` times, as separate images: a long prefill."""
    ids, px = ref["input_ids_0"], ref["pixel_values_0"]
    before, after = split_prompt(ids)
    segs: list = [("tokens", before)]
    for _ in range(copies):
        segs += [("patches", px), ("tokens", after)]
    return segs, len(before) + copies * (px.shape[0] * 9 + len(after))


def fresh_logits(lm, vm, segs: list, n_batch: int = 1) -> np.ndarray:
    # Same n_batch as the context compared, so the same chunks: a prompt chunk of
    # several rows takes the flash kernel, a one-row step attend (other bits).
    ctx = _core.Context(lm, 2048, n_batch, 1, "f32")
    ctx.prefill(segs, vm)
    return ctx.logits()


def test_cancel_mid_prefill_rolls_back(tiny: Path, ref: dict) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    ctx = _core.Context(lm, 2048, 1, 1, "f32")
    ctx.eval([0, 7, 8])  # a prefix the rollback must keep
    cancelled = False
    # At most 40 copies (1889 tokens): 60 overflowed n_ctx 2048 before a patch was
    # encoded, and when the prefill had won both earlier races the watcher thread
    # then waited for a patch forever (the suite hung).
    for copies in (8, 32, 40):
        segs, n = big_request(ref, copies)
        start = vm.n_patches_encoded

        def cancel_when_started(start: int = start) -> None:
            while vm.n_patches_encoded == start:
                time.sleep(0.0005)
            ctx.cancel()

        t = threading.Thread(target=cancel_when_started)
        t.start()
        try:
            ctx.prefill(segs, vm, n_threads_vision=1, vision_batch=1)
        except CancelledError:
            cancelled = True
        t.join()
        if cancelled:
            assert vm.n_patches_encoded - start < copies * 3  # it stopped part way
            break
        ctx.truncate(3)
    assert cancelled, "the prefill always finished before the cancel arrived"
    assert ctx.n_past == 3
    # Usable: the next request equals one on a fresh context with the same prefix.
    small = [("tokens", [0, 7, 8])] + big_request(ref, 1)[0]
    ctx.truncate(0)
    ctx.prefill(small, vm)
    np.testing.assert_array_equal(ctx.logits(), fresh_logits(lm, vm, small))


def test_keyboard_interrupt_mid_prefill_rolls_back(tiny: Path, ref: dict) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    ctx = _core.Context(lm, 2048, 1, 1, "f32")
    rolled_back = False
    # At most 40 copies (1889 tokens): 60 overflowed n_ctx 2048 before a patch was
    # encoded, and when the prefill had won both earlier races the watcher thread
    # then waited for a patch forever (the suite hung).
    for copies in (8, 32, 40):
        segs, n = big_request(ref, copies)
        start = vm.n_patches_encoded

        def interrupt_when_started(start: int = start) -> None:
            while vm.n_patches_encoded == start:
                time.sleep(0.0005)
            _thread.interrupt_main()

        t = threading.Thread(target=interrupt_when_started)
        t.start()
        try:
            try:
                ctx.prefill(segs, vm, n_threads_vision=1, vision_batch=1)
            finally:
                t.join()
            time.sleep(0.2)  # a late interrupt lands here
        except KeyboardInterrupt:
            pass
        # The interrupt may land after the prefill returned (then n_past == n); a
        # prefill it stopped must have rolled back completely, never part way.
        assert ctx.n_past in (0, n)
        if ctx.n_past == 0:
            rolled_back = True
            break
        ctx.truncate(0)
    assert rolled_back, "the prefill always finished before the interrupt arrived"
    small = big_request(ref, 1)[0]
    ctx.prefill(small, vm)
    np.testing.assert_array_equal(ctx.logits(), fresh_logits(lm, vm, small))


def test_encoder_thread_error_reaches_caller(tiny: Path, ref: dict, tmp_path: Path) -> None:
    path = tmp_path / "moving.gguf"
    shutil.copyfile(tiny, path)
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(path))
    segs = big_request(ref, 1)[0]
    ctx = _core.Context(lm, 2048, 4, 1, "f32")
    ctx.eval([0, 7])
    vm.release_weights()
    assert not vm.weights_loaded
    path.rename(tmp_path / "elsewhere.gguf")
    # The weights are re-read on the encoder's own thread, which fails there.
    with pytest.raises(ModelFileError, match="moving.gguf"):
        ctx.prefill(segs, vm, overlap=True)
    assert ctx.n_past == 2  # the text before the image was rolled back
    (tmp_path / "elsewhere.gguf").rename(path)
    ctx.truncate(0)
    ctx.prefill(segs, vm)
    np.testing.assert_array_equal(ctx.logits(), fresh_logits(lm, vm, segs, n_batch=4))


def test_two_threads_on_one_context_are_refused_clearly(tiny: Path, ref: dict) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    ctx = _core.Context(lm, 2048, 1, 1, "f32")
    segs, _ = big_request(ref, 40)
    errors: list[BaseException] = []
    started = threading.Event()

    def long_prefill() -> None:
        started.set()
        try:
            ctx.prefill(segs, vm, vision_batch=1)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=long_prefill)
    t.start()
    started.wait()
    while vm.n_patches_encoded == 0 and t.is_alive():
        time.sleep(0.0005)
    refused = False
    if t.is_alive():
        with pytest.raises(InvalidArgumentError, match="already in use"):
            ctx.prefill(big_request(ref, 1)[0], vm)
        refused = True
    t.join()
    assert not errors
    np.testing.assert_array_equal(ctx.logits(), fresh_logits(lm, vm, segs))
    if not refused:
        pytest.skip("the first prefill finished before the second thread could try")


def test_release_weights_then_reencode_is_identical(tiny: Path, ref: dict) -> None:
    vm = _core.VisionModel(str(tiny))
    px = ref["pixel_values_2"]
    first = vm.encode(px, 1)
    vm.release_weights()
    assert not vm.weights_loaded and vm.n_loads == 1
    again = vm.encode(px, 1)
    assert vm.weights_loaded and vm.n_loads == 2
    np.testing.assert_array_equal(first, again)


def test_prepare_image_cache_and_release(tiny: Path, ref: dict) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    px = ref["pixel_values_0"]
    before, after = split_prompt(ref["input_ids_0"])
    p = ImagePrefiller(_core.Context(lm, 512, 4, 1, "f32"), vm, release_vision=True)
    h = p.prepare(px)
    emb = h.result(timeout=60)
    assert emb.shape == (px.shape[0] * 9, lm.n_embd)
    assert vm.n_patches_encoded == px.shape[0]
    assert not vm.weights_loaded  # released after encoding
    assert p.prepare(px).done()  # cache hit: a finished handle, no encode
    st = p.prefill([before, h, after])
    assert st.n_patches_encoded == 0 and vm.n_patches_encoded == px.shape[0]
    prepared = p.ctx.logits()
    # The same request from raw patches on a fresh prefiller (encodes in the pipeline).
    q = ImagePrefiller(_core.Context(lm, 512, 4, 1, "f32"), vm)
    st2 = q.prefill([before, px, after])
    assert st2.n_patches_encoded == px.shape[0]
    np.testing.assert_array_equal(q.ctx.logits(), prepared)
    # An image given again as pixels is a cache hit too.
    q.reset()
    assert q.prefill([before, px, after]).n_patches_encoded == 0
    np.testing.assert_array_equal(q.ctx.logits(), prepared)


def test_second_turn_prefills_only_new_tokens(tiny: Path, ref: dict) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    px = ref["pixel_values_1"]
    before, after = split_prompt(ref["input_ids_1"])
    p = ImagePrefiller(_core.Context(lm, 512, 4, 1, "f32"), vm)
    n1 = p.prefill([before, px, after]).n_prefilled
    answer = greedy(p.ctx, 3)
    assert p.cached[-3:] == answer  # the session records what eval appends
    turn2 = [20, 21, 22, 23]
    st = p.prefill([before, px, after + answer + turn2])
    assert st.n_reused == n1 + len(answer) and st.n_prefilled == len(turn2)
    assert st.n_patches_encoded == 0
    fresh = ImagePrefiller(_core.Context(lm, 512, 4, 1, "f32"), vm)
    fresh.prefill([before, px, after + answer + turn2])
    want = fresh.ctx.logits()
    assert np.abs(p.ctx.logits() - want).max() <= 1e-4 * np.abs(want).max()


def test_bad_segments_are_clear_errors(tiny: Path, ref: dict) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    ctx = _core.Context(lm, 64, 4, 1, "f32")
    px = ref["pixel_values_0"]
    with pytest.raises(InvalidArgumentError, match="no vision model"):
        ctx.prefill([("patches", px)])
    with pytest.raises(InvalidArgumentError, match="shape"):
        ctx.prefill([("patches", px[:, :, :10])], vm)
    with pytest.raises(InvalidArgumentError, match="kind"):
        ctx.prefill([("audio", px)], vm)
    with pytest.raises(InvalidArgumentError, match="vocabulary"):
        ctx.prefill([("tokens", [10**6])], vm)
    from bluelm_cpp.errors import ContextOverflowError

    with pytest.raises(ContextOverflowError):
        ctx.prefill([("patches", np.concatenate([px] * 4))], vm)
    assert ctx.n_past == 0


# -- through the Model --------------------------------------------------------


def make_model(path: Path, **kw):
    from bluelm_cpp import Model

    return Model(path, n_ctx=2048, n_threads=1, n_batch=4, kv_type="f32", **kw)


def test_model_pipelined_equals_sequential_and_prepared(tiny: Path, ref: dict) -> None:
    img = ref["image_2"]
    prompt = "<image>\nWhat is in the image?"
    outs = []
    for kw in ({"pipeline": True}, {"pipeline": False}):
        m = make_model(tiny, **kw)
        outs.append(m.generate(prompt, images=[img], max_tokens=6, temperature=0))
        outs.append(m._ctx.logits())
    assert outs[0] == outs[2]
    np.testing.assert_array_equal(outs[1], outs[3])
    m = make_model(tiny, release_vision=True)
    h = m.prepare_image(img)
    h.result(timeout=60)
    assert not m.vision._vm.weights_loaded
    assert m.generate(prompt, images=[h], max_tokens=6, temperature=0) == outs[0]
    assert m.last_stats["n_patches_encoded"] == 0


def test_model_chat_second_turn_prefills_only_new_tokens(tiny: Path, ref: dict) -> None:
    m = make_model(tiny)
    part = {"type": "image", "image": ref["image_0"]}
    msgs = [{"role": "user", "content": [part, {"type": "text", "text": "\nDescribe it."}]}]
    first = m.chat(msgs, max_tokens=4, temperature=0)
    n1 = m.last_stats["n_prefilled"]
    assert m.last_stats["n_patches_encoded"] == 3
    msgs += [{"role": "assistant", "content": first}, {"role": "user", "content": "More?"}]
    m.chat(msgs, max_tokens=4, temperature=0)
    st = m.last_stats
    fresh = make_model(tiny)
    fresh.chat(msgs, max_tokens=1, temperature=0)
    total2 = fresh.last_stats["n_prefilled"]  # the whole turn-2 prompt, from scratch
    assert st["n_patches_encoded"] == 0
    assert st["n_reused"] >= n1 and st["n_reused"] + st["n_prefilled"] == total2


@pytest.mark.parametrize("how", ["cancel", "interrupt"])
def test_model_cancel_and_interrupt_leave_it_usable(tiny: Path, ref: dict, how: str) -> None:
    imgs = [ref["image_0"]] * 60  # 60 images, each encoded in the pipeline: a long prefill
    prompt = "<image>\n" * 60 + "What changed?"
    m = make_model(tiny, pipeline=True)
    n0 = m.vision._vm.n_patches_encoded

    def stop_when_started() -> None:
        while m.vision._vm.n_patches_encoded == n0:
            time.sleep(0.0005)
        m.cancel() if how == "cancel" else _thread.interrupt_main()

    t = threading.Thread(target=stop_when_started)
    t.start()
    finished = False
    try:
        try:
            m.generate(prompt, images=imgs, max_tokens=3, temperature=0)
            finished = True
        finally:
            t.join()
        time.sleep(0.2)  # a late interrupt lands here
    except (CancelledError, KeyboardInterrupt):
        pass
    assert not finished, "the prefill finished before it was stopped"
    assert m._ctx.n_past == len(m._cached) == 0
    small = "<image>\nWhat is it?"
    got = m.generate(small, images=[ref["image_1"]], max_tokens=5, temperature=0)
    want = make_model(tiny).generate(small, images=[ref["image_1"]], max_tokens=5, temperature=0)
    assert got == want


def test_model_two_threads_are_serialised(tiny: Path, ref: dict) -> None:
    m = make_model(tiny, pipeline=True)
    jobs = [("<image>\nA?", ref["image_0"]), ("<image>\nB?", ref["image_2"])] * 3
    want = [make_model(tiny).generate(p, images=[i], max_tokens=5, temperature=0) for p, i in jobs]
    got: dict[int, str] = {}

    def work(k: int) -> None:
        p, i = jobs[k]
        got[k] = m.generate(p, images=[i], max_tokens=5, temperature=0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[k] for k in range(len(jobs))] == want


def test_model_prepare_image_prefills_the_prefix_ahead(tiny: Path, ref: dict) -> None:
    img = ref["image_2"]
    prompt = "Look: <image>\nWhat is in the image?"
    want_m = make_model(tiny)
    want = want_m.generate(prompt, images=[img], max_tokens=6, temperature=0)
    total = want_m.last_stats["n_prefilled"]
    m = make_model(tiny, release_vision=True)
    h = m.prepare_image(img, "Look: <image>")
    assert h.kv_ready(timeout=60) and h.kv_error is None
    n_ahead = len(m._cached)
    assert n_ahead == len(m.tokenize("Look: ")) + h.n_rows  # BOS + text, then the rows
    got = m.generate(prompt, images=[h], max_tokens=6, temperature=0)
    assert got == want
    st = m.last_stats
    assert st["n_reused"] == n_ahead and st["n_reused"] + st["n_prefilled"] == total
    assert st["n_patches_encoded"] == 0


def test_model_prepare_image_chat_prefix_and_a_request_first(tiny: Path, ref: dict) -> None:
    img = ref["image_0"]
    q = {"type": "text", "text": "\nDescribe it."}
    msgs = [{"role": "user", "content": [{"type": "image", "image": img}, q]}]
    want = make_model(tiny).chat(msgs, max_tokens=4, temperature=0)
    m = make_model(tiny)
    h = m.prepare_image(img, [{"role": "user", "content": [{"type": "image", "image": None}]}])
    # The question may come before the KV-ahead step ran: either order is right.
    ask = [{"role": "user", "content": [{"type": "image", "image": h}, q]}]
    assert m.chat(ask, max_tokens=4, temperature=0) == want
    assert h.kv_ready(timeout=60) and h.kv_error is None
    # A later request that needs the KV-ahead work finds it (or the request's own).
    assert m.chat(ask, max_tokens=4, temperature=0) == want
    assert m.last_stats["n_reused"] >= h.n_rows


def test_model_prepare_image_bad_prompts(tiny: Path, ref: dict) -> None:
    m = make_model(tiny)
    img = ref["image_0"]
    for bad in ("no image here", "<image> and <image>"):
        with pytest.raises(InvalidArgumentError, match="exactly one image"):
            m.prepare_image(img, bad)
    with pytest.raises(InvalidArgumentError, match="text or a list"):
        m.prepare_image(img, 42)  # type: ignore[arg-type]


def test_release_vision_frees_the_encoder_while_the_llm_prefills(tiny: Path, ref: dict) -> None:
    lm, vm = _core.LlamaModel(str(tiny)), _core.VisionModel(str(tiny))
    px = ref["pixel_values_0"]
    before, after = split_prompt(ref["input_ids_0"])
    tail = after + [20, 21, 22, 23] * 300  # keeps the LLM busy after the last patch
    p = ImagePrefiller(_core.Context(lm, 2048, 4, 1, "f32"), vm, release_vision=True)
    released_during: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if not vm.weights_loaded:
                released_during.append(not done.is_set())
                return
            time.sleep(0.0002)

    t = threading.Thread(target=watch)
    t.start()
    try:
        p.prefill([before, px, tail])
    finally:
        done.set()
        t.join()
    assert released_during == [True], "the weights were still loaded when the LLM finished"
    got = p.ctx.logits()
    q = ImagePrefiller(_core.Context(lm, 2048, 4, 1, "f32"), vm)  # reloads the weights
    q.prefill([before, px, tail])
    np.testing.assert_array_equal(q.ctx.logits(), got)


def test_rows_not_given_are_accepted_only_when_cached(tiny: Path) -> None:
    """("embeddings", n_rows, key): an image whose rows the cache must hold."""
    lm = _core.LlamaModel(str(tiny))
    ctx = _core.Context(lm, 64, 4, 1, "f32")
    rows = np.random.default_rng(0).standard_normal((5, lm.n_embd)).astype(np.float32)
    key = b"0123456789abcdef"
    with pytest.raises(InvalidArgumentError, match="rows are needed"):
        ctx.prefill([("tokens", [1, 2]), ("embeddings", 5, key)], reuse=True)
    ctx.prefill([("tokens", [1, 2]), ("embeddings", rows, key), ("tokens", [3])], reuse=True)
    want = ctx.logits()
    lazy = [("tokens", [1, 2]), ("embeddings", 5, key), ("tokens", [3])]
    assert ctx.reusable(lazy) == 7  # all but the last position
    st = ctx.prefill(lazy, reuse=True)
    assert st["n_reused"] == 7 and st["n_rows"] == 1
    np.testing.assert_array_equal(ctx.logits(), want)
    # The image ends the prompt: its last row is run again, so its rows are needed.
    with pytest.raises(InvalidArgumentError, match="rows are needed"):
        ctx.prefill([("tokens", [1, 2]), ("embeddings", 5, key)], reuse=True)
    assert ctx.prefill([("tokens", [1, 2]), ("embeddings", rows, key)], reuse=True)["n_rows"] == 1
