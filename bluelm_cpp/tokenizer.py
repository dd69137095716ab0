"""Tokenizer built from a GGUF file's ``tokenizer.*`` metadata.

Two vocabulary kinds are supported, with llama.cpp's rules so that token ids
match what llama.cpp produces for the same file:

* ``gpt2``: byte-level BPE. The text is split by the pre-tokenizer regexes that
  ``tokenizer.ggml.pre`` names (llama.cpp's list), each piece is mapped to the
  GPT-2 byte alphabet and merged by the ranks of ``tokenizer.ggml.merges``.
* ``llama``: SentencePiece BPE. Spaces become ``▁``, a space is prefixed to
  every text fragment that starts the input or follows a special token (when
  ``add_space_prefix``), pieces are merged by vocabulary score and characters
  missing from the vocabulary fall back to ``<0xNN>`` byte tokens.

The merging itself runs in Hugging Face ``tokenizers`` (a ``BPE`` model and
``Split``/``ByteLevel`` pre-tokenizers built here from the metadata). Special
tokens are split out in Python the way llama.cpp does it (longest text first):
control and unknown tokens only when ``parse_special=True``, user-defined
tokens always, as llama.cpp and ``tokenizers`` both do.

Decoding concatenates the byte pieces of the tokens (llama.cpp's
``token_to_piece``) and decodes them as UTF-8, so ``decode(encode(s)) == s``.

Example:
    >>> tok = Tokenizer.from_metadata(gguf_metadata)  # doctest: +SKIP
    >>> ids = tok.encode("Hello world", add_special=False)  # doctest: +SKIP
    >>> tok.decode(ids)  # doctest: +SKIP
    'Hello world'
"""

from __future__ import annotations

import codecs
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

from tokenizers import Regex, models, pre_tokenizers
from tokenizers import Tokenizer as _HFTokenizer

from .errors import InvalidArgumentError, ModelFormatError
from .vocab_tables import (
    _A_BYTE,
    _A_CONTROL,
    _A_NORMAL,
    _A_UNKNOWN,
    _A_USER_DEFINED,
    _ALWAYS_RENDERED,
    _EOG_TEXTS,
    _EOM_TEXTS,
    _EOT_TEXTS,
    _FIM_MID_TEXTS,
    _FIM_PAD_TEXTS,
    _FIM_PRE_TEXTS,
    _FIM_REP_TEXTS,
    _FIM_SEP_TEXTS,
    _FIM_SUF_TEXTS,
    _PRE_TYPES,
    _SPACE_MARK,
    _TYPE_TO_ATTR,
    _byte_level_to_bytes,
    _parse_byte_token,
    _Pre,
)

__all__ = ["Tokenizer", "StreamDecoder"]


_Fragment = Union[str, int]


class Tokenizer:
    """Text <-> token ids for a GGUF model, matching llama.cpp.

    Build it with :meth:`from_metadata` from the GGUF key/value metadata.

    Example:
        >>> from bluelm_cpp.tokenizer import Tokenizer
        >>> tok = Tokenizer.from_metadata(meta)  # doctest: +SKIP
        >>> tok.encode("Hi there!", add_special=False)  # doctest: +SKIP
        [11241, 665, 17]
        >>> tok.decode([11241, 665, 17])  # doctest: +SKIP
        'Hi there!'
        >>> tok.eos_id in tok.eog_ids  # doctest: +SKIP
        True
    """

    def __init__(self, meta: Mapping[str, Any]) -> None:
        if not isinstance(meta, Mapping):
            raise ModelFormatError("tokenizer metadata must be a mapping of GGUF keys to values")
        model = meta.get("tokenizer.ggml.model")
        if model is None:
            raise ModelFormatError("GGUF metadata has no tokenizer.ggml.model")
        if model not in ("gpt2", "llama"):
            raise ModelFormatError(
                f"unsupported tokenizer.ggml.model {model!r} (supported: 'gpt2', 'llama')"
            )
        self._model: str = str(model)
        self._spm = model == "llama"

        tokens = self._read_tokens(meta)
        n = len(tokens)
        self._tokens: list[str] = tokens
        self._token_to_id: dict[str, int] = {}
        for i, t in enumerate(tokens):
            prev = self._token_to_id.setdefault(t, i)
            if prev != i:
                raise ModelFormatError(
                    f"duplicate token in tokenizer.ggml.tokens: {t!r} has ids {prev} and {i}"
                )

        types = meta.get("tokenizer.ggml.token_type")
        if types is None:
            attrs = [_A_NORMAL] * n
        else:
            types = list(types)
            if len(types) < n:
                raise ModelFormatError(
                    f"tokenizer.ggml.token_type has {len(types)} entries for {n} tokens"
                )
            get = _TYPE_TO_ATTR.get
            attrs = [get(int(t), 0) for t in types[:n]]
        self._attrs: list[int] = attrs

        scores: list[float] | None = None
        if self._spm:
            raw_scores = meta.get("tokenizer.ggml.scores")
            if raw_scores is None:
                scores = [0.0] * n
            else:
                scores = [float(s) for s in raw_scores]
                if len(scores) < n:
                    raise ModelFormatError(
                        f"tokenizer.ggml.scores has {len(scores)} entries for {n} tokens"
                    )

        # defaults per vocabulary kind, then the pre-tokenizer, then the keys
        pre_name = ""
        pre: _Pre | None = None
        if self._spm:
            bos, eos, unk = 1, 2, 0
            add_bos, add_space_prefix = True, True
        else:
            bos, eos, unk = 11, 11, None
            add_space_prefix = False
            pre_name = str(meta.get("tokenizer.ggml.pre") or "")
            pre = _PRE_TYPES.get(pre_name)
            if pre is None:
                raise ModelFormatError(
                    f"unsupported tokenizer.ggml.pre {pre_name!r} for a gpt2 (byte-level BPE) "
                    f"vocabulary; supported: {', '.join(sorted(k for k in _PRE_TYPES if k))}"
                )
            add_bos = pre.add_bos
            if pre.no_bos:
                bos = None
        self._pre_name = pre_name
        add_eos = False
        if "tokenizer.ggml.add_space_prefix" in meta:
            add_space_prefix = bool(meta["tokenizer.ggml.add_space_prefix"])

        def special(key: str, default: int | None) -> int | None:
            if default is not None and default >= n:
                default = None
            value = meta.get(key)
            if value is None:
                return default
            try:
                value = int(value)
            except (TypeError, ValueError) as e:
                raise ModelFormatError(f"{key} is not an integer: {value!r}") from e
            # llama.cpp keeps the default when the stored id is out of range
            return value if 0 <= value < n else default

        k = "tokenizer.ggml."
        self._bos = special(k + "bos_token_id", bos)
        self._eos = special(k + "eos_token_id", eos)
        self._eot = special(k + "eot_token_id", None)
        self._eom = special(k + "eom_token_id", None)
        self._unk = special(k + "unknown_token_id", unk)
        self._pad = special(k + "padding_token_id", None)
        fim_pre = special(k + "fim_pre_token_id", special(k + "prefix_token_id", None))
        fim_suf = special(k + "fim_suf_token_id", special(k + "suffix_token_id", None))
        fim_mid = special(k + "fim_mid_token_id", special(k + "middle_token_id", None))
        fim_pad = special(k + "fim_pad_token_id", None)
        fim_rep = special(k + "fim_rep_token_id", None)
        fim_sep = special(k + "fim_sep_token_id", None)

        if k + "add_bos_token" in meta:
            add_bos = bool(meta[k + "add_bos_token"])
        if k + "add_eos_token" in meta:
            add_eos = bool(meta[k + "add_eos_token"])
        if add_bos and self._bos is None:
            raise ModelFormatError("tokenizer.ggml.add_bos_token is true but there is no BOS token")
        if add_eos and self._eos is None:
            raise ModelFormatError("tokenizer.ggml.add_eos_token is true but there is no EOS token")
        self._add_bos = add_bos
        self._add_eos = add_eos
        self._add_space_prefix = add_space_prefix

        # llama.cpp finds end-of-turn/FIM tokens by their text and makes them control
        def find(texts: tuple[str, ...], current: int | None) -> int | None:
            if current is not None:
                return current
            found = [self._token_to_id[t] for t in texts if t in self._token_to_id]
            if not found:
                return None
            tid = min(found)
            attrs[tid] |= _A_CONTROL
            return tid

        self._eot = find(_EOT_TEXTS, self._eot)
        self._eom = find(_EOM_TEXTS, self._eom)
        find(_FIM_PRE_TEXTS, fim_pre)
        find(_FIM_SUF_TEXTS, fim_suf)
        find(_FIM_MID_TEXTS, fim_mid)
        fim_pad = find(_FIM_PAD_TEXTS, fim_pad)
        fim_rep = find(_FIM_REP_TEXTS, fim_rep)
        fim_sep = find(_FIM_SEP_TEXTS, fim_sep)

        eog: set[int] = {t for t in (fim_pad, fim_rep, fim_sep) if t is not None}
        for text in _EOG_TEXTS:
            tid = self._token_to_id.get(text)
            if tid is not None:
                eog.add(tid)
                attrs[tid] |= _A_CONTROL
        for text in _ALWAYS_RENDERED:
            tid = self._token_to_id.get(text)
            if tid is not None:
                attrs[tid] = _A_USER_DEFINED
        for tid in (self._eos, self._eot, self._eom):
            if tid is not None:
                eog.add(tid)
        # gpt-oss / solar-open: "<|end|>" ends a message, not the generation
        eog_texts = {tokens[t] for t in eog}
        end_id = self._token_to_id.get("<|end|>")
        if end_id in eog and (
            {"<|return|>", "<|call|>"} <= eog_texts or {"<|calls|>", "<|flush|>"} <= eog_texts
        ):
            eog.discard(end_id)
            attrs[end_id] = _A_USER_DEFINED
        # gemma4 / paddleocr: "</s>" is not an end of generation there
        s_id = self._token_to_id.get("</s>")
        if s_id in eog and "<|tool_response>" in eog_texts:
            eog.discard(s_id)
            attrs[s_id] = _A_NORMAL
        self._eog = frozenset(eog)

        # tokens split out of the text before BPE, longest text first
        specials = [
            i for i, a in enumerate(attrs) if a & (_A_CONTROL | _A_USER_DEFINED | _A_UNKNOWN)
        ]
        specials.sort(key=lambda i: -len(tokens[i].encode("utf-8")))
        self._split_all = [(tokens[i], i) for i in specials]
        self._split_user = [
            (tokens[i], i) for i in specials if not attrs[i] & (_A_CONTROL | _A_UNKNOWN)
        ]

        self._pieces, self._pieces_special = self._build_pieces()
        if self._spm:
            assert scores is not None
            self._hf = self._build_spm(scores)
        else:
            assert pre is not None
            self._hf = self._build_bpe(meta, pre)

    # ------------------------------------------------------------------ build

    @staticmethod
    def _read_tokens(meta: Mapping[str, Any]) -> list[str]:
        raw = meta.get("tokenizer.ggml.tokens")
        if raw is None:
            raise ModelFormatError("GGUF metadata has no tokenizer.ggml.tokens")
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise ModelFormatError("tokenizer.ggml.tokens must be a list of strings")
        tokens = list(raw)
        if set(map(type, tokens)) - {str}:
            for i, t in enumerate(tokens):
                if isinstance(t, (bytes, bytearray)):
                    try:
                        tokens[i] = bytes(t).decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise ModelFormatError(f"token {i} is not valid UTF-8") from e
                elif not isinstance(t, str):
                    raise ModelFormatError(f"token {i} is not a string: {type(t).__name__}")
        if not all(tokens):
            # llama.cpp names empty tokens so that they stay unique
            tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        if not tokens:
            raise ModelFormatError("tokenizer.ggml.tokens is empty")
        return tokens

    def _build_pieces(self) -> tuple[list[bytes], list[bytes]]:
        """Bytes of each token as llama.cpp's token_to_piece gives them."""
        plain: list[bytes] = []
        spm = self._spm
        for text, attr in zip(self._tokens, self._attrs):
            if attr & (_A_CONTROL | _A_UNKNOWN):
                plain.append(b"")
            elif attr & _A_USER_DEFINED:
                plain.append(text.encode("utf-8"))
            elif attr & _A_NORMAL:
                if spm:
                    plain.append(text.replace(_SPACE_MARK, " ").encode("utf-8"))
                else:
                    plain.append(_byte_level_to_bytes(text))
            elif attr & _A_BYTE:
                b = _parse_byte_token(text)
                plain.append(bytes([b]) if b is not None else text.encode("utf-8"))
            else:  # unused / undefined tokens render as nothing
                plain.append(b"")
        special = list(plain)
        for i, attr in enumerate(self._attrs):
            if attr & (_A_CONTROL | _A_UNKNOWN):
                special[i] = self._tokens[i].encode("utf-8")
        return plain, special

    def _build_bpe(self, meta: Mapping[str, Any], pre: _Pre) -> _HFTokenizer:
        raw = meta.get("tokenizer.ggml.merges")
        if raw is None:
            raise ModelFormatError("gpt2 tokenizer without tokenizer.ggml.merges")
        vocab = self._token_to_id
        texts = [
            bytes(m).decode("utf-8", "replace") if isinstance(m, (bytes, bytearray)) else str(m)
            for m in raw
        ]
        # llama.cpp splits at the first space after the first character and
        # keeps the first rank of a repeated merge
        parts = [
            (m[:1] + a, b)
            for m in dict.fromkeys(texts)
            for a, sep, b in [m[1:].partition(" ")]
            if sep
        ]
        # a merge whose parts or result are not tokens can never apply
        merges = [(a, b) for a, b in parts if a in vocab and b in vocab and a + b in vocab]
        try:
            # ignore_merges needs tokenizers >= 0.19; pass it only where it is used
            extra = {"ignore_merges": True} if pre.ignore_merges else {}
            bpe = models.BPE(vocab=vocab, merges=merges, **extra)
            hf = _HFTokenizer(bpe)
            splits = [
                pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False)
                for r in pre.regexes
            ]
            hf.pre_tokenizer = pre_tokenizers.Sequence(
                [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
            )
        except Exception as e:  # tokenizers raises plain Exception subclasses
            raise ModelFormatError(f"cannot build the BPE tokenizer: {e}") from e
        return hf

    def _build_spm(self, scores: list[float]) -> _HFTokenizer:
        # Merges from the vocabulary as Hugging Face's SentencePiece converter
        # derives them: every split of a token into two tokens, ranked by the
        # score of the token they make (highest first, ties in id order).
        vocab = self._token_to_id
        ranked: list[tuple[float, int, int, str, str]] = []
        for tid, text in enumerate(self._tokens):
            for cut in range(1, len(text)):
                left = vocab.get(text[:cut])
                if left is None:
                    continue
                right = vocab.get(text[cut:])
                if right is not None:
                    ranked.append((-scores[tid], left, right, text[:cut], text[cut:]))
        ranked.sort(key=lambda r: r[:3])
        merges = [(r[3], r[4]) for r in ranked]
        unk = self._tokens[self._unk] if self._unk is not None else None
        try:
            bpe = models.BPE(vocab=vocab, merges=merges, unk_token=unk, byte_fallback=True)
            return _HFTokenizer(bpe)
        except Exception as e:
            raise ModelFormatError(f"cannot build the SentencePiece tokenizer: {e}") from e

    # -------------------------------------------------------------- public API

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Tokenizer:
        """Build a tokenizer from GGUF metadata (``tokenizer.ggml.*`` keys).

        Raises :class:`~bluelm_cpp.errors.ModelFormatError` for an unsupported
        or malformed tokenizer.

        Example:
            >>> tok = Tokenizer.from_metadata(gguf_file.metadata)  # doctest: +SKIP
            >>> tok.vocab_size  # doctest: +SKIP
            49152
        """
        return cls(meta)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self._tokens)

    @property
    def model(self) -> str:
        """``tokenizer.ggml.model``: ``"gpt2"`` or ``"llama"``."""
        return self._model

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-sequence token id, or None."""
        return self._bos

    @property
    def eos_id(self) -> int | None:
        """End-of-sequence token id, or None."""
        return self._eos

    @property
    def eot_id(self) -> int | None:
        """End-of-turn token id (from the metadata or found by its text), or None."""
        return self._eot

    @property
    def add_bos(self) -> bool:
        """Whether ``encode(..., add_special=True)`` prepends BOS."""
        return self._add_bos

    @property
    def add_eos(self) -> bool:
        """Whether ``encode(..., add_special=True)`` appends EOS."""
        return self._add_eos

    @property
    def eog_ids(self) -> frozenset[int]:
        """Token ids that end generation, as llama.cpp's ``llama_vocab_is_eog``.

        Example:
            >>> sorted(tok.eog_ids)  # doctest: +SKIP
            [0, 2, 4]
        """
        return self._eog

    def is_eog(self, token_id: int) -> bool:
        """True if ``token_id`` ends generation."""
        return token_id in self._eog

    def is_control(self, token_id: int) -> bool:
        """True for control tokens (rendered as empty text unless ``special``)."""
        return bool(self._attrs[self._check_id(token_id)] & _A_CONTROL)

    def token_text(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` as stored (``"Ġthe"``, ``"▁the"``, ``"<s>"``).

        Example:
            >>> tok.token_text(tok.eos_id)  # doctest: +SKIP
            '<|im_end|>'
        """
        return self._tokens[self._check_id(token_id)]

    def token_to_bytes(self, token_id: int, special: bool = False) -> bytes:
        """The bytes ``token_id`` stands for (llama.cpp's ``token_to_piece``).

        Control tokens give ``b""`` unless ``special`` is true. A single token
        may hold only part of a multi-byte UTF-8 character.

        Example:
            >>> tok.token_to_bytes(tok.encode(" world", add_special=False)[0])  # doctest: +SKIP
            b' world'
        """
        pieces = self._pieces_special if special else self._pieces
        return pieces[self._check_id(token_id)]

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``, as llama.cpp's ``llama_tokenize``.

        ``add_special`` adds BOS/EOS where the model asks for them
        (``add_bos``/``add_eos``). ``parse_special`` lets control tokens written
        in the text (``"<|im_start|>"``) become their ids; otherwise they are
        tokenized as plain text.

        Example:
            >>> tok.encode("<|im_start|>user", parse_special=True)  # doctest: +SKIP
            [1, 4093]
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text must be a str, not {type(text).__name__}")
        ids: list[int] = []
        if add_special and self._add_bos:
            ids.append(self._bos)  # type: ignore[arg-type]
        prev_special = True
        for frag in self._partition(text, parse_special):
            if isinstance(frag, int):
                ids.append(frag)
                prev_special = True
            else:
                ids.extend(self._encode_text(frag, prev_special))
                prev_special = False
        if add_special and self._add_eos:
            ids.append(self._eos)  # type: ignore[arg-type]
        return ids

    def decode(self, ids: Iterable[int], special: bool = False) -> str:
        """Text of ``ids``; invalid UTF-8 (a cut multi-byte character) becomes U+FFFD.

        Control tokens render as empty text unless ``special`` is true. For
        SentencePiece vocabularies the space that ``encode`` prefixed is removed
        again, so ``decode(encode(s, add_special=False)) == s``.

        Example:
            >>> tok.decode(tok.encode("Hi!", add_special=False))  # doctest: +SKIP
            'Hi!'
        """
        checked = self._check_ids(ids)
        pieces = self._pieces_special if special else self._pieces
        data = b"".join([pieces[i] for i in checked])
        if self._spm and self._add_space_prefix and data[:1] == b" ":
            data = data[1:]
        return data.decode("utf-8", errors="replace")

    def stream_decoder(
        self, special: bool = False, strip_leading_space: bool = False
    ) -> StreamDecoder:
        """A :class:`StreamDecoder` that turns ids pushed one at a time into text.

        By default every token's piece is kept as is, which is right for text
        that continues a prompt. ``strip_leading_space=True`` removes the space
        a SentencePiece vocabulary prefixes to the first word, as
        :meth:`decode` does, for streaming a text from its start.

        Example:
            >>> dec = tok.stream_decoder()  # doctest: +SKIP
            >>> "".join(dec.push(t) for t in ids) + dec.flush()  # doctest: +SKIP
            'Hello 👋'
        """
        strip = strip_leading_space and self._spm and self._add_space_prefix
        return StreamDecoder(self, special=special, strip_leading_space=strip)

    def __repr__(self) -> str:
        pre = f", pre={self._pre_name!r}" if not self._spm else ""
        return f"Tokenizer(model={self._model!r}{pre}, vocab_size={self.vocab_size})"

    # --------------------------------------------------------------- internals

    def _check_id(self, token_id: int) -> int:
        try:
            i = operator.index(token_id)
        except TypeError:
            raise InvalidArgumentError(
                f"token id must be an integer, not {type(token_id).__name__}"
            ) from None
        if not 0 <= i < len(self._tokens):
            raise InvalidArgumentError(
                f"token id {i} is out of range for a vocabulary of {len(self._tokens)} tokens"
            )
        return i

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        if isinstance(ids, (str, bytes)):
            raise InvalidArgumentError("token ids must be a sequence of integers")
        try:
            out = [operator.index(i) for i in ids]
        except TypeError:
            raise InvalidArgumentError("token ids must be a sequence of integers") from None
        if out:
            lo, hi = min(out), max(out)
            if lo < 0 or hi >= len(self._tokens):
                bad = lo if lo < 0 else hi
                raise InvalidArgumentError(
                    f"token id {bad} is out of range for a vocabulary of {len(self._tokens)} tokens"
                )
        return out

    def _partition(self, text: str, parse_special: bool) -> list[_Fragment]:
        """Split special tokens out of ``text``, longest token text first (llama.cpp)."""
        frags: list[_Fragment] = [text] if text else []
        for tok, tid in self._split_all if parse_special else self._split_user:
            if tok not in text:
                continue
            out: list[_Fragment] = []
            for frag in frags:
                if isinstance(frag, int) or tok not in frag:
                    out.append(frag)
                    continue
                for k, part in enumerate(frag.split(tok)):
                    if k:
                        out.append(tid)
                    if part:
                        out.append(part)
            frags = out
        return frags

    def _encode_text(self, text: str, prev_special: bool) -> list[int]:
        if self._spm:
            if self._add_space_prefix and prev_special:
                text = " " + text
            text = text.replace(" ", _SPACE_MARK)
        try:
            return self._hf.encode(text, add_special_tokens=False).ids
        except (TypeError, UnicodeEncodeError):
            # tokenizers refuses lone surrogates, which have no UTF-8 form
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidArgumentError(
                    f"text is not valid Unicode: lone surrogate {text[e.start]!r}"
                ) from None
            raise


class StreamDecoder:
    """Incremental detokenizer: yields text only when its UTF-8 is complete.

    A character can span several tokens (emoji, CJK with byte fallback); the
    bytes of an unfinished character are held back until the token that
    completes it arrives. Invalid bytes become U+FFFD.

    Example:
        >>> dec = tok.stream_decoder()  # doctest: +SKIP
        >>> parts = [dec.push(t) for t in tok.encode("🙂 ok", add_special=False)]  # doctest: +SKIP
        >>> "".join(parts) + dec.flush()  # doctest: +SKIP
        '🙂 ok'
    """

    def __init__(
        self, tokenizer: Tokenizer, special: bool = False, strip_leading_space: bool = False
    ) -> None:
        self._tok = tokenizer
        self._special = special
        self._strip = strip_leading_space
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now complete (may be ``""``)."""
        piece = self._tok.token_to_bytes(token_id, special=self._special)
        if self._strip and piece:
            self._strip = False
            if piece[:1] == b" ":
                piece = piece[1:]
        return self._utf8.decode(piece)

    def push_many(self, token_ids: Sequence[int]) -> str:
        """Add several tokens at once; return the text that is now complete."""
        return "".join([self.push(t) for t in token_ids])

    def flush(self) -> str:
        """Return whatever is held back (an unfinished character becomes U+FFFD) and reset."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
