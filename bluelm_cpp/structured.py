"""Constrained decoding through llguidance (a maintained library; no grammar
engine of our own): JSON schemas, "any JSON object", Lark and GBNF grammars.

The runtime's public hook is a per-step allowed-token mask: the decode step
(``_core.Context.step(mask)``) takes one bit per token (llguidance's bitmask
layout) and samples only among the allowed tokens. A constraint is any object
with ``new_mask()``, ``fill_mask(mask)`` and ``accept(token)``;
:class:`GrammarConstraint` is llguidance's, built from the model's token byte
table (:meth:`bluelm_cpp.Model.token_bytes`).

Example:
    >>> g = grammar_for(response_format={"type": "json_schema",
    ...     "json_schema": {"schema": {"type": "object"}}})  # doctest: +SKIP
    >>> c = GrammarConstraint(model, g)  # doctest: +SKIP
    >>> model.generate("JSON:", constraint=c)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

_LOCK = threading.Lock()


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise InvalidArgumentError(
            "structured output needs llguidance: pip install llguidance"
        ) from e
    return llguidance


def grammar_for(
    response_format: dict[str, Any] | None = None, grammar: str | None = None
) -> str | None:
    """The llguidance grammar of an OpenAI ``response_format`` (``json_object``,
    ``json_schema``) or of a ``grammar`` text (Lark, or llama.cpp's GBNF);
    None when neither constrains the output.

    Example:
        >>> grammar_for({"type": "text"}) is None
        True
    """
    llg = _llguidance()
    if grammar is not None and response_format not in (None, {"type": "text"}):
        raise InvalidArgumentError("give either response_format or grammar, not both")
    if grammar is not None:
        if not isinstance(grammar, str) or not grammar.strip():
            raise InvalidArgumentError("grammar must be a non-empty Lark or GBNF text")
        try:
            # llguidance reads Lark, and converts GBNF (llama.cpp's format) itself
            return str(llg.grammar_from("grammar", grammar))
        except ValueError as e:
            raise InvalidArgumentError(f"grammar: {e}") from None
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise InvalidArgumentError("response_format must be a dict with a 'type'")
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        schema: Any = response_format.get("schema", {"type": "object"})
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidArgumentError("response_format json_schema needs a 'json_schema' object")
        # OpenAI: {"name": ..., "schema": {...}}; also accept the bare schema
        schema = spec.get("schema", spec if "type" in spec or "properties" in spec else None)
        if not isinstance(schema, dict):
            raise InvalidArgumentError("response_format json_schema has no 'schema' object")
    else:
        raise InvalidArgumentError(
            f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}"
        )
    try:
        return str(llg.LLMatcher.grammar_from_json_schema(json.dumps(schema)))
    except (ValueError, TypeError) as e:
        raise InvalidArgumentError(f"response_format schema: {e}") from None


class _TokenTable:
    """What llguidance's TokenizerWrapper reads: the token byte strings, the
    end ids, and a tokenize call."""

    def __init__(self, model: Any) -> None:
        tok = model.tokenizer
        self.tokens = model.token_bytes()
        eog = sorted(tok.eog_ids)
        self.eos_token_id = tok.eos_id if tok.eos_id is not None else eog[0]
        self.bos_token_id = tok.bos_id
        self.special_token_ids = [
            i for i in range(len(self.tokens)) if self.tokens[i][:1] == b"\xff"
        ]
        self._encode = tok.encode

    def __call__(self, text: bytes) -> list[int]:
        return self._encode(text.decode("utf-8", errors="replace"), add_special=False)


def lltokenizer(model: Any) -> Any:
    """llguidance's tokenizer for ``model`` (built once per model, ~1 s)."""
    with _LOCK:
        cached = getattr(model, "_llg_tokenizer", None)
        if cached is None:
            llg = _llguidance()
            table = _TokenTable(model)
            cached = llg.LLTokenizer(
                llg.TokenizerWrapper(table),
                n_vocab=model.n_vocab,
                eos_token=sorted(model.tokenizer.eog_ids),
            )
            model._llg_tokenizer = cached
        return cached


class GrammarConstraint:
    """An llguidance matcher as a per-step token mask.

    Example:
        >>> c = GrammarConstraint(model, grammar_for({"type": "json_object"}))  # doctest: +SKIP
    """

    def __init__(self, model: Any, grammar: str) -> None:
        llg = _llguidance()
        tok = lltokenizer(model)
        err = llg.LLMatcher.validate_grammar(grammar, tok)
        if err and not err.startswith("WARNING"):
            raise InvalidArgumentError(f"the grammar is not valid: {err}")
        self._matcher = llg.LLMatcher(tok, grammar, log_level=0)
        if self._matcher.is_error():
            raise InvalidArgumentError(f"the grammar is not valid: {self._matcher.get_error()}")
        self.n_vocab = int(model.n_vocab)

    def new_mask(self) -> np.ndarray:
        """A mask buffer: one bit per token, 32 to an int32."""
        return np.zeros((self.n_vocab + 31) // 32, np.int32)

    def fill_mask(self, mask: np.ndarray) -> None:
        """The tokens allowed next (llguidance computes it without the GIL)."""
        self._matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise InvalidArgumentError(f"constraint error: {self._matcher.get_error()}")

    def is_finished(self) -> bool:
        """True once the grammar is complete and nothing more may follow."""
        return bool(self._matcher.is_stopped())


__all__ = ["GrammarConstraint", "grammar_for", "lltokenizer"]
