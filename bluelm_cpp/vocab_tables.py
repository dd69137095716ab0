"""llama.cpp's vocabulary facts that the tokenizer follows: GGUF token types and
attribute bits, the pre-tokenizer regexes named by ``tokenizer.ggml.pre``, the
token texts llama.cpp recognises as end-of-generation / fill-in-the-middle
tokens, and the GPT-2 byte alphabet.

Example:
    >>> from bluelm_cpp.vocab_tables import _PRE_TYPES
    >>> "smollm" in _PRE_TYPES
    True
"""

from __future__ import annotations

# GGUF token types (tokenizer.ggml.token_type)
_TYPE_UNDEFINED = 0
_TYPE_NORMAL = 1
_TYPE_UNKNOWN = 2
_TYPE_CONTROL = 3
_TYPE_USER_DEFINED = 4
_TYPE_UNUSED = 5
_TYPE_BYTE = 6

# llama.cpp's token attribute bits; a token can gain CONTROL on top of its type
_A_UNKNOWN = 1 << 0
_A_UNUSED = 1 << 1
_A_NORMAL = 1 << 2
_A_CONTROL = 1 << 3
_A_USER_DEFINED = 1 << 4
_A_BYTE = 1 << 5

_TYPE_TO_ATTR = {
    _TYPE_UNDEFINED: 0,
    _TYPE_NORMAL: _A_NORMAL,
    _TYPE_UNKNOWN: _A_UNKNOWN,
    _TYPE_CONTROL: _A_CONTROL,
    _TYPE_USER_DEFINED: _A_USER_DEFINED,
    _TYPE_UNUSED: _A_UNUSED,
    _TYPE_BYTE: _A_BYTE,
}

# --- pre-tokenizer regexes, as llama.cpp's llm_tokenizer_bpe lists them ------
# llama.cpp runs the GPT-2 and Llama-3 expressions through hand-written
# matchers that behave like these regexes with a trailing "|\s+".
_RE_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_RE_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RES_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _RE_GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")
_RES_FALCON = (r"[\p{P}\$\+<=>\^~\|`]+", _RE_GPT2, r"[0-9][0-9][0-9]")
_RES_SMOLLM = (r"\p{N}", _RE_GPT2)
_RES_PORO = (r" ?[^(\s|.,!?…。，、।۔،)]+",)


class _Pre:
    """What one ``tokenizer.ggml.pre`` value means to llama.cpp."""

    __slots__ = ("regexes", "ignore_merges", "add_bos", "no_bos")

    def __init__(
        self,
        regexes: tuple[str, ...],
        ignore_merges: bool = False,
        add_bos: bool = False,
        no_bos: bool = False,
    ) -> None:
        self.regexes = regexes
        self.ignore_merges = ignore_merges
        self.add_bos = add_bos
        self.no_bos = no_bos


def _pre_table() -> dict[str, _Pre]:
    table: dict[str, _Pre] = {"": _Pre(_RES_DEFAULT), "default": _Pre(_RES_DEFAULT)}
    llama3 = _Pre((_RE_LLAMA3,), ignore_merges=True, add_bos=True)
    for name in (
        "llama3",
        "llama-v3",
        "llama-bpe",
        "falcon3",
        "falcon-h1",
        "pixtral",
        "midm-2.0",
        "lfm2",
        "jina-v5-nano",
    ):
        table[name] = llama3
    for name in ("dbrx", "smaug-bpe"):
        table[name] = _Pre((_RE_LLAMA3,))
    for name in ("glm4", "chatglm-bpe"):
        table[name] = _Pre((_RE_LLAMA3,), no_bos=True)
    table["falcon"] = _Pre(_RES_FALCON)
    for name in (
        "gpt-2",
        "phi-2",
        "mpt",
        "olmo",
        "jais",
        "trillion",
        "granite-docling",
        "jina-es",
        "jina-de",
        "gigachat",
        "jina-v2-es",
        "jina-v2-de",
        "a.x-4.0",
        "mellum",
        "modern-bert",
        "exaone4",
    ):
        table[name] = _Pre((_RE_GPT2,))
    for name in (
        "smollm",
        "starcoder",
        "refact",
        "command-r",
        "codeshell",
        "exaone",
        "minerva-7b",
        "mellum2",
    ):
        table[name] = _Pre(_RES_SMOLLM)
    for name in (
        "qwen2",
        "deepseek-r1-qwen",
        "kormo",
        "f2llmv2",
        "megrez",
        "stablelm2",
        "hunyuan",
        "solar-open",
    ):
        table[name] = _Pre((_RE_QWEN2,))
    for name in ("poro-chat", "bloom", "gpt3-finnish"):
        table[name] = _Pre(_RES_PORO)
    return table


_PRE_TYPES = _pre_table()

# --- token texts llama.cpp recognises (llama-vocab.cpp, load) ----------------
_EOT_TEXTS = (
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
)
_EOM_TEXTS = ("<|eom_id|>",)
_FIM_PRE_TEXTS = (
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
)
_FIM_SUF_TEXTS = (
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
)
_FIM_MID_TEXTS = (
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
)
_FIM_PAD_TEXTS = ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]")
_FIM_REP_TEXTS = ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>")
_FIM_SEP_TEXTS = ("<|file_sep|>",)
_EOG_TEXTS = frozenset(
    (
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<eos>",
        "<turn|>",
        "<|tool_response>",
        "<｜end▁of▁sentence｜>",
        "[e~[",
    )
)
# gpt-oss: llama.cpp always renders these
_ALWAYS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")

_SPACE_MARK = "\u2581"  # '▁', SentencePiece's visible space


def _gpt2_byte_alphabet() -> list[str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = [""] * 256
    for b in printable:
        chars[b] = chr(b)
    n = 0
    for b in range(256):
        if not chars[b]:
            chars[b] = chr(256 + n)
            n += 1
    return chars


_BYTE_CHARS = _gpt2_byte_alphabet()
_BYTE_OF_CHAR = {c: b for b, c in enumerate(_BYTE_CHARS)}


def _byte_decode_table() -> dict[int, str]:
    # alphabet character -> the byte it stands for, as a latin-1 character
    table = {ord(c): chr(b) for b, c in enumerate(_BYTE_CHARS)}
    # U+0080..U+00A0 and U+00AD are not in the alphabet; keep them as UTF-8
    for cp in [*range(0x80, 0xA1), 0xAD]:
        table[cp] = chr(cp).encode("utf-8").decode("latin-1")
    return table


_BYTE_DECODE = _byte_decode_table()


def _byte_level_to_bytes(text: str) -> bytes:
    try:
        return text.translate(_BYTE_DECODE).encode("latin-1")
    except UnicodeEncodeError:
        # a character outside the byte alphabet: keep it as UTF-8 (llama.cpp
        # writes an "[UNK_BYTE_...]" marker instead)
        out = bytearray()
        for c in text:
            b = _BYTE_OF_CHAR.get(c)
            out += c.encode("utf-8", "surrogatepass") if b is None else bytes([b])
        return bytes(out)


def _parse_byte_token(text: str) -> int | None:
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        try:
            return int(text[3:5], 16)
        except ValueError:
            return None
    return None
