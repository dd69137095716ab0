"""Tokenizer files -> llama.cpp's ``tokenizer.ggml.*`` GGUF keys.

Two sources, tried in this order (as llama.cpp's converter does for LLaMA):

* ``tokenizer.model`` (SentencePiece): ``tokenizer.ggml.model = "llama"``,
  pre ``"default"``, tokens with scores and types (normal, unknown, control,
  unused, byte), plus ``added_tokens.json``, the ``added_tokens_decoder`` of
  tokenizer_config.json and the ``added_tokens`` of tokenizer.json as
  user-defined/control tokens (special ones control, as llama.cpp's Phi-3 reader).
* ``tokenizer.json`` with a byte-level BPE model: ``tokenizer.ggml.model =
  "gpt2"``, tokens, types, merges and ``tokenizer.ggml.pre``.

Choosing ``tokenizer.ggml.pre``: llama.cpp encodes a fixed text
(:data:`CHKTXT`) with the tokenizer and looks the SHA-256 of the token ids up
in a table. We do the same with the ``tokenizers`` library for the
pre-tokenizers this project implements (:data:`PRE_HASHES`); when the hash is
unknown (a tokenizer trained from scratch has its own ids) we match the
structure of the ``pre_tokenizer`` in tokenizer.json instead:

* ``ByteLevel(use_regex=true)`` alone -> ``gpt-2``
* ``Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]`` -> ``smollm``
* ``Sequence[Split(Llama 3 regex), ByteLevel(use_regex=false)]`` -> ``llama-bpe``
* ``Sequence[Split(Qwen2 regex), ByteLevel(use_regex=false)]`` -> ``qwen2``

Anything else is refused (a wrong pre-tokenizer silently changes tokenization).

Special token ids, ``add_bos``/``add_eos``, merges and
``tokenizer.chat_template`` come from gguf-py's :class:`gguf.SpecialVocab`
(tokenizer_config.json, config.json, chat_template.jinja/json).

Example:
    >>> from bluelm_cpp.convert.tokenizer_keys import read_tokenizer
    >>> tok = read_tokenizer("SmolLM2-135M-Instruct", n_vocab=49152)   # doctest: +SKIP
    >>> (tok.model, tok.pre)                                           # doctest: +SKIP
    ('gpt2', 'smollm')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from ..errors import ModelFormatError

# The text llama.cpp's convert_hf_to_gguf.py encodes to fingerprint a BPE pre-tokenizer.
CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n"
    "\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f (multiple emojis concatenated) "
    "\u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785"
    "\U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= "
    "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438"
    " ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
    "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# sha256(str(token ids of CHKTXT)) -> tokenizer.ggml.pre, from llama.cpp's table,
# limited to the pre-tokenizers this project implements.
PRE_HASHES: dict[str, str] = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
}

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

logger = logging.getLogger(__name__)


@dataclass
class TokenizerKeys:
    """Everything written under ``tokenizer.*``."""

    model: str  # "gpt2" or "llama"
    pre: str
    tokens: list[Any]  # str (BPE) or bytes (SentencePiece)
    token_types: list[int]
    scores: list[float] | None
    special: gguf.SpecialVocab
    source: Path
    add_space_prefix: bool | None = None
    notes: list[str] = field(default_factory=list)

    def write(self, w: gguf.GGUFWriter) -> None:
        """Add the keys to a GGUF writer."""
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        w.add_token_types(self.token_types)
        if self.add_space_prefix is not None:
            w.add_add_space_prefix(self.add_space_prefix)
        self.special.add_to_gguf(w, quiet=True)


def looks_special(text: str) -> bool:
    """llama.cpp's rule for added tokens that act as control tokens.

    Example:
        >>> looks_special("<|im_end|>"), looks_special("hello")
        (True, False)
    """
    return (
        text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
        or (text.startswith("<unused") and text.endswith(">"))
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: cannot read JSON: {e}") from e


def _is_byte_level(tok: dict[str, Any]) -> bool:
    def has_byte_level(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if node.get("type") == "ByteLevel":
            return True
        return any(has_byte_level(n) for n in node.get("pretokenizers", []) or [])

    return has_byte_level(tok.get("pre_tokenizer")) or has_byte_level(tok.get("decoder"))


def pre_from_structure(pre_tokenizer: Any) -> str | None:
    """Name the pre-tokenizer from tokenizer.json's ``pre_tokenizer`` node.

    Example:
        >>> pre_from_structure({"type": "ByteLevel", "use_regex": True})
        'gpt-2'
    """
    if not isinstance(pre_tokenizer, dict):
        return None
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel":
        return "gpt-2" if pre_tokenizer.get("use_regex", True) else None
    if kind != "Sequence":
        return None
    parts = pre_tokenizer.get("pretokenizers") or []
    types = [p.get("type") if isinstance(p, dict) else None for p in parts]
    if types == ["Digits", "ByteLevel"]:
        if parts[0].get("individual_digits") and parts[1].get("use_regex", True):
            return "smollm"
        return None
    if types == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        pattern = parts[0].get("pattern") or {}
        regex = pattern.get("Regex") if isinstance(pattern, dict) else None
        if parts[0].get("behavior") not in (None, "Isolated"):
            return None
        return {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}.get(regex or "")
    return None


def pre_from_hash(tokenizer_json: Path) -> str | None:
    """llama.cpp's fingerprint: hash of the token ids of :data:`CHKTXT`."""
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - tokenizers is a dependency
        return None
    try:
        ids = Tokenizer.from_file(str(tokenizer_json)).encode(CHKTXT).ids
    except Exception as e:  # a tokenizer.json newer than the installed library
        logger.debug("cannot run %s: %s", tokenizer_json, e)
        return None
    return PRE_HASHES.get(hashlib.sha256(str(ids).encode()).hexdigest())


def _vocab_size(n_vocab: int | None, fallback: int, where: Path) -> int:
    if n_vocab is None:
        return fallback
    if fallback > n_vocab:
        raise ModelFormatError(
            f"{where}: tokenizer has {fallback} tokens but config.json vocab_size is {n_vocab}"
        )
    return n_vocab


def _read_bpe(model_dir: Path, n_vocab: int | None) -> TokenizerKeys:
    path = model_dir / "tokenizer.json"
    tok = _read_json(path)
    model = tok.get("model") if isinstance(tok, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or not _is_byte_level(tok):
        kind = model.get("type") if isinstance(model, dict) else None
        raise ModelFormatError(
            f"{path}: only byte-level BPE tokenizers are supported from tokenizer.json "
            f"(this one is {kind!r}); a SentencePiece model needs its tokenizer.model"
        )
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ModelFormatError(f"{path}: model.vocab is not a token -> id object")
    by_id: dict[int, str] = {int(i): t for t, i in vocab.items()}
    added: dict[int, dict[str, Any]] = {}
    for a in tok.get("added_tokens") or []:
        if (
            isinstance(a, dict)
            and isinstance(a.get("id"), int)
            and isinstance(a.get("content"), str)
        ):
            by_id[a["id"]] = a["content"]
            added[a["id"]] = a
    if not by_id:
        raise ModelFormatError(f"{path}: empty vocabulary")
    size = _vocab_size(n_vocab, max(by_id) + 1, path)
    tokens: list[Any] = []
    types: list[int] = []
    for i in range(size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            if added[i].get("special") or looks_special(text):
                types.append(gguf.TokenType.CONTROL)
            else:
                text = text.replace("\u2581", " ")  # pre-normalise user-defined spaces
                types.append(gguf.TokenType.USER_DEFINED)
            tokens.append(text)
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)
    pre = pre_from_hash(path) or pre_from_structure(tok.get("pre_tokenizer"))
    if pre is None:
        raise ModelFormatError(
            f"{path}: byte-level BPE pre-tokenizer not recognised "
            f"({json.dumps(tok.get('pre_tokenizer'))[:200]}); supported: gpt-2, smollm, "
            "llama-bpe, qwen2"
        )
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=size)
    if not special.merges:
        raise ModelFormatError(f"{path}: BPE tokenizer has no merges")
    return TokenizerKeys("gpt2", pre, tokens, [int(t) for t in types], None, special, path)


def _read_sentencepiece(model_dir: Path, n_vocab: int | None) -> TokenizerKeys:
    path = model_dir / "tokenizer.model"
    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError as e:
        raise ModelFormatError(
            f"{path}: reading a SentencePiece tokenizer needs the sentencepiece package: "
            "`pip install sentencepiece`"
        ) from e
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except Exception as e:  # sentencepiece raises OSError or RuntimeError
        raise ModelFormatError(f"{path}: not a valid SentencePiece model: {e}") from e
    size = _vocab_size(n_vocab, sp.vocab_size(), path)
    notes: list[str] = []
    tokens: list[Any] = [f"[PAD{i}]".encode() for i in range(size)]
    scores = [-10000.0] * size
    types = [int(gguf.TokenType.UNUSED)] * size
    for i in range(sp.vocab_size()):
        kind = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            kind = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            kind = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            kind = gguf.TokenType.BYTE
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = float(sp.GetScore(i))
        types[i] = int(kind)

    def put_added(tid: int, text: str, control: bool, where: Path) -> None:
        if not 0 <= tid < size:
            raise ModelFormatError(f"{where}: added token {text!r} has id {tid} >= {size}")
        if not control:
            text = text.replace("\u2581", " ")
        tokens[tid] = text.encode("utf-8")
        scores[tid] = -1000.0
        types[tid] = int(gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED)

    added_file = model_dir / "added_tokens.json"
    if added_file.is_file():
        for text, tid in (_read_json(added_file) or {}).items():
            put_added(int(tid), text, False, added_file)
    cfg_file = model_dir / "tokenizer_config.json"
    add_space_prefix = None
    if cfg_file.is_file():
        cfg = _read_json(cfg_file) or {}
        for tid, entry in (cfg.get("added_tokens_decoder") or {}).items():
            text = entry.get("content", "")
            put_added(int(tid), text, bool(entry.get("special")) or looks_special(text), cfg_file)
        if isinstance(cfg.get("add_prefix_space"), bool):
            add_space_prefix = cfg["add_prefix_space"]
    # transformers 5 keeps added tokens only in tokenizer.json (llama.cpp's Phi-3 reader too)
    tj_file = model_dir / "tokenizer.json"
    if tj_file.is_file():
        tj = _read_json(tj_file)
        for a in (tj.get("added_tokens") if isinstance(tj, dict) else None) or []:
            if (
                isinstance(a, dict)
                and isinstance(a.get("id"), int)
                and isinstance(a.get("content"), str)
            ):
                text = a["content"]
                if a["id"] >= size:  # no embedding row: the model can never see it
                    notes.append(f"{tj_file.name}: added token {text!r} past the vocabulary")
                    continue
                put_added(a["id"], text, bool(a.get("special")) or looks_special(text), tj_file)
    special = gguf.SpecialVocab(model_dir, n_vocab=size)
    return TokenizerKeys(
        "llama", "default", tokens, types, scores, special, path, add_space_prefix, notes
    )


def read_tokenizer(model_dir: str | os.PathLike[str], n_vocab: int | None) -> TokenizerKeys:
    """Read the tokenizer of a model folder (``n_vocab`` from config.json pads it).

    Example:
        >>> tok = read_tokenizer("tests/data/tiny_llama", n_vocab=512)   # doctest: +SKIP
        >>> tok.model, len(tok.tokens)                                   # doctest: +SKIP
        ('gpt2', 512)
    """
    d = Path(model_dir)
    if (d / "tokenizer.model").is_file():
        return _read_sentencepiece(d, n_vocab)
    if (d / "tokenizer.json").is_file():
        return _read_bpe(d, n_vocab)
    raise ModelFormatError(f"{d}: no tokenizer found (expected tokenizer.json or tokenizer.model)")
