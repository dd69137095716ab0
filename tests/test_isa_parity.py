"""The parity tests (llama.cpp and transformers logits, greedy tokens) with
BLUELM_ISA forced to every instruction set this CPU runs, each in a subprocess
(the kernel table is chosen once per process). The ISA the runtime picks by
itself is already covered by the direct run of those files, so only forcing it
and ``Model.info`` reporting it are checked for that one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bluelm_cpp import _core

TESTS = Path(__file__).resolve().parent
PARITY_FILES = ["test_llamacpp_parity.py", "test_transformers_parity.py"]
# The ISA-dependent parts: logits against both references (llama.cpp's bit for bit on
# mirroring tables) and free-running greedy decoding (the one-token attention path) on
# the first PROMPTS prompts; the default table runs all of them directly.
SELECT = "logits or free_running"
PROMPTS = "3"

REPORT_ISA = (
    "import sys, bluelm_cpp\n"
    "from bluelm_cpp import _core\n"
    "from bluelm_cpp.errors import ModelFileError\n"
    "try:\n"
    "    path = bluelm_cpp.default_model_path()\n"
    "except ModelFileError:\n"
    "    print(_core.isa(), _core.isa()); sys.exit(0)\n"
    "m = bluelm_cpp.Model(path, n_ctx=64, n_threads=1)\n"
    "print(_core.isa(), m.info['isa'])\n"
)


def _env(isa: str) -> dict[str, str]:
    return {**os.environ, "BLUELM_ISA": isa, "BLUELM_PARITY_PROMPTS": PROMPTS}


def _default_isa() -> str:
    env = {k: v for k, v in os.environ.items() if k != "BLUELM_ISA"}
    out = subprocess.run(
        [sys.executable, "-c", "from bluelm_cpp import _core; print(_core.isa())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize("isa", _core.available_isas())
def test_forced_isa_is_used_and_reported(isa: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", REPORT_ISA], env=_env(isa), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [isa, isa]


def test_unsupported_isa_is_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from bluelm_cpp import _core; _core.isa()"],
        env=_env("no_such_isa"),
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "BLUELM_ISA=no_such_isa is not a known instruction set" in out.stderr


@pytest.mark.parametrize("isa", _core.available_isas())
def test_parity_with_forced_isa(isa: str) -> None:
    if "BLUELM_ISA" not in os.environ and isa == _default_isa():
        pytest.skip(f"{isa} is the default: the direct run of the parity tests covers it")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", SELECT]
    proc = subprocess.run(
        cmd + PARITY_FILES, cwd=TESTS, env=_env(isa), capture_output=True, text=True
    )
    out = proc.stdout + proc.stderr
    print(out[-3000:])
    assert proc.returncode == 0, f"parity tests fail with BLUELM_ISA={isa}:\n{out[-4000:]}"
