"""Runs the C++ kernel cross-check harness (tests/cpp): every op of every SIMD
table (LLM and vision) against the scalar table, natively and, for the NEON
tables, cross-compiled under qemu-aarch64."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "cpp" / "run_kernel_tests.sh"


def _run(part):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    proc = subprocess.run(
        ["bash", str(SCRIPT), part],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env=os.environ.copy(),
    )
    out = proc.stdout + proc.stderr
    print(out)
    assert proc.returncode == 0, out[-6000:]
    return out


def test_kernels_native():
    out = _run("native")
    # one test_kernels run over every table this CPU runs
    assert len(re.findall(r"\b0 failed", out)) == 1
    assert re.search(r"^scalar +ok$", out, re.M)


def test_kernels_aarch64_qemu():
    missing = [t for t in ("aarch64-linux-gnu-g++", "qemu-aarch64") if shutil.which(t) is None]
    if missing and os.environ.get("BLUELM_REQUIRE_AARCH64") == "1":
        pytest.fail("BLUELM_REQUIRE_AARCH64=1 but missing: " + ", ".join(missing))
    if missing:
        pytest.skip(
            "NEON kernels need the aarch64 cross toolchain and qemu-user: missing "
            + ", ".join(missing)
        )
    out = _run("aarch64")
    for isa in ("neon", "neon_dotprod", "neon_i8mm"):
        assert f"BLUELM_ISA={isa}" in out
    # test_kernels once per NEON table
    assert len(re.findall(r"\b0 failed", out)) == 3
    for isa in ("neon", "neon_dotprod", "neon_i8mm"):
        assert re.search(rf"^{isa} +ok$", out, re.M)
