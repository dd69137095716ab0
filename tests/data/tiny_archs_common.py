"""Shared parts of make_tiny_archs.py: settings, the tiny models' size and
initialisation, their tokenizers, and transformers' tokenizer and chat references.

Imported by make_tiny_archs.py and tiny_archs_bluelm.py; see make_tiny_archs.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent
LLAMA_CPP = Path(
    os.environ.get("LLAMA_CPP_DIR", "/tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp")
)
BLUELM_REPO = Path(os.environ.get("BLUELM_REPO", "/work/.mirror/vivo-ai-lab+BlueLM/repo"))
TEMPLATES = LLAMA_CPP / "models" / "templates"
VOCAB = 512
PROMPT_LEN = 80  # longer than every sliding window below (32)
WINDOW = 32
N_GREEDY = 16
INIT_STD = 0.08
TOKENIZER_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  two  spaces\n\nand\ttabs ",
    "I'm here, you're there, don't",
    "Numbers 12345 and 3.14",
    "Привет, мир! 你好 🙂",
    "def f(x):\n    return x * 2\n",
]
DATE = "26 Jul 2024"  # Llama 3.2's template prints today's date unless given one

# The Gemma 3 instruction models' chat template (google/gemma-3-*-it tokenizer_config.json).
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def conversations(system: bool, tools: bool) -> list[dict[str, Any]]:
    """The chat cases: (messages, tools, template kwargs, add_generation_prompt)."""
    user = {"role": "user", "content": "What is the capital of France?"}
    answer = {"role": "assistant", "content": "The capital of France is Paris."}
    follow = {"role": "user", "content": "  And of Italy?  "}
    cases: list[dict[str, Any]] = [
        {"messages": [user], "gen": True},
        {"messages": [user, answer, follow], "gen": True},
        {"messages": [user, answer], "gen": False},
    ]
    if system:
        sys_msg = {"role": "system", "content": "You are a terse geography tutor."}
        cases.append({"messages": [sys_msg, user, answer, follow], "gen": True})
    if tools:
        cases.append({"messages": [user], "tools": [WEATHER_TOOL], "gen": True})
    return cases


# --- tokenizers -------------------------------------------------------------------


def bpe_tokenizer(special: list[str], qwen_split: bool) -> Any:
    """A byte-level BPE trained on make_tiny_transformers' corpus (Qwen2's split regex)."""
    sys.path.insert(0, str(DATA))
    from make_tiny_transformers import training_text
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from bluelm_cpp.convert.tokenizer_keys import QWEN2_SPLIT

    tok = Tokenizer(models.BPE())
    if qwen_split:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    return tok


def spm_model(out: Path, *, gemma: bool, control: list[str], user: list[str], size: int) -> int:
    """A SentencePiece BPE with byte fallback: Llama's id layout, or Gemma's (no space prefix)."""
    import sentencepiece as spm

    sys.path.insert(0, str(DATA))
    from make_tiny_transformers import training_text

    ids: dict[str, Any] = (
        dict(
            pad_id=0,
            eos_id=1,
            bos_id=2,
            unk_id=3,
            pad_piece="<pad>",
            eos_piece="<eos>",
            bos_piece="<bos>",
        )
        if gemma
        else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    )
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text()),
        model_prefix=str(out / "tokenizer"),
        vocab_size=size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        add_dummy_prefix=not gemma,
        remove_extra_whitespaces=False,  # as Llama's, Mistral's and Gemma's models
        normalization_rule_name="identity",
        control_symbols=control,
        user_defined_symbols=user,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
        **ids,
    )
    (out / "tokenizer.vocab").unlink()
    return spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model")).vocab_size()


# --- models -------------------------------------------------------------------------


def common() -> dict[str, Any]:
    return {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-6,
        "initializer_range": INIT_STD,
    }


def randomise(model: Any, seed: int) -> None:
    """Norm weights and biases away from their ones/zeros defaults; Q and K scaled
    up so attention is sharp and positions (RoPE, windows) move the logits; all
    bf16-exact (the stored type)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    gemma = "Gemma" in type(model).__name__  # gemma's norms are (1 + w)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                p.copy_((0.5 if gemma else 3.0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("norm.weight"):
                p.copy_((0.0 if gemma else 1.0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("q_proj.weight", "k_proj.weight", "qkv_proj.weight")):
                p.mul_(4.0)
            elif name.endswith("o_proj.weight") and "BlueLM" in type(model).__name__:
                p.mul_(4.0)  # next to the LayerNorm'd embedding, attention needs weight
        for p in model.parameters():  # the weights as they are stored (bf16)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


SEEDS = {
    "qwen3": 31,
    "gemma2": 32,
    "gemma3": 33,
    "phi3": 34,
    "mistral": 35,
    "bluelm_2k": 36,
    "bluelm_32k": 37,
    "llama": 38,
    "qwen2": 39,
}


def _hf_tokenizer(d: Path, existing: bool) -> Any:
    """The folder's transformers tokenizer. tiny_llama/tiny_qwen2 name tokenizer classes
    that rebuild their own pre-tokenizer; their tokenizer.json is the tokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    return (PreTrainedTokenizerFast if existing else AutoTokenizer).from_pretrained(d)


def tokenizer_cases(d: Path, hf_tokenizer: bool, existing: bool) -> list[dict[str, Any]]:
    """transformers' ids of the test texts (BlueLM: none, its class is remote code)
    and, for a SentencePiece model, sentencepiece's own."""
    cases: list[dict[str, Any]] = [{"text": t} for t in TOKENIZER_TEXTS]
    if hf_tokenizer:
        tok = _hf_tokenizer(d, existing)
        for c in cases:
            c["ids"] = tok.encode(c["text"], add_special_tokens=False)
    if (d / "tokenizer.model").is_file():
        for c in cases:
            c["spm_ids"] = spm_ids(d, c["text"])
    return cases


def _special_texts(d: Path, sp: Any) -> dict[str, int]:
    """Texts split out before SentencePiece runs: added tokens and control pieces."""
    out = {
        sp.id_to_piece(i): i for i in range(sp.vocab_size()) if sp.is_control(i) or sp.is_unknown(i)
    }
    tj = d / "tokenizer.json"
    if tj.is_file():
        out.update(
            {a["content"]: a["id"] for a in json.loads(tj.read_text()).get("added_tokens", [])}
        )
    return out


def spm_ids(d: Path, text: str) -> list[int]:
    """sentencepiece's ids with special-token texts split out first (longest first) and
    each text fragment encoded on its own: llama.cpp's rule for SentencePiece vocabularies."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    specials = _special_texts(d, sp)
    frags: list[Any] = [text]
    for tok in sorted(specials, key=len, reverse=True):
        nxt: list[Any] = []
        for f in frags:
            if isinstance(f, int):
                nxt.append(f)
                continue
            for k, part in enumerate(f.split(tok)):
                if k:
                    nxt.append(specials[tok])
                if part:
                    nxt.append(part)
        frags = nxt
    ids: list[int] = []
    for f in frags:
        ids += [f] if isinstance(f, int) else sp.encode(f)
    return ids


def chat_cases(
    d: Path, chat: dict[str, Any], template: str | None, hf_tokenizer: bool, existing: bool
) -> list[dict[str, Any]]:
    """transformers' apply_chat_template text, the ids transformers gives that text and,
    for SentencePiece models, sentencepiece's ids by llama.cpp's rule."""
    from transformers import PreTrainedTokenizerFast

    if hf_tokenizer:
        tok = _hf_tokenizer(d, existing)
    else:  # BlueLM: its tokenizer class is remote code; transformers' renderer all the same
        from tokenizers import Tokenizer, models

        vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
            bos_token="<s>",
            eos_token="</s>",
        )
    if template is not None:
        tok.chat_template = template
    extra = dict(chat["extra"])
    if "date_string" in (tok.chat_template or ""):
        extra["date_string"] = DATE
    cases = []
    for case in conversations(chat["system"], chat["tools"]):
        text = tok.apply_chat_template(
            case["messages"],
            tools=case.get("tools"),
            tokenize=False,
            add_generation_prompt=case["gen"],
            **extra,
        )
        rec: dict[str, Any] = {**case, "kwargs": extra, "text": text}
        if hf_tokenizer:
            rec["ids"] = tok(text, add_special_tokens=False)["input_ids"]
        if (d / "tokenizer.model").is_file():
            rec["spm_ids"] = spm_ids(d, text)
        cases.append(rec)
    return cases
