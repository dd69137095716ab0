#!/usr/bin/env bash
# Runs Debian's arm64 Python under qemu-aarch64 with the aarch64 build of
# bluelm_cpp and its dependencies (made by tests/aarch64/setup_env.sh):
#   tests/aarch64/python.sh -c "import bluelm_cpp; print(bluelm_cpp._core.isa())"
# QEMU_CPU (default max: NEON, dotprod, i8mm) picks the emulated CPU's features.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BLUELM_AARCH64_BUILD:-$root/build/aarch64-python}
[ -x "$build/sysroot/usr/bin/python3.11" ] ||
  { echo "no aarch64 Python in $build: run tests/aarch64/setup_env.sh"; exit 3; }
export PYTHONPATH="$build/pkg:$build/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
# argv[0] is the launcher script setup_env.sh writes as usr/bin/python3, so
# sys.executable is a file the host can run: subprocesses of the tests (python -c,
# python -m pytest) start through qemu too (no binfmt_misc needed).
exec qemu-aarch64 -cpu "${QEMU_CPU:-max}" -L "$build/sysroot" -0 "$build/sysroot/usr/bin/python3" \
  "$build/sysroot/usr/bin/python3.11" "$@"
