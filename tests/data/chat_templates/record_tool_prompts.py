"""Renders tool conversations with transformers' chat-template renderer
(the reference) into tool_prompts.json, for tests/test_tools.py.

    python tests/data/chat_templates/record_tool_prompts.py   # needs transformers
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
TEMPLATES = [
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather of a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    }
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
    }
]
ANSWERED = ASK + [
    {"role": "assistant", "content": "", "tool_calls": CALLS},
    {"role": "tool", "name": "get_weather", "content": "18 degrees"},
]


def main() -> None:
    import transformers
    from transformers.utils.chat_template_utils import render_jinja_template

    out = {
        "transformers": transformers.__version__,
        "tools": TOOLS,
        "ask": ASK,
        "answered": ANSWERED,
        "renders": {},
    }
    for name in TEMPLATES:
        tpl = (HERE / name).read_text(encoding="utf-8")
        ask, _ = render_jinja_template(
            [ASK], tools=TOOLS, chat_template=tpl, add_generation_prompt=True
        )
        done, _ = render_jinja_template([ANSWERED], tools=TOOLS, chat_template=tpl)
        out["renders"][name] = {"ask": ask[0], "answered": done[0]}
    (HERE / "tool_prompts.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
