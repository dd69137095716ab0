"""docs/errors.md matches the code: every documented class exists with the
documented bases and is exported, every class of bluelm_cpp.errors is
documented, every documented message text occurs in the source that raises
it, and a sample of documented conditions raise what the document says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import bluelm_cpp
from bluelm_cpp import errors

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")


def _class_rows() -> dict[str, str]:
    rows = {}
    for m in re.finditer(r"^\| `(\w+)` \| `(\w+)` \|", DOC, re.M):
        rows[m.group(1)] = m.group(2)
    return rows


def test_every_documented_class_exists_with_its_bases() -> None:
    rows = _class_rows()
    assert len(rows) >= 6
    builtins = {"Exception": Exception, "OSError": OSError, "ValueError": ValueError}
    for name, base in rows.items():
        cls = getattr(errors, name)
        assert getattr(bluelm_cpp, name) is cls
        assert issubclass(cls, builtins[base])
        assert issubclass(cls, errors.BlueLMError)


def test_every_error_class_is_documented() -> None:
    assert set(errors.__all__) == set(_class_rows())


def _sources() -> str:
    files = list((ROOT / "bluelm_cpp").rglob("*.py")) + list((ROOT / "csrc").rglob("*.[ch]*"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    # Join adjacent string literals split over lines ("abc "\n    f"def").
    return re.sub(r"\"\s*\n\s*f?\"", "", text)


def test_documented_messages_occur_in_the_code() -> None:
    src = _sources()
    messages = []
    for line in DOC.splitlines():
        if line.startswith("|") and "`" in line:
            last = line.rstrip(" |").split(" | ")[-1]
            messages += re.findall(r"`([^`]+)`", last)
    assert len(messages) > 60
    missing = []
    for msg in messages:
        # Literal pieces between placeholders, quotes and brackets (the code
        # builds messages from f-string parts and adjacent literals).
        for frag in re.split(r"\{[^}]*\}|\.\.\.|'|\[|\]|\(|\)|; ", msg):
            frag = frag.strip(" ,.:;")
            if len(frag) >= 8 and frag not in src:
                missing.append(frag)
    assert not missing, missing


def test_sample_of_documented_conditions(smollm2_file: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.ModelFileError, match="does not exist"):
        bluelm_cpp.Model(tmp_path / "missing.gguf")
    with pytest.raises(errors.InvalidArgumentError, match="n_ctx must be between"):
        bluelm_cpp.Model(smollm2_file, n_ctx=-1)
    short = tmp_path / "short.gguf"
    short.write_bytes(smollm2_file.read_bytes()[:4096])
    with pytest.raises(errors.ModelFormatError, match="invalid GGUF file"):
        bluelm_cpp.Model(short)
    notgguf = tmp_path / "x.gguf"
    notgguf.write_bytes(b"hello world, this is not gguf")
    with pytest.raises(errors.ModelFormatError, match="bad magic bytes"):
        bluelm_cpp.Model(notgguf)
    m = bluelm_cpp.Model(smollm2_file, n_ctx=16, n_threads=1)
    with pytest.raises(errors.ContextOverflowError, match="but n_ctx is 16"):
        m.generate(list(range(100, 140)), 1)
    with pytest.raises(errors.InvalidArgumentError, match="top_p must be in"):
        m.generate("Hi", 1, top_p=0.0)
    m.close()
    with pytest.raises(errors.BlueLMError, match="this model is closed"):
        m.generate("Hi", 1)
    cli = subprocess.run(
        [sys.executable, "-m", "bluelm_cpp.cli", "info", str(notgguf)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2 and "bluelm-cpp: error:" in cli.stderr
