"""Prompt pieces shared by the Model's text and chat paths: OpenAI-style image
parts, stop strings, and the text stream that holds back a possible stop.

Example:
    >>> from bluelm_cpp.prompt import check_stop, first_stop
    >>> first_stop("one two three", check_stop([" three", "xyz"]))
    7
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .errors import InvalidArgumentError

Message = dict[str, Any]

IMAGE_PART_TYPES = ("image", "image_url")


def image_of_part(part: dict[str, Any]) -> Any:
    """The image of an OpenAI-style part: ``image_url`` (path or ``data:`` URL) or ``image``.

    Example:
        >>> image_of_part({"type": "image_url", "image_url": {"url": "file:///tmp/cat.png"}})
        '/tmp/cat.png'
    """
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


def messages_with_images(
    messages: Any, placeholder: str | None, where: str, need_image: bool = True
) -> tuple[list[Message], list[Any]]:
    """``messages`` with each image part replaced by the ``placeholder`` text,
    and the images in order (``None`` for a part without one, when not
    ``need_image``). ``placeholder`` None: the model has no vision encoder."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidArgumentError("messages must be a list of {'role': ..., 'content': ...} dicts")
    images: list[Any] = []
    msgs: list[Message] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in IMAGE_PART_TYPES for p in content
        ):
            if placeholder is None:
                raise InvalidArgumentError(
                    f"an image part was given, but '{where}' is a text-only model"
                )
            parts = []
            for p in content:
                if isinstance(p, dict) and p.get("type") in IMAGE_PART_TYPES:
                    keys = ("image", "image_url", "url", "path")
                    bare = not need_image and all(p.get(k) is None for k in keys)
                    images.append(None if bare else image_of_part(p))
                    parts.append({"type": "text", "text": placeholder})
                else:
                    parts.append(p)
            msg = {**msg, "content": parts}
        msgs.append(msg)
    return msgs, images


def check_stop(stop: str | Sequence[str] | None) -> list[str]:
    """``stop`` as a list of non-empty strings."""
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else list(stop)
    for s in items:
        if not isinstance(s, str) or not s:
            raise InvalidArgumentError("stop must be a non-empty string or a list of them")
    return items


def first_stop(text: str, stop: list[str]) -> int | None:
    """Index of the earliest stop string in ``text``, or None."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def stop_prefix_len(text: str, stop: list[str]) -> int:
    """Length of the longest suffix of ``text`` that starts some stop string."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class TextStream:
    """Token ids -> text pieces: whole UTF-8 characters only, cut before the
    first stop string, holding back text that may start one. ``stopped`` tells
    whether a stop string ended it; ``n_tokens`` how many tokens it consumed.

    Example:
        >>> ts = TextStream(model.tokenizer.stream_decoder(), [" 6"])  # doctest: +SKIP
        >>> "".join(ts.pieces(ids))  # doctest: +SKIP
    """

    def __init__(self, decoder: Any, stop: list[str]) -> None:
        self._decoder = decoder
        self._stop = stop
        self._pending = ""
        self.stopped = False
        self.n_tokens = 0

    def push(self, tok: int | None) -> tuple[str, bool]:
        """Feed one token (None: the end); returns (ready text, finished)."""
        if tok is not None:
            self.n_tokens += 1
            self._pending += self._decoder.push(tok)
        else:
            self._pending += self._decoder.flush()
        cut = first_stop(self._pending, self._stop) if self._stop else None
        if cut is not None:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out, True
        hold = 0 if tok is None or not self._stop else stop_prefix_len(self._pending, self._stop)
        ready = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(ready) :]
        return ready, tok is None

    def pieces(self, tokens: Iterator[int]) -> Iterator[str]:
        """All pieces of ``tokens``; closes ``tokens`` when done or abandoned."""
        try:
            for tok in tokens:
                text, done = self.push(tok)
                if text:
                    yield text
                if done:
                    return
            text, _ = self.push(None)
            if text:
                yield text
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()
