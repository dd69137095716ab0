"""Render OpenAI-style chat messages with a model's Jinja2 chat template.

Rendering follows Hugging Face transformers' ``apply_chat_template``: a
sandboxed Jinja2 environment with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, ``{% generation %}`` blocks, the globals
``raise_exception`` and ``strftime_now``, a ``tojson`` filter that keeps
non-ASCII text, and the variables ``messages``, ``add_generation_prompt``,
``bos_token``, ``eos_token``, ``tools`` and ``documents`` (plus any extra
keyword arguments).

Message content may be a string or a list of parts such as
``{"type": "text", "text": "..."}``. Lists are passed to the template as they
are, like transformers does, when the template handles them. Many templates
(SmolLM2's, for one) only handle strings: for those the text parts of a list
are joined with ``"\\n"`` (as llama.cpp does) and other parts (images) are
dropped, so put an image placeholder into a text part before rendering if the
model needs one. Which kind a template is gets found by rendering a probe
message both ways, once per template. Conversely a string is wrapped into one
text part for a template that only handles lists.

Example:
    >>> from bluelm_cpp.chat_template import render_chat
    >>> print(render_chat(None, [{"role": "user", "content": "Hi"}]), end="")
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import InvalidArgumentError

__all__ = ["DEFAULT_CHAT_TEMPLATE", "render_chat"]

#: ChatML, used when a model has no ``tokenizer.chat_template``.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_PROBE = "bluelm-probe-5f3c1a"


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (transformers' assistant-mask
    markers) renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return str(caller())


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters; templates expect plain JSON
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationBlock, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise InvalidArgumentError(
            f"chat template has a syntax error at line {e.lineno}: {e.message}"
        ) from None


@lru_cache(maxsize=32)
def _capabilities(template: str) -> tuple[bool, bool]:
    """(handles string content, handles a list of parts), by rendering a probe."""
    compiled = _compile(template)

    def works(content: Any) -> bool:
        try:
            out = compiled.render(
                messages=[{"role": "user", "content": content}],
                add_generation_prompt=True,
                bos_token="",
                eos_token="",
                tools=None,
                documents=None,
            )
        except Exception:
            return False
        # a string-only template prints a list as its Python repr
        return _PROBE in out and "'type'" not in out

    return works(_PROBE), works([{"type": "text", "text": _PROBE}])


def _check_messages(messages: Any) -> list[Mapping[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidArgumentError("messages must be a list of dicts with 'role' and 'content'")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidArgumentError(f"messages[{i}] must be a dict, not {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidArgumentError(f"messages[{i}] needs a non-empty string 'role'")
        if "content" not in m:
            if "tool_calls" in m:
                continue
            raise InvalidArgumentError(f"messages[{i}] ({role}) has no 'content'")
        content = m["content"]
        if content is None or isinstance(content, str):
            continue
        if isinstance(content, (bytes, Mapping)) or not isinstance(content, Sequence):
            raise InvalidArgumentError(
                f"messages[{i}] content must be a string or a list of parts, "
                f"not {type(content).__name__}"
            )
        for j, part in enumerate(content):
            where = f"messages[{i}] content[{j}]"
            if not isinstance(part, Mapping):
                raise InvalidArgumentError(f"{where} must be a dict, not {type(part).__name__}")
            kind = part.get("type")
            if not isinstance(kind, str):
                raise InvalidArgumentError(f"{where} needs a string 'type'")
            if kind == "text" and not isinstance(part.get("text"), str):
                raise InvalidArgumentError(f"{where} is a text part without a string 'text'")
    return list(messages)


def _join_text(parts: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(p["text"] for p in parts if p.get("type") == "text")


def _adapt(messages: list[Mapping[str, Any]], strings: bool, parts: bool) -> list[Any]:
    """Give each message's content the form the template handles (copies, never mutates)."""
    out: list[Any] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str) and parts and not strings:
            m = {**m, "content": [{"type": "text", "text": content}]}
        elif isinstance(content, Sequence) and not isinstance(content, str):
            if strings and not parts:
                m = {**m, "content": _join_text(content)}
        out.append(m)
    return out


def render_chat(
    template: str | None,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render ``messages`` with the Jinja2 chat ``template`` (ChatML when None).

    ``extra`` keyword arguments become template variables too (``tools=[...]``,
    ``enable_thinking=False``, ...). A template error (syntax, undefined
    variable, ``raise_exception``) or a malformed message raises
    :class:`~bluelm_cpp.errors.InvalidArgumentError`.

    Example:
        >>> tpl = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\\n{% endfor %}"
        >>> render_chat(tpl, [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        '[user] Hi\\n'
    """
    if template is None:
        template = DEFAULT_CHAT_TEMPLATE
    if not isinstance(template, str):
        raise InvalidArgumentError(
            f"chat template must be a string or None, not {type(template).__name__}"
        )
    if not template.strip():
        raise InvalidArgumentError("chat template is empty")
    checked = _check_messages(messages)
    compiled = _compile(template)
    strings, parts = _capabilities(template)
    context: dict[str, Any] = {"tools": None, "documents": None}
    context.update(extra)
    context.update(
        messages=_adapt(checked, strings, parts),
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    )
    try:
        return compiled.render(**context)
    except jinja2.exceptions.TemplateError as e:
        raise InvalidArgumentError(f"chat template error: {e}") from None
    except Exception as e:  # a template bug surfaces as TypeError, KeyError, ...
        raise InvalidArgumentError(
            f"chat template failed to render: {type(e).__name__}: {e}"
        ) from None
