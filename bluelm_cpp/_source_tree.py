"""A clear error when ``bluelm_cpp`` is imported from its source folder
(``bluelm_cpp/__init__.py`` imports this module first; importing it checks).

Python from the repository root finds ``./bluelm_cpp`` (the sources, without the
compiled ``_core``) before the installed package, and the first ``from . import
_core`` then fails with a misleading "circular import" message. numpy answers the
same trap with a message that says what to do; so do we.

Example:
    >>> from bluelm_cpp._source_tree import check_core_importable
    >>> check_core_importable()  # silent when the extension can be imported
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

DEVELOP_HINT = "pip install --no-build-isolation -e ."


def check_core_importable() -> None:
    """Raise ImportError with a remedy when ``bluelm_cpp._core`` cannot be found.

    An extension that is present but fails to load (wrong architecture, missing
    symbol) is left to the import itself, whose message names the real cause.
    """
    if importlib.util.find_spec("bluelm_cpp._core") is not None:
        return
    package = Path(__file__).resolve().parent
    if (package.parent / "pyproject.toml").is_file():
        raise ImportError(
            f"bluelm_cpp was imported from its source folder ({package}), which has no "
            "compiled extension (_core). Run Python from another folder to use the "
            f"installed package, or install the source folder for development with "
            f"`{DEVELOP_HINT}` (an editable install: Python edits take effect at once, "
            "C++ edits after re-running it)."
        )
    suffixes = ", ".join(importlib.machinery.EXTENSION_SUFFIXES)
    raise ImportError(
        f"bluelm_cpp's compiled extension _core ({suffixes}) is missing from {package}: "
        "reinstall the package (pip install --force-reinstall bluelm-cpp)."
    )


check_core_importable()
