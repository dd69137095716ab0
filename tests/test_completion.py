"""The OpenAI-shaped API against llama-cpp-python (the shape reference): the
dicts and stream chunks of create_completion / create_chat_completion, token
counts, finish reasons, logprobs, stop strings; logit_bias and seed against
the model's own logits; structured output validated by jsonschema; grammars.

llama-cpp-python's answers on the bundled SmolLM2 file are recorded in
tests/data/llamacpp_api.json (tests/data/record_api_shapes.py); when the
library is installed the same calls also run live.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

import bluelm_cpp
from bluelm_cpp.errors import InvalidArgumentError

DATA = Path(__file__).parent / "data"
RECORD = json.loads((DATA / "llamacpp_api.json").read_text(encoding="utf-8"))


def _recorder() -> Any:
    """tests/data/record_api_shapes.py: the calls, shared with the recording."""
    spec = importlib.util.spec_from_file_location(
        "record_api_shapes", DATA / "record_api_shapes.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shape(x: Any) -> Any:
    """The structure of a response: keys, list items, value kinds."""
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [shape(x[0])] if x else []
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "number"
    return "str" if isinstance(x, str) else "null"


def same_shape(ours: Any, ref: Any, where: str = "") -> None:
    if ref == "null" or ours == "null":
        # optional fields: llama-cpp-python leaves "bytes" null, OpenAI fills it
        return
    if isinstance(ref, dict):
        assert isinstance(ours, dict) and set(ours) == set(ref), (where, ours, ref)
        for k in ref:
            same_shape(ours[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, list):
        assert isinstance(ours, list), where
        if ref and ours:
            same_shape(ours[0], ref[0], where + "[0]")
    else:
        assert ours == ref, (where, ours, ref)


@pytest.fixture(scope="module")
def ours(smollm2_file: Path) -> dict[str, Any]:
    with bluelm_cpp.Model(smollm2_file, n_ctx=512, n_threads=2) as m:
        return json.loads(json.dumps(_recorder().record(m)))


@pytest.fixture(scope="module")
def live(smollm2_file: Path) -> dict[str, Any] | None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    rec = _recorder()
    return json.loads(json.dumps(rec.record(rec.llama(str(smollm2_file))), default=float))


@pytest.mark.parametrize("call", ["completion", "completion_stream", "chat", "chat_stream", "stop"])
def test_shapes_match_llama_cpp_python(ours: dict, live: dict | None, call: str) -> None:
    for ref in [RECORD] + ([live] if live else []):
        got, want = ours[call], ref[call]
        if isinstance(want, list):  # stream: first, middle and last chunk
            assert len(got) >= 3
            for g, w in ((got[0], want[0]), (got[1], want[1]), (got[-1], want[-1])):
                same_shape(shape(g), shape(w), call)
        else:
            same_shape(shape(got), shape(want), call)
    assert ours["completion"]["id"].startswith("cmpl-") and ours["chat"]["id"].startswith(
        "chatcmpl-"
    )


def test_completion_values_match_llama_cpp_python(ours: dict) -> None:
    got, want = ours["completion"], RECORD["completion"]
    g, w = got["choices"][0], want["choices"][0]
    assert g["text"] == w["text"] and g["finish_reason"] == w["finish_reason"] == "length"
    assert got["usage"] == want["usage"]
    lg, lw = g["logprobs"], w["logprobs"]
    assert lg["tokens"] == lw["tokens"] and lg["text_offset"] == lw["text_offset"]
    # The first token comes from the prompt's logits, bit-identical to llama.cpp's
    # (docs/ARCHITECTURE.md): same log-probabilities and the same top 3.
    assert lg["token_logprobs"][0] == pytest.approx(lw["token_logprobs"][0], abs=1e-5)
    assert lg["top_logprobs"][0].keys() == lw["top_logprobs"][0].keys()
    for k, v in lw["top_logprobs"][0].items():
        assert lg["top_logprobs"][0][k] == pytest.approx(v, abs=1e-5)
    # Later steps: llama-cpp-python's single-token path rounds differently
    # (measured: up to 0.07 apart); the tokens are the same.
    assert np.allclose(lg["token_logprobs"], lw["token_logprobs"], atol=0.1)
    # Streamed: the same text, the same logprobs, one finish reason at the end.
    chunks = ours["completion_stream"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == g["text"]
    streamed = [t for c in chunks[:-1] for t in c["choices"][0]["logprobs"]["token_logprobs"]]
    assert streamed == lg["token_logprobs"]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "length"]


def test_stop_and_usage_match_llama_cpp_python(ours: dict) -> None:
    got, want = ours["stop"], RECORD["stop"]
    assert got["choices"][0]["text"] == want["choices"][0]["text"] == " 5, 6,"
    assert got["choices"][0]["finish_reason"] == want["choices"][0]["finish_reason"] == "stop"
    assert got["usage"] == want["usage"]


def test_chat_counts_and_stream(ours: dict) -> None:
    got = ours["chat"]
    # the same prompt through the file's template: the same number of tokens
    assert got["usage"]["prompt_tokens"] == RECORD["chat"]["usage"]["prompt_tokens"]
    c = got["choices"][0]
    assert c["message"]["role"] == "assistant" and c["finish_reason"] in ("stop", "length")
    n = got["usage"]["completion_tokens"]
    assert len(c["logprobs"]["content"]) == n <= 12
    for e in c["logprobs"]["content"]:
        assert (
            len(e["top_logprobs"]) == 2 and e["top_logprobs"][0]["logprob"] >= e["logprob"] - 1e-6
        )
        assert bytes(e["bytes"]).decode("utf-8", "ignore") == e["token"]
    stream = ours["chat_stream"]
    assert stream[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = "".join(s["choices"][0]["delta"].get("content", "") for s in stream)
    assert text == c["message"]["content"]  # greedy: the deltas join to the whole answer
    assert stream[-1]["choices"][0]["finish_reason"] == c["finish_reason"]


# ---------------------------------------------------------------- sampling


def test_logit_bias_against_the_logits(smollm2: bluelm_cpp.Model) -> None:
    prompt = "The capital of France is"
    logits = smollm2.eval_logits(smollm2.tokenize(prompt))
    top2 = np.argsort(-logits)[:2]
    kw = dict(max_tokens=1, temperature=0)
    first = smollm2.create_completion(prompt, logprobs=1, **kw)["choices"][0]["logprobs"]
    assert first["tokens"][0] == smollm2.detokenize([int(top2[0])])
    banned = smollm2.create_completion(prompt, logit_bias={str(top2[0]): -100.0}, **kw)
    assert banned["choices"][0]["text"] == smollm2.detokenize([int(top2[1])])
    forced = smollm2.create_completion(prompt, logit_bias={42: 100.0}, **kw)
    assert forced["choices"][0]["text"] == smollm2.detokenize([42])
    with pytest.raises(InvalidArgumentError, match="outside the vocabulary"):
        smollm2.create_completion(prompt, logit_bias={10**6: 1.0}, **kw)


def test_logprobs_are_the_log_softmax_of_the_logits(smollm2: bluelm_cpp.Model) -> None:
    prompt = "Once upon a time"
    logits = smollm2.eval_logits(smollm2.tokenize(prompt)).astype(np.float64)
    ref = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    out = smollm2.create_completion(prompt, max_tokens=1, temperature=0.7, seed=3, logprobs=5)
    lp = out["choices"][0]["logprobs"]
    tok = smollm2.tokenize(lp["tokens"][0], add_special=False)[0]
    assert lp["token_logprobs"][0] == pytest.approx(ref[tok], abs=1e-5)
    best = np.argsort(-ref)[:5]
    got = sorted(lp["top_logprobs"][0].values(), reverse=True)[:5]
    assert np.allclose(got, ref[best], atol=1e-5)


def test_seed_and_max_tokens(smollm2: bluelm_cpp.Model) -> None:
    kw = dict(max_tokens=12, temperature=1.0, seed=11)
    a = smollm2.create_completion("Once upon a time", **kw)
    b = smollm2.create_completion("Once upon a time", **kw)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    assert a["usage"]["completion_tokens"] == 12 and a["choices"][0]["finish_reason"] == "length"
    with pytest.raises(InvalidArgumentError, match="max_tokens"):
        smollm2.create_completion("Hi", max_tokens=-1)
    with pytest.raises(InvalidArgumentError, match="unknown"):
        smollm2.create_completion("Hi", mirostat_tau=5.0)


# -------------------------------------------------------- structured output

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"enum": ["Paris", "London", "Rome"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}


def test_json_schema_output_validates(smollm2: bluelm_cpp.Model) -> None:
    msgs = [{"role": "user", "content": "Describe a person as JSON."}]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    for seed in (1, 2):
        out = smollm2.create_chat_completion(
            msgs, response_format=fmt, max_tokens=80, temperature=0.8, seed=seed
        )
        c = out["choices"][0]
        assert c["finish_reason"] == "stop", c
        jsonschema.validate(json.loads(c["message"]["content"]), PERSON)


def test_json_object_and_grammars(smollm2: bluelm_cpp.Model) -> None:
    msgs = [{"role": "user", "content": "Give me a JSON object."}]
    out = smollm2.create_chat_completion(
        msgs, response_format={"type": "json_object"}, max_tokens=120, temperature=0
    )
    if out["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(out["choices"][0]["message"]["content"]), dict)
    q = [{"role": "user", "content": "Is Paris in France? Answer yes or no."}]
    gbnf = 'root ::= ("yes" | "no") "."'
    lark = 'start: ("yes" | "no") "."'
    for g in (gbnf, lark):
        text = smollm2.create_chat_completion(q, grammar=g, max_tokens=8, temperature=0)
        assert text["choices"][0]["message"]["content"] in ("yes.", "no.")
    streamed = smollm2.create_completion("Is it? ", grammar=lark, max_tokens=8, stream=True)
    assert "".join(c["choices"][0]["text"] for c in streamed) in ("yes.", "no.")


def test_bad_structured_requests(smollm2: bluelm_cpp.Model) -> None:
    msgs = [{"role": "user", "content": "x"}]
    bad_schema = {"type": "json_schema", "json_schema": {"schema": {"type": "no-such-type"}}}
    with pytest.raises(InvalidArgumentError, match="schema|grammar"):
        smollm2.create_chat_completion(msgs, response_format=bad_schema, max_tokens=2)
    with pytest.raises(InvalidArgumentError, match="grammar"):
        smollm2.create_chat_completion(msgs, grammar="root ::= (", max_tokens=2)
    with pytest.raises(InvalidArgumentError, match="response_format"):
        smollm2.create_chat_completion(msgs, response_format={"type": "xml"}, max_tokens=2)
    assert smollm2.create_chat_completion(msgs, max_tokens=1)["object"] == "chat.completion"
