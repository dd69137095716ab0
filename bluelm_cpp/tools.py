"""Tool calls (OpenAI ``tools`` / ``tool_choice``) in the Hermes / Qwen2.5
format, the one those chat templates describe to the model::

    <tool_call>
    {"name": <function-name>, "arguments": <args-json-object>}
    </tool_call>

:func:`parse_tool_calls` turns such blocks of the model's output into
``message.tool_calls``; :func:`tool_call_grammar` is the Lark grammar (for
llguidance) that forces a call when ``tool_choice`` asks for one.

Example:
    >>> content, calls = parse_tool_calls(
    ...     '<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')
    >>> content, calls[0]["function"]
    (None, {'name': 'f', 'arguments': '{"x": 1}'})
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from .errors import InvalidArgumentError

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def check_tools(tools: Any, tool_choice: Any) -> list[dict[str, Any]]:
    """``tools`` as a list of OpenAI function specs, checked with ``tool_choice``."""
    if tools is None:
        if tool_choice not in (None, "none", "auto"):
            raise InvalidArgumentError("tool_choice needs tools")
        return []
    if not isinstance(tools, list) or not all(
        isinstance(t, dict)
        and t.get("type") == "function"
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
        for t in tools
    ):
        raise InvalidArgumentError(
            "tools must be a list of {'type': 'function', 'function': {'name': ..., ...}}"
        )
    if tool_choice not in (None, "none", "auto", "required") and not _forced_name(tool_choice):
        raise InvalidArgumentError(
            "tool_choice must be 'none', 'auto', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}"
        )
    name = _forced_name(tool_choice)
    if name is not None and name not in {t["function"]["name"] for t in tools}:
        raise InvalidArgumentError(f"tool_choice names '{name}', which is not among the tools")
    return tools


def _forced_name(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        return name if isinstance(name, str) else None
    return None


def tool_call_grammar(tools: list[dict[str, Any]], tool_choice: Any) -> str | None:
    """A Lark grammar (llguidance's dialect, ``%json`` for the arguments'
    schema) forcing one tool call when ``tool_choice`` is ``"required"`` or
    names a function; None otherwise (the model chooses)."""
    name = _forced_name(tool_choice)
    if tool_choice != "required" and name is None:
        return None
    chosen = [t["function"] for t in tools if name is None or t["function"]["name"] == name]
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f["name"]},
                "arguments": f.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in chosen
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return 'start: "<tool_call>\\n" call "\\n</tool_call>"\ncall: %json ' + json.dumps(schema)


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The text outside ``<tool_call>`` blocks (None when empty) and the calls
    of the blocks whose JSON has a ``name``; ``arguments`` as a JSON string,
    as OpenAI returns them."""
    calls = []
    for m in _BLOCK.finditer(text):
        try:
            obj = json.loads(m.group(1))
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        calls.append(
            {
                "id": "call_" + uuid.uuid4().hex[:24],
                "type": "function",
                "function": {
                    "name": obj["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    if not calls:
        return text, []
    rest = _BLOCK.sub("", text).strip()
    return (rest or None), calls


__all__ = ["check_tools", "parse_tool_calls", "tool_call_grammar"]
