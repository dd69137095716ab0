"""Tools: the chat template renders them as transformers does (recorded by
tests/data/chat_templates/record_tool_prompts.py), tool calls in the
template's own format (Qwen2.5 / Hermes ``<tool_call>`` JSON, as the template
renders an assistant's calls) parse into ``message.tool_calls``, and a forced
``tool_choice`` yields a call whose arguments validate against the tool's schema."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import jsonschema
import pytest
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

import bluelm_cpp
from bluelm_cpp.chat_template import render_chat
from bluelm_cpp.errors import InvalidArgumentError
from bluelm_cpp.tools import parse_tool_calls

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
REC = json.loads((TEMPLATES / "tool_prompts.json").read_text(encoding="utf-8"))
QWEN = "Qwen-Qwen2.5-7B-Instruct.jinja"


@pytest.mark.parametrize("name", sorted(REC["renders"]))
def test_tools_render_as_transformers(name: str) -> None:
    tpl = (TEMPLATES / name).read_text(encoding="utf-8")
    want = REC["renders"][name]
    assert render_chat(tpl, REC["ask"], tools=REC["tools"]) == want["ask"]
    got = render_chat(tpl, REC["answered"], tools=REC["tools"], add_generation_prompt=False)
    assert got == want["answered"]


@pytest.mark.parametrize("name", sorted(REC["renders"]))
def test_parse_the_templates_own_call_format(name: str) -> None:
    """The assistant turn as the template itself renders a call parses back to it."""
    rendered = REC["renders"][name]["answered"]
    turn = rendered.split("<|im_start|>assistant\n", 1)[1].split("<|im_end|>", 1)[0]
    content, calls = parse_tool_calls(turn)
    want = REC["answered"][1]["tool_calls"]
    assert content is None and len(calls) == len(want)
    for got, ref in zip(calls, want):
        assert got["type"] == "function" and got["id"].startswith("call_")
        assert got["function"]["name"] == ref["function"]["name"]
        assert json.loads(got["function"]["arguments"]) == ref["function"]["arguments"]
    text, none = parse_tool_calls("no call here <tool_call>not json</tool_call>")
    assert none == [] and text.startswith("no call")


@pytest.fixture(scope="module")
def qwen_templated(smollm2_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's weights with Qwen2.5's chat template (gguf-py's own metadata copier)."""
    out = tmp_path_factory.mktemp("tools") / "smollm2_qwen_template.gguf"
    reader = gguf.GGUFReader(str(smollm2_file))
    writer = gguf.GGUFWriter(str(out), arch="llama", endianess=reader.endianess)
    tpl = (TEMPLATES / QWEN).read_text(encoding="utf-8")
    new = {"tokenizer.chat_template": MetadataDetails(gguf.GGUFValueType.STRING, tpl)}
    copy_with_new_metadata(reader, writer, new, [])
    return out


def test_forced_tool_call_validates(qwen_templated: Path) -> None:
    tool = REC["tools"][0]
    choice = {"type": "function", "function": {"name": "get_weather"}}
    with bluelm_cpp.Model(qwen_templated, n_ctx=1024, n_threads=2) as m:
        assert m.format_chat(REC["ask"], tools=REC["tools"]) == REC["renders"][QWEN]["ask"]
        out = m.create_chat_completion(
            REC["ask"], tools=REC["tools"], tool_choice=choice, max_tokens=60, temperature=0
        )
        c = out["choices"][0]
        assert c["finish_reason"] == "tool_calls", c
        call = c["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather"
        jsonschema.validate(
            json.loads(call["function"]["arguments"]), tool["function"]["parameters"]
        )
        chunks = list(
            m.create_chat_completion(
                REC["ask"],
                tools=REC["tools"],
                tool_choice="required",
                max_tokens=60,
                temperature=0,
                stream=True,
            )
        )
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
        delta = next(
            ch["choices"][0]["delta"] for ch in chunks if "tool_calls" in ch["choices"][0]["delta"]
        )
        assert delta["tool_calls"][0]["function"]["name"] == "get_weather"
        with pytest.raises(InvalidArgumentError, match="not among the tools"):
            m.create_chat_completion(
                REC["ask"],
                tools=REC["tools"],
                tool_choice={"type": "function", "function": {"name": "nope"}},
            )
        with pytest.raises(InvalidArgumentError, match="tools must be"):
            m.create_chat_completion(REC["ask"], tools=[{"name": "x"}])
