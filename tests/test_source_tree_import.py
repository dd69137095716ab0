"""Importing bluelm_cpp from the repository root (issue 16): the source folder
shadows the installed package, so the import must either work (an editable
install, whose finder serves the compiled _core) or fail with a message that says
what to do, never with Python's misleading "circular import" message."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HINT = "pip install --no-build-isolation -e ."
# Drops scikit-build-core's editable finders so the copied folder is what imports.
NO_EDITABLE = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if not type(f).__name__.startswith('ScikitBuild')]; "
)


def _import_in(cwd: Path, prelude: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", prelude + "import bluelm_cpp, bluelm_cpp._core"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _source_copy(tmp_path: Path, with_pyproject: bool) -> Path:
    shutil.copytree(
        ROOT / "bluelm_cpp",
        tmp_path / "bluelm_cpp",
        ignore=shutil.ignore_patterns("__pycache__", "_core*"),
    )
    if with_pyproject:
        shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_source_folder_without_extension_says_what_to_do(tmp_path):
    proc = _import_in(_source_copy(tmp_path, with_pyproject=True), NO_EDITABLE)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "source folder" in proc.stderr
    assert HINT in proc.stderr
    assert "circular import" not in proc.stderr


def test_installed_package_without_extension_says_reinstall(tmp_path):
    proc = _import_in(_source_copy(tmp_path, with_pyproject=False), NO_EDITABLE)
    assert proc.returncode != 0
    assert "compiled extension _core" in proc.stderr and "reinstall" in proc.stderr
    assert "circular import" not in proc.stderr


def test_import_from_repository_root():
    # An editable install imports; a regular install (CI's) gets the message.
    proc = _import_in(ROOT)
    if proc.returncode != 0:
        assert HINT in proc.stderr, proc.stderr
    assert "circular import" not in proc.stderr
