"""Proves the sanitized run (tests/sanitize/run_sanitized.sh) would catch a bug:
a leak and a heap overflow made through ctypes (foreign code, called from the
interpreter like our extension is) must make a child interpreter fail with
the sanitizer's report, so the leak suppressions for CPython are not hiding
leaks of other code. Runs only under that script (BLUELM_SANITIZED=1).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("BLUELM_SANITIZED") != "1", reason="only meaningful in the ASan run"
)

LEAK = """
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = None  # drop the pointer: nothing can reach the block
libc.malloc(4096)
import bluelm_cpp._core  # the extension loads fine alongside
"""

OVERFLOW = """
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(16)
ctypes.memset(p, 0, 17)
"""

CLEAN = """
import bluelm_cpp
from bluelm_cpp.default_model import default_model_path
try:
    path = default_model_path()
except bluelm_cpp.ModelFileError:
    path = None
if path:
    with bluelm_cpp.Model(path, n_ctx=32, n_threads=1) as m:
        m.generate("Hi", 2, temperature=0)
"""


def _child(code: str) -> subprocess.CompletedProcess[str]:
    # The run writes reports to files; this child's (expected) ones go to stderr.
    env = dict(os.environ)
    for key in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env[key] = env.get(key, "") + ":log_path=stderr"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )


def test_leak_in_foreign_code_is_reported() -> None:
    p = _child(LEAK)
    assert p.returncode != 0, p.stderr[-3000:]
    assert "LeakSanitizer: detected memory leaks" in p.stderr
    assert "4096 byte(s)" in p.stderr


def test_heap_overflow_is_reported() -> None:
    p = _child(OVERFLOW)
    assert p.returncode != 0
    assert "heap-buffer-overflow" in p.stderr, p.stderr[-3000:]


def test_clean_model_run_is_quiet() -> None:
    p = _child(CLEAN)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Sanitizer" not in p.stderr
