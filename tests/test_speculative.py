"""Speculative decoding (csrc/runtime/{session,prompt_lookup,draft_model}.*).

References:
- greedy: the same runtime without a draft (itself held to llama.cpp's recorded
  greedy continuations by test_llamacpp_parity.py), and transformers' greedy
  tokens recorded in ``tests/data/trained_llama/reference.npz``
  (``make_trained_tiny.py``);
- KV rollback: every logit-derived value of a run without a draft, bit for bit;
- sampling: the exact next-token distribution, softmax of the target's own
  logits computed by a plain forward pass, against which the empirical
  distribution of many seeded runs is held by a chi-square test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bluelm_cpp
from bluelm_cpp import _core
from bluelm_cpp.errors import InvalidArgumentError, ModelFileError

DATA = Path(__file__).resolve().parent / "data"
TRAINED = DATA / "trained_llama"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """trained_llama converted by our converter: F32 and F16 targets, a Q4_0 draft."""
    pytest.importorskip("gguf")
    from bluelm_cpp.convert import convert_checkpoint

    out = tmp_path_factory.mktemp("spec_gguf")
    paths = {}
    for outtype in ("f32", "f16", "q4_0"):
        paths[outtype] = out / f"trained_llama.{outtype}.gguf"
        convert_checkpoint(TRAINED, paths[outtype], outtype, progress=False)
    return paths


def _greedy(m: bluelm_cpp.Model, prompt: list[int], n: int) -> list[int]:
    return list(m.generate_tokens(prompt, n, temperature=0))


# --- greedy: identical to decoding without a draft ---------------------------


def test_prompt_lookup_greedy_equals_plain(smollm2_file: Path, smollm2: bluelm_cpp.Model) -> None:
    import json

    record = json.loads((DATA / "llamacpp_smollm2_q4_1.json").read_text())
    # draft_cost="prior": how often drafts are made must not depend on the machine's load
    spec = bluelm_cpp.Model(
        smollm2_file, n_ctx=512, n_threads=2, draft="prompt_lookup", n_draft=6, draft_cost="prior"
    )
    drafted = accepted = generated = 0
    for entry in record["generate"][:8]:
        prompt, n = list(entry["prompt_ids"]), len(entry["generated_ids"])
        got = _greedy(spec, prompt, n)
        assert got == _greedy(smollm2, prompt, n), entry["name"]
        drafted += spec.draft_stats["drafted"]
        accepted += spec.draft_stats["accepted"]
        generated += len(got)
    # the recorded continuations repeat themselves: drafts are made and taken
    # (2026-12-06: 41 of 69 drafted tokens taken, of 313 generated)
    assert accepted > generated // 10 and drafted > accepted
    st = spec.draft_stats  # the last generation: one pass over the output matrix or more a round
    assert st["logit_passes"] >= st["steps"] >= st["rounds"] > 0
    assert all(v >= 0.0 for v in st["seconds"].values())


def test_draft_model_greedy_equals_plain_and_transformers(trained: dict[str, Path]) -> None:
    ref = np.load(TRAINED / "reference.npz")
    prompt, want = ref["greedy_prompt"].tolist(), ref["greedy_ids"].tolist()
    kw: dict[str, Any] = dict(n_ctx=256, n_threads=2, kv_type="f32")
    kw["draft_cost"] = "prior"  # drafts are made whatever the machine's load
    with bluelm_cpp.Model(trained["f32"], draft=trained["q4_0"], n_draft=4, **kw) as m:
        assert _greedy(m, prompt, len(want)) == want  # transformers' greedy tokens
        st = m.draft_stats
        assert st["rounds"] > 0 and st["accepted"] > 0
    # F16 target (its matmuls verify token by token, eval_as_steps), a Model as the draft
    with (
        bluelm_cpp.Model(trained["q4_0"], **kw) as draft,
        bluelm_cpp.Model(trained["f16"], **kw) as plain,
        bluelm_cpp.Model(trained["f16"], draft=draft, n_draft=5, **kw) as spec,
    ):
        for start in (0, 64, 128):
            p = prompt[:8] if start == 0 else ref["prompt_ids"][start : start + 24].tolist()
            assert _greedy(spec, p, 48) == _greedy(plain, p, 48)
        assert spec.draft_stats["drafted"] > 0


# --- what prompt lookup drafts ------------------------------------------------


def _lookup_reference(seq: list[int], ngram_min: int, ngram_max: int) -> tuple[list[int], int]:
    """The documented rule (prompt_lookup.h), written from its description: the
    continuation after the earlier occurrence of the sequence's last token
    whose preceding tokens agree longest with the sequence's end (counted up to
    ngram_max), the latest among equals; and that agreement's length."""
    best, best_m = None, ngram_min - 1
    for e in range(len(seq) - 1):
        m = 0
        while m < ngram_max and e - m >= 0 and seq[e - m] == seq[len(seq) - 1 - m]:
            m += 1
        if m > best_m or (m == best_m and best is not None):
            best, best_m = e, m
    return ([] if best is None else seq[best + 1 :]), best_m


def test_prompt_lookup_drafts_the_longest_agreement(trained: dict[str, Path]) -> None:
    ctx = _core.Context(_core.LlamaModel(str(trained["f32"])), 256, 32, 1, "f32")
    nv = ctx.n_vocab
    rng = np.random.default_rng(7)
    greedy = bluelm_cpp.SamplingParams(temperature=0)
    proposed = 0
    for trial in range(40):
        ngram_max = [16, 2, 5][trial % 3]
        ctx.set_draft("prompt_lookup", 8, ngram_max=ngram_max)
        # A small alphabet: many earlier occurrences, agreeing over 1 to many tokens.
        alphabet = rng.choice(nv, size=int(rng.integers(3, 7)), replace=False)
        seq = [int(t) for t in rng.choice(alphabet, size=int(rng.integers(12, 80)))]
        ctx.prefill([("tokens", seq[:-1])], reuse=True)
        ctx.start(greedy, [], 32)
        assert ctx.step(_one_hot_mask(nv, seq[-1])) == seq[-1]  # the sequence's end, fixed
        got = list(ctx.propose())
        want, m = _lookup_reference(seq, 1, ngram_max)
        assert got == want[: len(got)], (trial, seq)  # the session may shorten the draft
        proposed += bool(got)
        if m == 1:
            # one token of agreement: most such drafts are rejected (about 1 in 5
            # taken), so at the start of a generation none is verified
            assert got == []
    assert proposed >= 10


# --- KV rollback: a run with many rejections gives the same logits -----------


def _plain_run(ctx: Any, prompt: list[int], n: int) -> tuple[list[Any], np.ndarray]:
    """n greedy tokens with their logprobs (top 8), then the logits after the last."""
    ctx.prefill([("tokens", prompt)])
    ctx.start(bluelm_cpp.SamplingParams(temperature=0), [], n)
    out = []
    while (r := ctx.step_logprobs(None, 8)) is not None:
        out.append(r)
    ctx.eval([out[-1][0]])
    return out, ctx.logits()


@pytest.mark.parametrize("which", ["smollm2", "f16", "q4_0"])
def test_rollback_gives_the_logits_of_a_plain_run(
    which: str, request: pytest.FixtureRequest
) -> None:
    if which == "smollm2":
        path = request.getfixturevalue("smollm2_file")
        prompt = [504, 3575, 282, 4649, 314, 7042, 30, 198, 504, 1797, 1918, 553, 253]
    else:
        path = request.getfixturevalue("trained")[which]
        prompt = np.load(TRAINED / "reference.npz")["prompt_ids"][:40].tolist()
    n = 160
    model = _core.LlamaModel(str(path))
    want, want_logits = _plain_run(_core.Context(model, 512, 32, 2, "f16"), prompt, n)
    ids = [w[0] for w in want]
    # Drafts of 1 to 12 tokens: the plain run's next tokens, most of them with
    # one token made wrong at a random place, so most rounds roll back a part.
    spec = _core.Context(model, 512, 32, 2, "f16")
    spec.prefill([("tokens", prompt)])
    spec.start(bluelm_cpp.SamplingParams(temperature=0), [], n)
    got = [spec.step_logprobs(None, 8)]
    rng = np.random.default_rng(0)
    rounds = rejected = 0
    while True:
        k = int(rng.integers(1, 13))
        draft = ids[len(got) : len(got) + k] or [ids[0]]
        if rng.random() < 0.8:
            j = int(rng.integers(0, len(draft)))
            draft[j] = (draft[j] + 1 + int(rng.integers(0, 100))) % spec.n_vocab
            rejected += 1
        out = spec.advance(draft, None, True, 8)
        if not out:
            break
        rounds += 1
        got += out
    spec.eval([got[-1][0]])
    assert rounds > 20 and rejected > 16
    assert got == want  # every token, logprob and top-8 logprob, bit for bit
    assert np.array_equal(spec.logits(), want_logits)


# --- greedy rounds that find their tokens without the rows' logits ----------


def test_greedy_rounds_without_logits_equal_plain(smollm2_file: Path) -> None:
    """A drafted greedy round (no bias, penalties, mask or logprobs) takes
    Context::step_argmax where the kernels screen the output matrix
    (gemv_fast: AVX-512 and a Q8_0 output, SmolLM2's): every token is the
    plain run's, and the logits read after a round (computed on demand) are
    the rows the plain run chose the same tokens from, bit for bit."""
    model = _core.LlamaModel(str(smollm2_file))
    prompt = [504, 3575, 282, 4649, 314, 7042, 30, 198, 504, 1797, 1918, 553, 253]
    n = 120
    plain = _core.Context(model, 512, 32, 2, "f16")
    plain.prefill([("tokens", prompt)])
    plain.start(bluelm_cpp.SamplingParams(temperature=0), [], n)
    want: list[int] = []
    rows: list[np.ndarray] = []  # the row each token was chosen from
    while (t := plain.step()) is not None:
        want.append(t)
        rows.append(np.asarray(plain.logits()).reshape(-1, plain.n_vocab)[-1].copy())
    spec = _core.Context(model, 512, 32, 2, "f16")
    spec.prefill([("tokens", prompt)])
    spec.start(bluelm_cpp.SamplingParams(temperature=0), [], n)
    got: list[int] = []
    rng = np.random.default_rng(1)
    rejected = 0
    while True:
        k = int(rng.integers(1, 10))
        draft = want[len(got) : len(got) + k] or [want[0]]
        if rng.random() < 0.6:  # one token made wrong: the round rolls back past it
            j = int(rng.integers(0, len(draft)))
            draft[j] = (draft[j] + 1 + int(rng.integers(0, 100))) % spec.n_vocab
            rejected += 1
        out = spec.advance(draft)
        if not out:
            break
        got += out
        last = np.asarray(spec.logits()).reshape(-1, spec.n_vocab)[-1]
        assert np.array_equal(last, rows[len(got) - 1]), len(got)
    assert got == want
    st = spec.draft_stats
    assert rejected > 10 and st["rounds"] > 20
    if _core.isa().startswith("avx512"):  # the tables with gemv_fast: the route was taken
        assert st["argmax_passes"] == st["rounds"]
    # Logprobs need the logits: no round skips them.
    spec.prefill([("tokens", prompt)])
    spec.start(bluelm_cpp.SamplingParams(temperature=0), [], 8)
    spec.step()
    assert spec.advance(want[1:6], None, True, 2) and spec.draft_stats["argmax_passes"] == 0


# --- sampling: the accept/reject rule keeps the target's distribution --------


def _chi2_critical(dof: int, z: float = 3.719) -> float:
    """Wilson-Hilferty: the chi-square quantile at the normal quantile z (3.719: p = 1e-4)."""
    h = 2.0 / (9.0 * dof)
    return dof * (1.0 - h + z * math.sqrt(h)) ** 3


def _chi2(counts: dict[int, int], p: np.ndarray, n: int) -> tuple[float, int]:
    """Pearson's statistic over the tokens expected >= 5 times, the rest pooled."""
    big = np.flatnonzero(p * n >= 5.0)
    stat, rest_obs = 0.0, n
    for t in big:
        e, o = p[t] * n, counts.get(int(t), 0)
        stat += (o - e) ** 2 / e
        rest_obs -= o
    rest_exp = n * (1.0 - p[big].sum())
    bins = len(big)
    if rest_exp >= 5.0:
        stat += (rest_obs - rest_exp) ** 2 / rest_exp
        bins += 1
    return stat, bins - 1


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def _one_hot_mask(n_vocab: int, token: int) -> np.ndarray:
    mask = np.zeros((n_vocab + 31) // 32, dtype=np.uint32)
    mask[token >> 5] = np.uint32(1 << (token & 31))
    return mask


@pytest.mark.parametrize("drafter", ["fixed", "model"])
def test_sampled_tokens_keep_the_target_distribution(
    trained: dict[str, Path], drafter: str
) -> None:
    temperature, trials = 1.5, 3000
    target = _core.LlamaModel(str(trained["f32"]))
    ctx = _core.Context(target, 128, 16, 1, "f32")
    text = np.load(TRAINED / "reference.npz")["prompt_ids"][:64].tolist()
    nv = ctx.n_vocab
    # The prompt: the prefix of the text, then its next token t1 fixed, where
    # the target is least sure (the second token most likely): both the accept
    # and the replace branch of the rule are taken often.
    ctx.eval(text, logits_all=True)
    rows = np.stack([_softmax(r, temperature) for r in ctx.logits()])
    at = 8 + int(np.argmax(np.sort(rows[8:63], axis=1)[:, -2]))
    prompt, t1, p0 = text[:at], text[at], rows[at]
    order = np.argsort(-p0)
    d1, d2 = int(order[1]), int(order[0])  # a fixed draft the rule often rejects
    ctx.reset()
    ctx.eval([*prompt, t1, d1])
    p1 = _softmax(ctx.logits(), temperature)  # the exact distribution after d1
    ctx.reset()
    if drafter == "model":
        ctx.set_draft(_core.LlamaModel(str(trained["q4_0"])), 2)
    mask = _one_hot_mask(nv, t1)
    first: dict[int, int] = {}
    second: dict[int, int] = {}
    n_second = 0
    for seed in range(trials):
        ctx.prefill([("tokens", prompt)], reuse=True)
        params = bluelm_cpp.SamplingParams(
            temperature=temperature, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0, seed=seed
        )
        ctx.start(params, [], 8)
        assert ctx.step(mask) == t1  # the prompt's next token, fixed
        draft = [d1, d2] if drafter == "fixed" else ctx.propose()
        assert 1 <= len(draft) <= 2  # the session may shorten a draft model's proposal
        out = ctx.advance(draft)
        first[out[0]] = first.get(out[0], 0) + 1
        if draft[0] == d1 and out[0] == d1:
            second[out[1]] = second.get(out[1], 0) + 1
            n_second += 1
    stat, dof = _chi2(first, p0, trials)
    assert stat < _chi2_critical(dof), (stat, dof, first)
    if drafter == "fixed":
        # the row after an accepted draft token: the cache holds d1 exactly
        assert n_second > 300
        stat, dof = _chi2(second, p1, n_second)
        assert stat < _chi2_critical(dof), (stat, dof, second)


# --- through the API: completions, streaming, the server ---------------------


def test_completions_and_stream_with_draft(smollm2_file: Path, smollm2: bluelm_cpp.Model) -> None:
    spec = bluelm_cpp.Model(
        smollm2_file, n_ctx=512, n_threads=2, draft="prompt_lookup", draft_cost="prior"
    )
    msgs = [{"role": "user", "content": "Repeat exactly: the red fox jumps over the red fox."}]
    want = smollm2.create_chat_completion(msgs, temperature=0, max_tokens=40)
    got = spec.create_chat_completion(msgs, temperature=0, max_tokens=40)
    assert got["choices"][0]["message"] == want["choices"][0]["message"]
    assert got["usage"] == want["usage"]
    chunks = list(spec.create_chat_completion(msgs, temperature=0, max_tokens=40, stream=True))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == want["choices"][0]["message"]["content"]
    kw = dict(temperature=0, max_tokens=12, logprobs=3)
    prompt = "1, 2, 3, 1, 2, 3, 1, 2, 3, 1,"  # its continuation repeats it: drafts are taken
    a = spec.create_completion(prompt, **kw)["choices"][0]
    b = smollm2.create_completion(prompt, **kw)["choices"][0]
    assert a["text"] == b["text"] and a["logprobs"] == b["logprobs"]
    assert spec.draft_stats["accepted"] > 0


def test_server_with_draft(smollm2_file: Path, smollm2: bluelm_cpp.Model) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("sse_starlette")
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "bluelm_cpp.server", "--model", str(smollm2_file), "--port"]
    cmd += [str(port), "-t", "2", "-c", "512", "--draft", "prompt_lookup", "--n-draft", "6"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        body = {"prompt": "a b c a b c a b c", "max_tokens": 20, "temperature": 0}
        req = urllib.request.Request(
            url + "/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            got = json.loads(r.read())
        want = smollm2.create_completion(body["prompt"], max_tokens=20, temperature=0)
        assert got["choices"][0]["text"] == want["choices"][0]["text"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- bad input: each a clear error of bluelm_cpp.errors ----------------------


def test_bad_draft_arguments(trained: dict[str, Path]) -> None:
    kw: dict[str, Any] = dict(n_ctx=256, n_threads=1, n_batch=16)
    with pytest.raises(InvalidArgumentError, match="vocabulary"):
        # tiny_llama: another tokenizer, another vocabulary
        bluelm_cpp.Model(trained["f32"], draft=DATA / "tiny_llama" / "llamacpp.f32.gguf", **kw)
    n_train = _core.LlamaModel(str(trained["q4_0"])).n_ctx_train
    with pytest.raises(InvalidArgumentError, match="context"):
        bluelm_cpp.Model(trained["f32"], draft=trained["q4_0"], **{**kw, "n_ctx": 2 * n_train})
    with pytest.raises(InvalidArgumentError, match="n_draft"):
        bluelm_cpp.Model(trained["f32"], draft="prompt_lookup", n_draft=0, **kw)
    with pytest.raises(InvalidArgumentError, match="n_draft"):
        bluelm_cpp.Model(trained["f32"], draft="prompt_lookup", n_draft=16, **kw)  # = n_batch
    with pytest.raises(InvalidArgumentError, match="n_draft"):
        bluelm_cpp.Model(trained["f32"], draft="prompt_lookup", n_draft=True, **kw)
    with pytest.raises(InvalidArgumentError, match="draft_cost"):
        bluelm_cpp.Model(trained["f32"], draft="prompt_lookup", draft_cost="fast", **kw)
    with pytest.raises(ModelFileError, match="does not exist"):
        bluelm_cpp.Model(trained["f32"], draft="prompt-lookup", **kw)
    with pytest.raises(InvalidArgumentError, match="draft must be"):
        bluelm_cpp.Model(trained["f32"], draft=3, **kw)
    ctx = _core.Context(_core.LlamaModel(str(trained["f32"])), 64, 16, 1, "f32")
    with pytest.raises(InvalidArgumentError, match="prompt lookup n-grams"):
        ctx.set_draft("prompt_lookup", 4, ngram_min=0)
    # a draft verified by advance() holds vocabulary ids only
    ctx.set_draft("prompt_lookup", 4)
    ctx.eval([5, 6, 7])
    ctx.start(bluelm_cpp.SamplingParams(temperature=0), [], 8)
    ctx.step()
    with pytest.raises(InvalidArgumentError, match="outside the vocabulary"):
        ctx.advance([ctx.n_vocab])
    assert len(ctx.advance([5, 6])) >= 1  # the session is still usable
