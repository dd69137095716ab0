#!/usr/bin/env bash
# clang++ builds of everything C++ (core, kernels, vision, the kernel tests and,
# on x86_64, the extension) with -Wall -Wextra -Werror, for x86_64 and aarch64
# (clang --target, against the GNU cross toolchain's libraries; aarch64 also
# builds the benchmark driver of benchmarks/arm). The gcc builds are gated where
# CI already makes them, with BLUELM_WERROR=1: the wheel (core and extension,
# tests/wheel/check_wheel.sh), the kernel tests (core and tests/cpp, x86_64 and
# aarch64: tests/cpp/run_kernel_tests.sh) and the aarch64 extension
# (tests/aarch64/setup_env.sh).
#   tests/check_warnings.sh          build folders: build/warnings-{x86_64,aarch64}
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}
cxx=${BLUELM_CLANGXX:-clang++}
jobs=$(nproc 2>/dev/null || echo 2)
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
command -v "$cxx" >/dev/null || { echo "check_warnings: $cxx is missing"; exit 3; }

build() {  # name, cmake args...
  local dir=$root/build/warnings-$1
  shift
  mkdir -p "$dir"
  cmake -S "$root" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DBLUELM_WERROR=ON -DBLUELM_BUILD_TESTS=ON "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 ||
    { grep -B2 -A6 "error" "$dir.build.log" | head -n 80; return 1; }
  echo "clang++ $(basename "$dir"): no warnings"
}

fail=0
build x86_64 -DBLUELM_BUILD_PYTHON=ON -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" || fail=1
if command -v aarch64-linux-gnu-g++ >/dev/null; then
  build aarch64 -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
    -DCMAKE_CXX_COMPILER_TARGET=aarch64-linux-gnu -DBLUELM_BUILD_PYTHON=OFF -DBLUELM_BUILD_BENCH=ON || fail=1
else
  echo "check_warnings: no aarch64 GNU toolchain (g++-aarch64-linux-gnu): aarch64 skipped"
  [ "${BLUELM_REQUIRE_AARCH64:-0}" = 1 ] && fail=1
fi
exit $fail
