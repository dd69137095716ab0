"""Prompts of text and images into the KV cache: background image encoding,
an encoding cache keyed by image content, KV reuse of a shared prefix (images
included), and the C++ scheduler that overlaps patch encoding with the LLM
prefill (``Context.prefill``).

The KV cache is described by one key per position: a token id, or
``(image_key, row)`` for the rows of an image's embeddings, so a later request
that starts with the same text and the same images prefills only what is new.

Example:
    >>> from bluelm_cpp import _core
    >>> from bluelm_cpp.image_prefill import ImagePrefiller
    >>> llm = _core.LlamaModel("model.gguf")  # doctest: +SKIP
    >>> vision = _core.VisionModel("mmproj.gguf")  # doctest: +SKIP
    >>> ctx = _core.Context(llm, 2048, 128, 1)  # doctest: +SKIP
    >>> p = ImagePrefiller(ctx, vision, n_threads_vision=1)  # doctest: +SKIP
    >>> h = p.prepare(patches)  # starts encoding now  # doctest: +SKIP
    >>> p.prefill([[1, 2, 3], h, [4, 5]])  # waits only for what is not done  # doctest: +SKIP
    {'n_rows': ..., 'encode_s': ..., ...}
    >>> h = p.prepare(patches, prefix=[1, 2, 3])  # then the KV of both  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .errors import CancelledError, ContextOverflowError, InvalidArgumentError

Key = Hashable  # int (a token) or (image_key, row)


def image_key(patches: np.ndarray) -> str:
    """Content hash of an image's normalised patch pixels (shape included).

    Example:
        >>> image_key(np.zeros((1, 3, 2, 2), np.float32))[:8]
        '...'  # doctest: +SKIP
    """
    a = np.ascontiguousarray(patches, dtype=np.float32)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(a.shape).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class EncodingCache:
    """Image embeddings by content key, least recently used dropped first once
    the total exceeds ``max_bytes``. Thread-safe.

    Example:
        >>> c = EncodingCache(max_bytes=1 << 20)
        >>> c.put("k", np.zeros((4, 8), np.float32))
        >>> c.get("k").shape
        (4, 8)
    """

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            emb = self._items.get(key)
            if emb is not None:
                self._items.move_to_end(key)
            return emb

    def put(self, key: str, emb: np.ndarray) -> None:
        if emb.nbytes > self.max_bytes:
            return
        emb.setflags(write=False)
        with self._lock:
            self._items[key] = emb
            self._items.move_to_end(key)
            while sum(e.nbytes for e in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class ImageHandle:
    """An image whose embeddings are being computed in the background
    (returned by :meth:`ImagePrefiller.prepare`).

    Example:
        >>> h = prefiller.prepare(patches)  # doctest: +SKIP
        >>> h.result().shape  # blocks until encoded  # doctest: +SKIP
        (1764, 2560)
    """

    def __init__(self, key: str, n_rows: int) -> None:
        self.key = key
        self.n_rows = n_rows
        self._done = threading.Event()
        self._emb: np.ndarray | None = None
        self._error: BaseException | None = None
        self.encode_s = 0.0
        # The KV-ahead step (prepare(prefix=...)): set once it ran, was
        # skipped or failed; at once when none was asked for.
        self._kv_done = threading.Event()
        self.kv_error: BaseException | None = None  # why the KV-ahead step failed
        self.kv_s = 0.0
        self._used = False  # a request has consumed this handle

    def kv_ready(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the KV-ahead step of
        ``prepare(prefix=...)``; True once it is over (done, skipped, or failed:
        see ``kv_error``). A request never needs this: it waits for the model.
        """
        return self._kv_done.wait(timeout)

    def done(self) -> bool:
        """True once the embeddings (or an error) are ready."""
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> np.ndarray:
        """The embeddings ``[n_rows, n_embd]``; re-raises the encoder's error."""
        if not self._done.wait(timeout):
            raise TimeoutError("the image is still being encoded")
        if self._error is not None:
            raise self._error
        assert self._emb is not None
        return self._emb

    def _finish(self, emb: np.ndarray | None, error: BaseException | None) -> None:
        self._emb, self._error = emb, error
        self._done.set()


@dataclass
class _Image:
    key: str
    n_rows: int
    patches: np.ndarray | None = None
    handle: ImageHandle | None = None
    emb: np.ndarray | None = None  # ready embeddings (cache hit or finished handle)


Part = Union[Sequence[int], np.ndarray, ImageHandle]


@dataclass
class PrefillStats:
    """What the last :meth:`ImagePrefiller.prefill` did."""

    n_prefilled: int = 0  # positions run through the LLM
    n_reused: int = 0  # positions kept from the previous request's KV cache
    n_patches_encoded: int = 0
    images_ready: int = 0  # images whose embeddings were ready (cache hit or prepared)
    wait_s: float = 0.0  # waiting for background encodes (prepare)
    total_s: float = 0.0
    # per C++ call: encode_s, prefill_s, wait_s, ...
    stages: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ImagePrefiller:
    """Brings a context's KV cache to a prompt of text and images.

    Args:
        ctx: the ``_core.Context`` (its pool runs the LLM, ``n_threads``).
        vision: the ``_core.VisionModel``, or ``None`` for text only.
        n_threads_vision: the encoder's threads (a separate pool).
        vision_batch: patches per encoder batch.
        first_batch: patches in a request's first encoder batch (the LLM
            waits for it, so a small one starts the overlap sooner).
        overlap: encode patch batch k+1 while the LLM prefills batch k
            (``False``: encode the whole image first; same result, bit for bit).
        release_vision: free the encoder's weights after each encode; they are
            read again from the file when next needed.
        cache_bytes: bound of the embedding cache.
        session: a context-manager factory that serialises requests on the
            context; the KV-ahead step of ``prepare(prefix=...)`` runs inside
            it (default: a lock of this prefiller's own).

    ``cached`` is the key of every position in the KV cache; the owner may
    append token ids to it as it decodes.
    """

    def __init__(
        self,
        ctx: Any,
        vision: Any | None,
        *,
        n_threads_vision: int = 1,
        vision_batch: int = 4,
        first_batch: int = 1,
        overlap: bool = True,
        release_vision: bool = False,
        cache_bytes: int = 256 << 20,
        session: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.vision = vision
        self.n_threads_vision = int(n_threads_vision)
        self.vision_batch = int(vision_batch)
        self.first_batch = int(first_batch)
        self.overlap = overlap
        self.release_vision = release_vision
        self.cache = EncodingCache(cache_bytes)
        self.cached: list[Key] = []
        self.last_stats = PrefillStats()
        self._cancel = threading.Event()
        self._pending: dict[str, ImageHandle] = {}
        self._pending_lock = threading.Lock()
        # one background encode at a time keeps the thread split
        self._encode_lock = threading.Lock()
        own = threading.Lock()
        self.session = session if session is not None else (lambda: own)

    # -- images ------------------------------------------------------------

    def _rows_per_patch(self) -> int:
        if self.vision is None:
            raise InvalidArgumentError("an image was given, but this model has no vision encoder")
        return int(self.vision.config["n_out_tokens"])

    def _check_patches(self, patches: np.ndarray) -> np.ndarray:
        self._rows_per_patch()
        a = np.ascontiguousarray(patches, dtype=np.float32)
        s = int(self.vision.config["clip.vision.image_size"])
        if a.ndim != 4 or a.shape[1:] != (3, s, s) or a.shape[0] == 0:
            raise InvalidArgumentError(
                f"patches must have shape [n, 3, {s}, {s}] with n >= 1, got {list(a.shape)}"
            )
        return a

    def prepare(self, patches: np.ndarray, prefix: Sequence[int] | None = None) -> ImageHandle:
        """Start encoding ``patches`` (normalised, ``[n, 3, S, S]``) in a
        background thread and return at once. Cached or already pending images
        are not encoded again.

        With ``prefix`` (the token ids before the image) the same thread then
        prefills ``prefix`` and the image's rows into the KV cache, inside
        ``session()``, so a request ``[prefix, handle, question]`` that comes
        later runs only the question through the LLM. The step is skipped if a
        request has used the handle first or the cache already holds that prefix.
        """
        a = self._check_patches(patches)
        ids = None if prefix is None else [int(t) for t in prefix]
        key = image_key(a)
        n_rows = a.shape[0] * self._rows_per_patch()
        with self._pending_lock:
            h = self._pending.get(key)
            new = h is None
            if h is None:
                h = ImageHandle(key, n_rows)
                hit = self.cache.get(key)
                if hit is not None:
                    h._finish(hit, None)
                else:
                    self._pending[key] = h
                    threading.Thread(
                        target=self._encode_in_background, args=(h, a), daemon=True
                    ).start()
        if ids is None:
            if new:
                h._kv_done.set()
        else:
            h._kv_done.clear()
            threading.Thread(target=self._kv_in_background, args=(h, ids), daemon=True).start()
        return h

    def _encode_in_background(self, h: ImageHandle, a: np.ndarray) -> None:
        t0 = time.perf_counter()
        emb: np.ndarray | None = None
        error: BaseException | None = None
        try:
            with self._encode_lock:
                out = self.vision.encode(a, self.n_threads_vision, self.vision_batch)
                if self.release_vision:
                    self.vision.release_weights()
            emb = np.ascontiguousarray(out.reshape(h.n_rows, -1))
            self.cache.put(h.key, emb)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
            error = e
        h.encode_s = time.perf_counter() - t0
        with self._pending_lock:
            self._pending.pop(h.key, None)
        h._finish(emb, error)

    def _kv_in_background(self, h: ImageHandle, prefix: list[int]) -> None:
        try:
            h._done.wait()
            if h._error is not None:
                return  # the request that uses the handle re-raises it
            keys: list[Key] = [*prefix, *((h.key, r) for r in range(h.n_rows))]
            with self.session():
                if self.ctx is None or h._used or self.cached[: len(keys)] == keys:
                    return
                t0 = time.perf_counter()
                self.prefill([prefix, h] if prefix else [h])
                h.kv_s = time.perf_counter() - t0
                h._used = False  # this step is not a request
        except BaseException as e:  # noqa: BLE001 - kept on the handle; a request redoes the work
            h.kv_error = e
        finally:
            h._kv_done.set()

    def _image(self, part: np.ndarray | ImageHandle) -> _Image:
        if isinstance(part, ImageHandle):
            part._used = True
            emb = part.result() if part.done() and part._error is None else None
            return _Image(part.key, part.n_rows, handle=part, emb=emb)
        a = self._check_patches(part)
        key = image_key(a)
        with self._pending_lock:
            pending = self._pending.get(key)
        if pending is not None:
            return self._image(pending)
        emb = self.cache.get(key)
        return _Image(key, a.shape[0] * self._rows_per_patch(), patches=a, emb=emb)

    # -- prefill -----------------------------------------------------------

    def cancel(self) -> None:
        """Stop the prefill in flight (any thread); it raises :class:`CancelledError`
        and leaves the cache as it was before that request."""
        self._cancel.set()
        self.ctx.cancel()

    def reset(self) -> None:
        self.ctx.reset()
        self.cached = []

    def close(self) -> None:
        """Drop the context, the encoder and the cached embeddings."""
        self.ctx = None
        self.vision = None
        self.cache.clear()
        self.cached = []

    def prefill(self, parts: Sequence[Part]) -> PrefillStats:
        """Bring the KV cache to ``parts`` (token-id lists, patch arrays
        ``[n, 3, S, S]`` or :class:`ImageHandle`), reusing the longest cached
        prefix; the logits of the last position are then in the context.
        """
        t0 = time.perf_counter()
        self._cancel.clear()
        items: list[list[int] | _Image] = []
        keys: list[Key] = []
        for p in parts:
            if isinstance(p, (ImageHandle, np.ndarray)):
                img = self._image(p)
                items.append(img)
                keys.extend((img.key, r) for r in range(img.n_rows))
            else:
                ids = [int(t) for t in p]
                if ids:
                    items.append(ids)
                    keys.extend(ids)
        if not keys:
            raise InvalidArgumentError("the prompt is empty")
        if len(keys) > self.ctx.n_ctx:
            raise ContextOverflowError(
                f"the prompt needs {len(keys)} positions but n_ctx is {self.ctx.n_ctx}"
            )
        keep = self._reusable_prefix(keys, items)
        st = PrefillStats(n_reused=keep)
        n_enc0 = self.vision.n_patches_encoded if self.vision is not None else 0
        self.ctx.truncate(keep)
        self.cached = self.cached[:keep]
        try:
            self._run(items, keep, st)
        finally:
            self.cached = keys[: self.ctx.n_past]
            if self.vision is not None:
                st.n_patches_encoded = self.vision.n_patches_encoded - n_enc0
            st.total_s = time.perf_counter() - t0
            self.last_stats = st
        return st

    def _reusable_prefix(self, keys: list[Key], items: list[list[int] | _Image]) -> int:
        keep = 0
        limit = min(len(self.cached), len(keys) - 1)  # re-run >= 1 position for fresh logits
        while keep < limit and self.cached[keep] == keys[keep]:
            keep += 1
        # A cut inside an image needs its embeddings from that row on; without
        # them, start again at the image's first row.
        pos = 0
        for it in items:
            n = len(it) if isinstance(it, list) else it.n_rows
            if isinstance(it, _Image) and pos < keep < pos + n and it.emb is None:
                return pos
            pos += n
        return keep

    def _run(self, items: list[list[int] | _Image], keep: int, st: PrefillStats) -> None:
        segs: list[tuple[Any, ...]] = []
        fresh: list[tuple[str, np.ndarray]] = []
        pos = 0

        def flush() -> None:
            if not segs:
                return
            if self._cancel.is_set():
                raise CancelledError("prefill cancelled")
            stage = self.ctx.prefill(
                list(segs),
                self.vision,
                overlap=self.overlap,
                n_threads_vision=self.n_threads_vision,
                vision_batch=self.vision_batch,
                first_batch=self.first_batch,
                release_vision=self.release_vision,
            )
            st.stages.append(stage)
            st.n_prefilled += int(stage["n_rows"])
            segs.clear()
            for key, emb in fresh:
                self.cache.put(key, emb)
            fresh.clear()  # release_vision: the scheduler freed the encoder after its last patch

        for it in items:
            n = len(it) if isinstance(it, list) else it.n_rows
            if pos + n <= keep:
                pos += n
                continue
            off = max(keep - pos, 0)
            pos += n
            if isinstance(it, list):
                segs.append(("tokens", it[off:]))
                continue
            if it.emb is None and it.handle is not None:
                # Prefill what comes before while the background encode finishes.
                flush()
                tw = time.perf_counter()
                while not it.handle._done.wait(0.02):
                    if self._cancel.is_set():
                        raise CancelledError("prefill cancelled")
                st.wait_s += time.perf_counter() - tw
                it.emb = it.handle.result()
            if it.emb is not None:
                st.images_ready += 1
                segs.append(("embeddings", np.ascontiguousarray(it.emb[off:])))
            else:
                assert it.patches is not None and off == 0
                out = np.empty((it.n_rows, self._n_embd()), np.float32)
                segs.append(("patches", it.patches, out))
                fresh.append((it.key, out))
        flush()

    def _n_embd(self) -> int:
        c = self.vision.config
        return int(c.get("clip.vision.projection_dim", c.get("clip.vision.embedding_length")))


__all__ = ["EncodingCache", "ImageHandle", "ImagePrefiller", "PrefillStats", "image_key"]
