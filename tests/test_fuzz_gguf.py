"""CI slice of the GGUF reader fuzzing (libFuzzer, clang, ASan + UBSan).

Replays every seed (tests/fuzz/gguf/seeds: real SmolLM2 header bytes, gguf-py
files) and every saved regression input (tests/fuzz/gguf/regressions), then
fuzzes for BLUELM_FUZZ_SECONDS (default 40) from a scratch copy of the corpus.
Any crash, sanitizer report, hang or invariant break fails. The long campaign
is tests/fuzz/campaign.sh. Skipped when clang's libFuzzer is missing, unless
BLUELM_REQUIRE_FUZZ=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tests" / "fuzz"


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = None
    if shutil.which("clang++") is None:
        why = "clang++ is not installed"
    else:
        out = tmp_path_factory.mktemp("fuzz-build")
        env = dict(os.environ, BLUELM_FUZZ_BUILD=str(out))
        proc = subprocess.run(
            ["bash", str(FUZZ / "build_gguf_fuzzer.sh")], capture_output=True, text=True, env=env
        )
        if proc.returncode == 0:
            return Path(proc.stdout.strip().splitlines()[-1])
        if "libclang_rt.fuzzer" not in proc.stderr and "fuzzer" not in proc.stderr:
            pytest.fail(f"fuzzer build failed (exit {proc.returncode}):\n" + proc.stderr[-4000:])
        why = "clang's libFuzzer runtime is missing (Debian: libclang-rt-14-dev)"
    if os.environ.get("BLUELM_REQUIRE_FUZZ") == "1":
        pytest.fail(why)
    pytest.skip(why)


def _run(cmd: list[str], timeout: float) -> str:
    # The fuzzer is ASan-instrumented itself: the sanitized test run's preload must not leak in.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out[-6000:]
    return out


def test_seeds_and_regressions_replay_clean(fuzzer: Path) -> None:
    inputs = sorted((FUZZ / "gguf" / "seeds").iterdir()) + sorted(
        p for p in (FUZZ / "gguf" / "regressions").iterdir() if not p.name.startswith(".")
    )
    assert len(inputs) >= 7
    out = _run([str(fuzzer), *map(str, inputs)], timeout=300)
    assert out.count("Executed ") >= len(inputs) or "Running:" in out


def test_fuzz_gguf_reader_briefly(fuzzer: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "gguf" / "seeds", corpus)
    seconds = int(os.environ.get("BLUELM_FUZZ_SECONDS", "40"))
    out = _run(
        [
            str(fuzzer),
            f"-max_total_time={seconds}",
            "-max_len=65536",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        timeout=seconds + 240,
    )
    assert "Done " in out
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))
    ]
