"""Runs the C++ kernel tests (tests/cpp): every SIMD table against the scalar
reference, natively and, for the NEON tables, cross-compiled under qemu-aarch64."""

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
    # test_kernels (every table), test_vision_i8 (the vision int8 kernels) and
    # test_kquants (the K-quant, Q5 and IQ4 kernels and quantisers)
    assert len(re.findall(r"\b0 failed", out)) == 3


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
    # test_kernels and test_kquants once per NEON table, then test_vision_i8
    assert len(re.findall(r"\b0 failed", out)) == 7
