"""Prompts of text and images as segments for the C++ scheduler
(``Context.prefill``), for every image layout: background image encoding, an
encoding cache keyed by image content, and KV-ahead preparation.

The KV cache and its prefix reuse live in C++ (``csrc/runtime/session.*``):
each position is keyed by its token id, or by ``(image key, row)``, where the
image key is a hash of the image's normalised patches and layout (the same for
BlueLM-V and LLaVA-OneVision), so a later request that starts with the same
text and images prefills only what is new, and never encodes an image whose
rows are already in the cache.

BlueLM-V images (``mlp_downsample``: the rows are the per-patch outputs in
order) go to the scheduler as patches, so the encoder overlaps the LLM; other
layouts (LLaVA-OneVision's anyres packing needs every patch first) are encoded
and packed here and go as embedding rows.

Example:
    >>> from bluelm_cpp import _core
    >>> from bluelm_cpp.image_prefill import ImagePrefiller
    >>> llm = _core.LlamaModel("model.gguf")  # doctest: +SKIP
    >>> vision = _core.VisionModel("mmproj.gguf")  # doctest: +SKIP
    >>> ctx = _core.Context(llm, 2048, 128, 1)  # doctest: +SKIP
    >>> p = ImagePrefiller(ctx, vision, n_threads_vision=1)  # doctest: +SKIP
    >>> h = p.prepare(patches)  # starts encoding now  # doctest: +SKIP
    >>> p.prefill([[1, 2, 3], h, [4, 5]])  # waits only for what is not done  # doctest: +SKIP
    PrefillStats(n_prefilled=..., ...)
    >>> h = p.prepare(patches, prefix=[1, 2, 3])  # then the KV of both  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .errors import CancelledError, InvalidArgumentError
from .vision.embed import ImageEmbedder
from .vision.images import load_image
from .vision.patches import PatchLayout
from .vision.settings import image_token_count, preprocess_image


def image_key(patches: np.ndarray, layout: PatchLayout | None = None) -> bytes:
    """Content key (16 bytes) of an image's normalised patch pixels, shape and layout.

    Example:
        >>> len(image_key(np.zeros((1, 3, 2, 2), np.float32)))
        16
    """
    a = np.ascontiguousarray(patches, dtype=np.float32)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((a.shape, layout)).encode())
    h.update(memoryview(a).cast("B"))
    return h.digest()


class EncodingCache:
    """Image embeddings by content key, least recently used dropped first once
    the total exceeds ``max_bytes``. Thread-safe.

    Example:
        >>> c = EncodingCache(max_bytes=1 << 20)
        >>> c.put(b"k", np.zeros((4, 8), np.float32))
        >>> c.get(b"k").shape
        (4, 8)
    """

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> np.ndarray | None:
        with self._lock:
            emb = self._items.get(key)
            if emb is not None:
                self._items.move_to_end(key)
            return emb

    def put(self, key: bytes, emb: np.ndarray) -> None:
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


@dataclass
class Image:
    """An image cut into normalised patches, with its content key and the
    number of LLM rows it becomes."""

    key: bytes
    n_rows: int
    patches: np.ndarray
    layout: PatchLayout | None = None  # None: patches given directly (BlueLM-V layout)


class ImageHandle:
    """An image whose embeddings are being computed in the background
    (returned by :meth:`ImagePrefiller.prepare`).

    Example:
        >>> h = prefiller.prepare(patches)  # doctest: +SKIP
        >>> h.result().shape  # blocks until encoded  # doctest: +SKIP
        (1764, 2560)
    """

    def __init__(self, image: Image) -> None:
        self.image = image
        self._done = threading.Event()
        self._emb: np.ndarray | None = None
        self._error: BaseException | None = None
        self.encode_s = 0.0
        # The KV-ahead step (prepare(prefix=...)): set once it ran, was
        # skipped or failed; at once when none was asked for.
        self._kv_done = threading.Event()
        self.kv_error: BaseException | None = None  # why the KV-ahead step failed
        self.kv_s = 0.0
        self.used = False  # a request has consumed this handle

    @property
    def key(self) -> bytes:
        return self.image.key

    @property
    def n_rows(self) -> int:
        return self.image.n_rows

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


Part = Union[Sequence[int], np.ndarray, ImageHandle, Image]


@dataclass
class PrefillStats:
    """What the last :meth:`ImagePrefiller.prefill` did."""

    n_prefilled: int = 0  # positions run through the LLM
    n_reused: int = 0  # positions kept from the previous request's KV cache
    n_patches_encoded: int = 0
    images_ready: int = 0  # images whose embeddings were ready (cache hit or prepared)
    wait_s: float = 0.0  # waiting for background encodes (prepare)
    total_s: float = 0.0
    stages: dict[str, Any] = field(default_factory=dict)  # the scheduler's stage times

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ImagePrefiller:
    """Brings a context's KV cache to a prompt of text and images.

    Args:
        ctx: the ``_core.Context`` (its pool runs the LLM, ``n_threads``).
        vision: an :class:`~bluelm_cpp.vision.embed.ImageEmbedder` (any
            layout), a ``_core.VisionModel`` (patches of the BlueLM-V layout),
            or ``None`` for text only.
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
    """

    def __init__(
        self,
        ctx: Any,
        vision: ImageEmbedder | Any | None,
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
        self.embedder = vision if isinstance(vision, ImageEmbedder) else None
        self.vision = vision.native if isinstance(vision, ImageEmbedder) else vision
        self.n_threads_vision = int(n_threads_vision)
        self.vision_batch = int(vision_batch)
        self.first_batch = int(first_batch)
        self.overlap = overlap
        self.release_vision = release_vision
        self.cache = EncodingCache(cache_bytes)
        self.last_stats = PrefillStats()
        self._pending: dict[bytes, ImageHandle] = {}
        self._pending_lock = threading.Lock()
        # one background encode at a time keeps the thread split
        self._encode_lock = threading.Lock()
        own = threading.Lock()
        self.session = session if session is not None else (lambda: own)

    @property
    def cached(self) -> list[Any]:
        """The key of every position in the KV cache (a token id or ``(image key, row)``)."""
        return self.ctx.cached()

    # -- images ------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        if self.vision is None:
            raise InvalidArgumentError("an image was given, but this model has no vision encoder")
        return self.vision.config  # type: ignore[no-any-return]

    @property
    def streams_patches(self) -> bool:
        """Whether images go to the scheduler as patches (their rows are the
        per-patch outputs in order: BlueLM-V) rather than as packed rows."""
        return self._config()["projector"] == "mlp_downsample"

    def image(self, image: Any) -> Image:
        """An image (path, bytes, data URL, PIL image, array; or normalised
        patches ``[n, 3, S, S]`` of the BlueLM-V layout) cut and keyed."""
        c = self._config()
        if isinstance(image, Image):
            return image
        if isinstance(image, np.ndarray) and image.ndim == 4 and image.dtype == np.float32:
            s = int(c["clip.vision.image_size"])
            if image.shape[1:] != (3, s, s) or image.shape[0] == 0 or not self.streams_patches:
                raise InvalidArgumentError(
                    f"patches must have shape [n, 3, {s}, {s}] with n >= 1 (BlueLM-V layout), "
                    f"got {list(image.shape)}"
                )
            a = np.ascontiguousarray(image)
            return Image(image_key(a), a.shape[0] * int(c["n_out_tokens"]), a)
        if self.embedder is None:
            raise InvalidArgumentError(
                "images need an ImageEmbedder; this prefiller has patches only"
            )
        px, layout = preprocess_image(load_image(image), self.embedder.settings)
        n_rows = image_token_count(layout, self.embedder.settings)
        return Image(image_key(px, layout), n_rows, px, layout)

    def _rows(self, img: Image, features: np.ndarray) -> np.ndarray:
        if img.layout is not None and self.embedder is not None:
            return self.embedder.rows(features, img.layout)
        return np.ascontiguousarray(features.reshape(img.n_rows, -1))

    def prepare(self, image: Any, prefix: Sequence[int] | None = None) -> ImageHandle:
        """Start encoding ``image`` in a background thread and return at once.
        Cached or already pending images are not encoded again.

        With ``prefix`` (the token ids before the image) the same thread then
        prefills ``prefix`` and the image's rows into the KV cache, inside
        ``session()``, so a request ``[prefix, handle, question]`` that comes
        later runs only the question through the LLM. The step is skipped if a
        request has used the handle first or the cache already holds that prefix.
        """
        img = self.image(image)
        ids = None if prefix is None else [int(t) for t in prefix]
        with self._pending_lock:
            h = self._pending.get(img.key)
            new = h is None
            if h is None:
                h = ImageHandle(img)
                hit = self.cache.get(img.key)
                if hit is not None:
                    h._finish(hit, None)
                else:
                    self._pending[img.key] = h
                    threading.Thread(
                        target=self._encode_in_background, args=(h,), daemon=True
                    ).start()
        if ids is None:
            if new:
                h._kv_done.set()
        else:
            h._kv_done.clear()
            threading.Thread(target=self._kv_in_background, args=(h, ids), daemon=True).start()
        return h

    def _encode(self, img: Image) -> np.ndarray:
        assert self.vision is not None
        with self._encode_lock:
            out = self.vision.encode(img.patches, self.n_threads_vision, self.vision_batch)
            if self.release_vision:
                self.vision.release_weights()
        emb = self._rows(img, out)
        self.cache.put(img.key, emb)
        return emb

    def _encode_in_background(self, h: ImageHandle) -> None:
        t0 = time.perf_counter()
        emb: np.ndarray | None = None
        error: BaseException | None = None
        try:
            emb = self._encode(h.image)
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
            keys: list[Any] = [*prefix, *((h.key, r) for r in range(h.n_rows))]
            with self.session():
                if self.ctx is None or h.used or self.cached[: len(keys)] == keys:
                    return
                t0 = time.perf_counter()
                self.prefill([prefix, h] if prefix else [h])
                h.kv_s = time.perf_counter() - t0
                h.used = False  # this step is not a request
        except BaseException as e:  # noqa: BLE001 - kept on the handle; a request redoes the work
            h.kv_error = e
        finally:
            h._kv_done.set()

    # -- prefill -----------------------------------------------------------

    def reset(self) -> None:
        """Forget the KV cache (the encoding cache stays)."""
        self.ctx.reset()

    def close(self) -> None:
        """Drop the context, the encoder and the cached embeddings."""
        self.ctx = None
        self.vision = None
        self.embedder = None
        self.cache.clear()

    def prefill(self, parts: Sequence[Part]) -> PrefillStats:
        """Bring the KV cache to ``parts`` (token-id lists; images in any form
        :meth:`image` takes, or :class:`ImageHandle`), reusing the longest
        cached prefix; the logits of the last position are then in the context.
        """
        t0 = time.perf_counter()
        st = PrefillStats()
        n_enc0 = self.vision.n_patches_encoded if self.vision is not None else 0
        items: list[list[int] | Image | ImageHandle] = []
        for p in parts:
            if isinstance(p, ImageHandle):
                p.used = True
                items.append(p)
            elif isinstance(p, (list, tuple)) or (
                isinstance(p, np.ndarray) and p.ndim == 1 and p.dtype.kind in "iu"
            ):
                items.append([int(t) for t in p] if isinstance(p, np.ndarray) else list(p))
            else:  # an image, in any form image() takes
                img = self.image(p)
                with self._pending_lock:
                    pending = self._pending.get(img.key)
                items.append(pending if pending is not None else img)
        try:
            segs = self._segments(items, st)
            stage = self.ctx.prefill(
                segs,
                self.vision,
                overlap=self.overlap,
                n_threads_vision=self.n_threads_vision,
                vision_batch=self.vision_batch,
                first_batch=self.first_batch,
                release_vision=self.release_vision,
                reuse=True,
            )
            st.stages = stage
            st.n_prefilled, st.n_reused = int(stage["n_rows"]), int(stage["n_reused"])
            for seg in segs:
                if seg[0] == "patches" and seg[2] is not None:
                    self.cache.put(seg[3], seg[2])
        finally:
            if self.vision is not None:
                st.n_patches_encoded = self.vision.n_patches_encoded - n_enc0
            st.total_s = time.perf_counter() - t0
            self.last_stats = st
        return st

    def _segments(
        self, items: list[list[int] | Image | ImageHandle], st: PrefillStats
    ) -> list[Any]:
        """The scheduler's segments; images whose rows the cache already holds
        are not encoded (their segment carries only the row count)."""

        def lazy(img: Image) -> tuple[Any, ...]:
            return ("embeddings", img.n_rows, img.key)

        segs: list[Any] = []
        for it in items:
            if isinstance(it, list):
                segs.append(("tokens", it))
                continue
            img = it.image if isinstance(it, ImageHandle) else it
            emb = (
                it.result()
                if isinstance(it, ImageHandle) and it.done()
                else self.cache.get(img.key)
            )
            segs.append(("embeddings", emb, img.key) if emb is not None else lazy(img))
        keep = int(self.ctx.reusable(segs, self.vision))
        pos = 0
        for i, it in enumerate(items):
            seg = segs[i]
            n = (
                len(seg[1])
                if seg[0] == "tokens"
                else (seg[1] if isinstance(seg[1], int) else len(seg[1]))
            )
            pos += n
            if not isinstance(seg[1], int):
                if seg[0] == "embeddings":
                    st.images_ready += 1
                continue
            if pos <= keep:
                continue  # all its rows are cached: nothing to encode
            segs[i] = self._materialise(it, st)
        return segs

    def _materialise(self, it: Image | ImageHandle, st: PrefillStats) -> tuple[Any, ...]:
        """The segment of an image whose rows must be prefilled."""
        if isinstance(it, ImageHandle):
            tw = time.perf_counter()
            while not it._done.wait(0.02):
                if self.ctx.cancel_pending:
                    self.ctx.clear_cancel()
                    raise CancelledError("prefill cancelled")
            st.wait_s += time.perf_counter() - tw
            st.images_ready += 1
            return ("embeddings", it.result(), it.key)
        if self.streams_patches:
            out = np.empty((it.n_rows, self._n_embd()), np.float32)
            return ("patches", it.patches, out, it.key)
        return ("embeddings", self._encode(it), it.key)

    def _n_embd(self) -> int:
        c = self._config()
        return int(c.get("clip.vision.projection_dim", c.get("clip.vision.embedding_length")))


__all__ = ["EncodingCache", "Image", "ImageHandle", "ImagePrefiller", "PrefillStats", "image_key"]
