"""Exceptions raised by bluelm-cpp.

Every error the public API raises derives from :class:`BlueLMError` and from the
built-in exception a caller would expect (``ValueError`` or ``OSError``), so both
``except bluelm_cpp.BlueLMError`` and ``except ValueError`` work.

Example:
    >>> import bluelm_cpp
    >>> try:
    ...     bluelm_cpp.Model("missing.gguf")
    ... except bluelm_cpp.ModelFileError as e:
    ...     print("cannot open:", e)
    cannot open: ...
"""

from __future__ import annotations

import numbers


class BlueLMError(Exception):
    """Base class of every bluelm-cpp error."""


class ModelFileError(BlueLMError, OSError):
    """A model file is missing or cannot be read (permissions, I/O)."""


class ModelFormatError(BlueLMError, ValueError):
    """A file is not a valid GGUF, is truncated, or uses an unsupported
    architecture, tensor type or tokenizer."""


class InvalidArgumentError(BlueLMError, ValueError):
    """An argument is out of range (sampling values, sizes, token ids)."""


class ContextOverflowError(BlueLMError, ValueError):
    """A prompt (plus requested tokens) does not fit in the context window."""


class CancelledError(BlueLMError):
    """A request was cancelled (``Model.cancel()`` or a KeyboardInterrupt during
    a prefill); the model is left as it was before the request."""


class ImageError(BlueLMError, ValueError):
    """An image cannot be decoded or is unusable (empty, too large, corrupt)."""


__all__ = [
    "BlueLMError",
    "ModelFileError",
    "ModelFormatError",
    "InvalidArgumentError",
    "ContextOverflowError",
    "ImageError",
    "CancelledError",
]


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], or InvalidArgumentError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise InvalidArgumentError(f"{name} must be {bound}, got {v}")
    return v
