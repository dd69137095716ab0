"""OpenAI-shaped completions, as llama-cpp-python returns them
(``llama_cpp/llama.py``, ``llama_types.py``): ``text_completion`` and
``chat.completion`` dicts, or iterators of their chunk dicts with
``stream=True``, with true token counts, ``finish_reason``, logprobs,
structured output (llguidance) and tool calls.

Example:
    >>> import bluelm_cpp
    >>> m = bluelm_cpp.Model()  # doctest: +SKIP
    >>> msgs = [{"role": "user", "content": "Hi"}]
    >>> r = m.create_chat_completion(msgs, max_tokens=8)  # doctest: +SKIP
    >>> r["choices"][0]["message"]["content"], r["usage"]["total_tokens"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from .errors import InvalidArgumentError
from .prompt import TextStream, check_stop
from .sampling import SamplingParams
from .structured import GrammarConstraint, grammar_for
from .tools import check_tools, parse_tool_calls, tool_call_grammar

_SAMPLING = {name for name, _default, _help in SamplingParams.fields()}


def _sampling(
    model: Any, temperature: float, top_p: float, top_k: int, min_p: float, kw: dict[str, Any]
) -> SamplingParams:
    unknown = set(kw) - _SAMPLING
    if unknown:
        raise InvalidArgumentError(f"unknown argument(s): {', '.join(sorted(unknown))}")
    return SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, **kw)


def _n_logprobs(n: Any, name: str) -> int | None:
    if n is None or n is False:
        return None
    if n is True:
        return 0
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 20:
        raise InvalidArgumentError(f"{name} must be an integer between 0 and 20, got {n!r}")
    return n


class _Run:
    """One generation as text pieces, each with its tokens' log-probabilities."""

    def __init__(
        self,
        model: Any,
        parts: list[Any],
        params: SamplingParams,
        max_tokens: int | None,
        stop: Any,
        constraint: Any,
        n_logprobs: int | None,
    ) -> None:
        from .model import Generation

        self.model = model
        self.gen = Generation()
        self.text = TextStream(model.tokenizer.stream_decoder(), check_stop(stop))
        self._tokens = model._generate(
            parts, params, model._max_tokens(max_tokens), self.gen, constraint, n_logprobs
        )
        self.n_logprobs = n_logprobs

    def pieces(self) -> Iterator[tuple[str, list[int]]]:
        """(text, token indices whose text it holds) until the end."""
        pending: list[int] = []
        try:
            for tok in self._tokens:
                self.gen.tokens.append(tok)
                pending.append(len(self.gen.tokens) - 1)
                text, done = self.text.push(tok)
                if text or done:
                    yield text, pending
                    pending = []
                if done:
                    return
            text, _ = self.text.push(None)
            yield text, pending
        finally:
            self._tokens.close()

    @property
    def finish_reason(self) -> str:
        return "stop" if self.text.stopped else (self.gen.finish_reason or "stop")

    def usage(self) -> dict[str, int]:
        n_p, n_c = self.gen.n_prompt, len(self.gen.tokens)
        return {"prompt_tokens": n_p, "completion_tokens": n_c, "total_tokens": n_p + n_c}

    def token_text(self, i: int) -> str:
        return self.model.tokenizer.token_to_bytes(self.gen.tokens[i]).decode("utf-8", "ignore")

    def top(self, i: int) -> list[tuple[str, float]]:
        tok = self.model.tokenizer
        return [
            (tok.token_to_bytes(t).decode("utf-8", "ignore"), float(lp))
            for t, lp in self.gen.logprobs[i][1]
        ]

    def completion_logprobs(self, idx: list[int], offset: int) -> dict[str, Any] | None:
        """llama-cpp-python's ``CompletionLogprobs`` of tokens ``idx``."""
        if self.n_logprobs is None:
            return None
        out: dict[str, Any] = {
            "tokens": [],
            "text_offset": [],
            "token_logprobs": [],
            "top_logprobs": [],
        }
        for i in idx:
            text = self.token_text(i)
            out["tokens"].append(text)
            out["text_offset"].append(offset)
            out["token_logprobs"].append(float(self.gen.logprobs[i][0]))
            top = dict(self.top(i))
            top[text] = float(self.gen.logprobs[i][0])
            out["top_logprobs"].append(top)
            offset += len(text)
        return out

    def chat_logprobs(self, idx: list[int]) -> dict[str, Any] | None:
        """OpenAI's chat ``logprobs`` (``content`` entries with ``top_logprobs``)."""
        if self.n_logprobs is None:
            return None

        def entry(text: str, lp: float) -> dict[str, Any]:
            return {"token": text, "logprob": lp, "bytes": list(text.encode())}

        content = []
        for i in idx:
            e = entry(self.token_text(i), float(self.gen.logprobs[i][0]))
            e["top_logprobs"] = [entry(t, lp) for t, lp in self.top(i)]
            content.append(e)
        return {"content": content, "refusal": None}


def _head(kind: str, model: Any, model_name: str | None) -> dict[str, Any]:
    prefix = "cmpl-" if kind == "text_completion" else "chatcmpl-"
    return {
        "id": prefix + uuid.uuid4().hex,
        "object": kind,
        "created": int(time.time()),
        "model": model_name or model.path,
    }


def create_completion(
    model: Any,
    prompt: Any,
    *,
    max_tokens: int | None = 16,
    temperature: float = 0.8,
    top_p: float = 0.95,
    top_k: int = 40,
    min_p: float = 0.05,
    stop: Any = None,
    stream: bool = False,
    logprobs: int | None = None,
    echo: bool = False,
    grammar: str | None = None,
    response_format: dict[str, Any] | None = None,
    images: list[Any] | None = None,
    model_name: str | None = None,
    **kw: Any,
) -> Any:
    """An OpenAI ``text_completion`` for ``prompt`` (text or token ids), or
    with ``stream=True`` an iterator of its chunks. ``logprobs=N``: each
    token's log-probability and the N most likely (see
    ``csrc/llm/sampler.h``); other keywords: :class:`SamplingParams` fields
    (``seed``, ``logit_bias``, penalties).

    Example:
        >>> create_completion(m, "1, 2, 3,", max_tokens=4, temperature=0)  # doctest: +SKIP
        {'id': 'cmpl-...', 'object': 'text_completion', ..., 'choices': [{'text': ' 4, 5,', ...}]}
    """
    if echo:
        raise InvalidArgumentError("echo is not supported")
    params = _sampling(model, temperature, top_p, top_k, min_p, kw)
    n_lp = _n_logprobs(logprobs, "logprobs")
    g = grammar_for(response_format, grammar)
    constraint = GrammarConstraint(model, g) if g is not None else None
    parts = model._prompt_parts(prompt, images, False)
    run = _Run(model, parts, params, max_tokens, stop, constraint, n_lp)
    head = _head("text_completion", model, model_name)
    # as llama-cpp-python: offsets count from the end of the prompt's text
    offset = len(prompt) if isinstance(prompt, str) else len(model.detokenize(parts[0]))
    if stream:
        return _completion_chunks(run, head, offset)
    text = []
    idx: list[int] = []
    for piece, ids in run.pieces():
        text.append(piece)
        idx += ids
    return {
        **head,
        "choices": [
            {
                "text": "".join(text),
                "index": 0,
                "logprobs": run.completion_logprobs(idx, offset),
                "finish_reason": run.finish_reason,
            }
        ],
        "usage": run.usage(),
    }


def _completion_chunks(run: _Run, head: dict[str, Any], offset: int) -> Iterator[dict[str, Any]]:
    for piece, ids in run.pieces():
        if not piece and not ids:
            continue
        choice = {
            "text": piece,
            "index": 0,
            "logprobs": run.completion_logprobs(ids, offset),
            "finish_reason": None,
        }
        offset += len(piece)
        yield {**head, "choices": [choice]}
    final = {"text": "", "index": 0, "logprobs": None, "finish_reason": run.finish_reason}
    yield {**head, "choices": [final]}


def create_chat_completion(
    model: Any,
    messages: list[dict[str, Any]],
    *,
    max_tokens: int | None = None,
    temperature: float = 0.2,
    top_p: float = 0.95,
    top_k: int = 40,
    min_p: float = 0.05,
    stop: Any = None,
    stream: bool = False,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    response_format: dict[str, Any] | None = None,
    grammar: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    model_name: str | None = None,
    **kw: Any,
) -> Any:
    """An OpenAI ``chat.completion`` for ``messages`` (text and image parts),
    or with ``stream=True`` an iterator of ``chat.completion.chunk`` dicts.
    ``response_format`` / ``grammar`` constrain the answer (llguidance);
    ``tools`` go to the chat template, and calls in the Hermes / Qwen2.5
    format come back as ``message.tool_calls`` (``finish_reason`` =
    ``"tool_calls"``); ``tool_choice`` ``"required"`` or a named function
    forces a call.

    Example:
        >>> fmt = {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}
        >>> create_chat_completion(m, msgs, response_format=fmt)  # doctest: +SKIP
    """
    params = _sampling(model, temperature, top_p, top_k, min_p, kw)
    if top_logprobs is not None and not logprobs:
        raise InvalidArgumentError("top_logprobs needs logprobs=True")
    n_lp = _n_logprobs(top_logprobs or 0, "top_logprobs") if logprobs else None
    tools = check_tools(tools, tool_choice)
    use_tools = bool(tools) and tool_choice != "none"
    forced = tool_call_grammar(tools, tool_choice) if use_tools else None
    if forced is not None and (grammar is not None or response_format is not None):
        raise InvalidArgumentError("a forced tool_choice cannot be combined with a grammar")
    g = grammar_for(response_format, grammar) if forced is None else forced
    constraint = GrammarConstraint(model, g) if g is not None else None
    text, images = model._chat_prompt(messages, tools if use_tools else None)
    parts = model._prompt_parts(text, images, True)
    run = _Run(model, parts, params, max_tokens, stop, constraint, n_lp)
    head = _head("chat.completion", model, model_name)
    if stream:
        return _chat_chunks(run, head, use_tools)
    pieces = []
    idx: list[int] = []
    for piece, ids in run.pieces():
        pieces.append(piece)
        idx += ids
    message, finish = _message("".join(pieces), use_tools, run.finish_reason)
    choice = {
        "index": 0,
        "message": message,
        "logprobs": run.chat_logprobs(idx),
        "finish_reason": finish,
    }
    return {**head, "choices": [choice], "usage": run.usage()}


def _message(text: str, use_tools: bool, finish: str) -> tuple[dict[str, Any], str]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if use_tools:
        content, calls = parse_tool_calls(text)
        if calls:
            return {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"
    return message, finish


def _chat_chunks(run: _Run, head: dict[str, Any], use_tools: bool) -> Iterator[dict[str, Any]]:
    head = {**head, "object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> Any:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice]}

    yield chunk({"role": "assistant"})
    held: list[str] = []
    for piece, ids in run.pieces():
        if use_tools:  # a tool call is only known once whole: hold the text back
            held.append(piece)
        elif piece or ids:
            yield chunk({"content": piece}, run.chat_logprobs(ids))
    finish = run.finish_reason
    if use_tools:
        message, finish = _message("".join(held), True, finish)
        message.pop("role")
        if "tool_calls" in message:
            message["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
        yield chunk(message)
    yield chunk({}, None, finish)


__all__ = ["create_chat_completion", "create_completion"]
