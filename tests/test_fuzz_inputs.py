"""Property-based fuzzing (hypothesis) of the Python-facing inputs.

* Tokenizers (SmolLM2's gpt2 BPE and the recorded SentencePiece BPE with byte
  fallback): ``decode(encode(s)) == s`` for any string (and any bytes decoded
  as UTF-8) whose bytes all have a token; any id list either decodes or raises
  the project's error. SmolLM2's vocabulary has no token for 21 byte values
  (0x04, 0xF1, ...): llama.cpp drops those bytes too (``llama_tokenize`` of
  U+40000 gives the same three ids as ours), so such text is only checked not
  to fail.
* Sampler arguments and logits (NaN, infinities, extremes): a token id in range
  or :class:`InvalidArgumentError`, never a crash.
* ``Model.generate`` with arbitrary argument values: text or a
  :class:`BlueLMError`, never anything else.

Examples per test are bounded so the file costs seconds in CI; the same
properties run under ASan/UBSan in tests/sanitize/run_sanitized.sh.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bluelm_cpp import _core  # noqa: E402
from bluelm_cpp.errors import BlueLMError, InvalidArgumentError  # noqa: E402
from bluelm_cpp.tokenizer import Tokenizer  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "tokenizer"
FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text with every Unicode category except lone surrogates (no UTF-8 form).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


def _byte_tokens(tok: Tokenizer) -> set[int]:
    pieces = (tok.token_to_bytes(i) for i in range(tok.vocab_size))
    return {p[0] for p in pieces if len(p) == 1}


def _round_trips(tok: Tokenizer, text: str) -> bool:
    covered = getattr(tok, "_fuzz_byte_tokens", None)
    if covered is None:
        covered = _byte_tokens(tok)
        tok._fuzz_byte_tokens = covered  # type: ignore[attr-defined]
    return set(text.encode("utf-8")) <= covered


@pytest.fixture(scope="module")
def tokenizers(smollm2_file: Path) -> dict[str, Tokenizer]:
    meta = _core.GGUFFile(str(smollm2_file)).metadata
    spm_meta = json.loads((DATA / "spm_bpe_reference.json").read_text())["metadata"]
    return {"gpt2": Tokenizer.from_metadata(meta), "spm": Tokenizer.from_metadata(spm_meta)}


@pytest.mark.parametrize("kind", ["gpt2", "spm"])
@FAST
@given(text=TEXT)
def test_tokenizer_round_trip_text(tokenizers: dict[str, Tokenizer], kind: str, text: str) -> None:
    tok = tokenizers[kind]
    ids = tok.encode(text, add_special=False)
    decoded = tok.decode(ids)
    dec = tok.stream_decoder(strip_leading_space=True)
    assert dec.push_many(ids) + dec.flush() == decoded
    if _round_trips(tok, text):
        assert decoded == text


@pytest.mark.parametrize("kind", ["gpt2", "spm"])
@FAST
@given(raw=st.binary(max_size=120))
def test_tokenizer_round_trip_bytes(
    tokenizers: dict[str, Tokenizer], kind: str, raw: bytes
) -> None:
    tok = tokenizers[kind]
    text = raw.decode("utf-8", errors="replace")
    for parse_special in (False, True):
        ids = tok.encode(text, add_special=True, parse_special=parse_special)
        assert all(0 <= i < tok.vocab_size for i in ids)
    if _round_trips(tok, text):
        assert tok.decode(tok.encode(text, add_special=False)) == text


@FAST
@given(text=st.text(max_size=20), cut=st.integers(0, 20), sur=st.integers(0xD800, 0xDFFF))
def test_tokenizer_lone_surrogate_is_refused(
    tokenizers: dict[str, Tokenizer], text: str, cut: int, sur: int
) -> None:
    bad = text[:cut] + chr(sur) + text[cut:]
    for tok in tokenizers.values():
        with pytest.raises(InvalidArgumentError):
            tok.encode(bad)


@FAST
@given(ids=st.lists(st.integers(-(2**70), 2**70), max_size=30), special=st.booleans())
def test_tokenizer_decode_any_ids(
    tokenizers: dict[str, Tokenizer], ids: list[int], special: bool
) -> None:
    for tok in tokenizers.values():
        try:
            text = tok.decode(ids, special=special)
        except InvalidArgumentError:
            assert any(not 0 <= i < tok.vocab_size for i in ids)
            continue
        dec = tok.stream_decoder(special=special, strip_leading_space=True)
        assert dec.push_many(ids) + dec.flush() == text


# ------------------------------------------------------------------ sampler

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, 1.0, 1e-45, 1e38, -1e38, math.inf, -math.inf, math.nan]),
)


@settings(max_examples=300, deadline=None)
@given(
    logits=st.lists(FLOATS, min_size=1, max_size=64),
    temperature=st.one_of(st.just(0.0), st.floats(1e-6, 5.0)),
    top_k=st.integers(0, 80),
    top_p=st.floats(0.01, 1.0),
    min_p=st.floats(0.0, 1.0),
    repeat_penalty=st.floats(0.1, 3.0),
    presence=st.floats(-5, 5),
    history=st.lists(st.integers(-5, 70), max_size=10),
    seed=st.integers(0, 2**64 - 1),
)
def test_sampler_any_logits(
    logits: list[float],
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    repeat_penalty: float,
    presence: float,
    history: list[int],
    seed: int,
) -> None:
    values = (temperature, top_k, top_p, min_p, repeat_penalty, presence, 0.5, 8, seed)
    s = _core.Sampler(**dict(zip(FIELDS, values)))
    for t in history:
        s.accept(t)
    arr = np.array(logits, dtype=np.float32)
    for _ in range(2):
        tok = s.sample_logits(arr)
        assert 0 <= tok < len(logits)
    finite = np.nan_to_num(arr, nan=-np.inf)
    if temperature == 0.0 and not history and np.isfinite(finite).any():
        # greedy without penalties is the first maximum
        assert tok == int(np.argmax(finite))


# temperature, top_k, top_p, min_p, repeat_penalty, presence/frequency_penalty, repeat_last_n, seed
FIELDS = [name for name, _default, _help in _core.SamplingParams.fields()][:9]

ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    FLOATS,
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(ANY, min_size=9, max_size=9))
def test_sampler_any_arguments(args: list[Any]) -> None:
    try:
        s = _core.Sampler(**dict(zip(FIELDS, args)))
    except (InvalidArgumentError, TypeError):
        return  # TypeError: pybind11's refusal of a wrong Python type
    assert 0 <= s.sample_logits(np.zeros(4, dtype=np.float32)) < 4


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prompt=st.one_of(TEXT, st.lists(st.integers(-3, 50000), max_size=6)),
    max_tokens=st.one_of(st.none(), st.integers(-2, 3), ANY),
    temperature=st.one_of(FLOATS, ANY),
    top_k=st.one_of(st.integers(-2, 2**40), ANY),
    top_p=FLOATS,
    min_p=FLOATS,
    repeat_penalty=FLOATS,
    repeat_last_n=st.one_of(st.integers(-2, 2**40), ANY),
    seed=st.one_of(st.integers(-1, 2**65), ANY),
    stop=st.one_of(st.none(), st.text(max_size=3), st.lists(ANY, max_size=2)),
    stream=st.booleans(),
)
def test_generate_any_arguments(smollm2: Any, prompt: Any, max_tokens: Any, **kw: Any) -> None:
    if max_tokens is None:
        max_tokens = 2  # None means "fill the context": too slow for a fuzz loop
    stream = kw.pop("stream")
    try:
        out = smollm2.generate(prompt, max_tokens, stream=stream, **kw)
        text = "".join(out) if stream else out
    except BlueLMError:
        return
    assert isinstance(text, str)


def test_sampler_nan_logits_regression() -> None:
    """Found by test_sampler_any_logits: NaN broke the candidate ordering, so
    greedy picked the NaN (logits [nan, 0] gave 0) and the sort's comparator was
    not a strict weak order (undefined behaviour in std::sort)."""
    plain = dict(top_k=0, top_p=1.0, min_p=0.0, repeat_last_n=0)
    greedy = _core.Sampler(temperature=0.0, seed=0, **plain)
    assert greedy.sample_logits(np.array([np.nan, 0.0], dtype=np.float32)) == 1
    assert greedy.sample_logits(np.array([0.0, np.inf, np.nan, np.inf], dtype=np.float32)) == 1
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(5000).astype(np.float32)
    logits[rng.integers(0, 5000, 2500)] = np.nan
    for seed in range(20):
        s = _core.Sampler(temperature=1.0, seed=seed, **plain)
        assert not np.isnan(logits[s.sample_logits(logits)])
    # +inf wins outright at any temperature
    hot = np.zeros(100, dtype=np.float32)
    hot[37] = np.inf
    assert _core.Sampler(temperature=2.0, seed=1, **plain).sample_logits(hot) == 37


@pytest.mark.parametrize("n", [1, 15, 16, 511, 512, 513, 1040, 49152, 128256])
def test_greedy_first_maximum_matches_numpy(n: int) -> None:
    """Greedy picks numpy's argmax (its first maximum) of the allowed logits with
    the bias added and NaN / inf made orderable (NaN least likely, inf the
    largest finite value), whatever block, lane or mask word the maximum and its
    ties fall in; with no mask, a full one, a dense and a sparse one."""
    big = np.finfo(np.float32).max
    rng = np.random.default_rng(n)
    for trial in range(12):
        logits = rng.integers(-4, 5, n).astype(np.float32)  # many ties
        if trial % 3 == 1:
            logits[rng.integers(0, n, max(1, n // 7))] = np.nan
        if trial % 3 == 2:
            logits[rng.integers(0, n, 3)] = rng.choice([np.inf, -np.inf, np.nan], 3)
        if trial == 11:
            logits[:] = np.nan
        ids, values = rng.integers(0, n, 3), rng.choice([-9.0, 0.5, 6.0], 3)
        bias = {int(t): float(b) for t, b in zip(ids, values)}
        for with_bias, kind in itertools.product((False, True), ("none", "all", "dense", "sparse")):
            expected = logits.copy()
            if with_bias:
                for t, b in bias.items():
                    expected[t] += np.float32(b)
            expected = np.where(np.isnan(expected), -big, np.clip(expected, -big, big))
            allowed = np.ones(n, dtype=bool)  # the mask: bit t % 32 of word t // 32
            if kind == "dense":  # runs of allowed words broken by single tokens out
                allowed[rng.integers(0, n, max(1, n // 300))] = False
            elif kind == "sparse":
                allowed = rng.random(n) < 0.01
            allowed[rng.integers(0, n)] = True  # some token is always allowed
            bits = np.zeros((n + 31) // 32 * 32, dtype=bool)
            bits[:n] = allowed
            bits[n:] = True  # bits past the vocabulary are ignored
            words = np.packbits(bits.reshape(-1, 32)[:, ::-1]).view(">u4").astype(np.uint32)
            expected = np.where(allowed, expected, -np.inf)
            chosen = bias if with_bias else None
            s = _core.Sampler(temperature=0.0, seed=0, top_k=0, repeat_last_n=0, logit_bias=chosen)
            got = s.sample_logits(logits, None if kind == "none" else words)
            assert got == int(np.argmax(expected)), (trial, with_bias, kind)
