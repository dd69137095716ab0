#!/usr/bin/env bash
# Builds the C++ kernel cross-check harness (test_kernels: every op of every
# table against the scalar one) and runs it: natively (every table this CPU can
# run), then cross-compiled for aarch64 under qemu once per NEON table.
#   tests/cpp/run_kernel_tests.sh [all|native|aarch64]     (default: all)
# Build trees go to $BLUELM_KERNEL_TEST_BUILD (default: build/kernel-tests).
# In "all" mode a missing cross toolchain or qemu is a printed skip, unless
# BLUELM_REQUIRE_AARCH64=1 (CI), where it is a failure. BLUELM_WERROR=1 (CI)
# builds with -Werror: these are the gcc builds of the core and tests/cpp.
set -u
mode=${1:-all}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BLUELM_KERNEL_TEST_BUILD:-$root/build/kernel-tests}
jobs=$(nproc 2>/dev/null || echo 2)
fail=0
werror=$([ "${BLUELM_WERROR:-0}" = 1 ] && echo ON || echo OFF)

configure_and_build() {  # dir, extra cmake args...
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DBLUELM_BUILD_TESTS=ON \
    -DBLUELM_BUILD_PYTHON=OFF -DBLUELM_WERROR="$werror" "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" --target test_kernels -j "$jobs" >"$dir.build.log" 2>&1 ||
    { tail -n 60 "$dir.build.log"; return 1; }
}

mkdir -p "$build"

if [ "$mode" = all ] || [ "$mode" = native ]; then
  echo "== native ($(uname -m))"
  if configure_and_build "$build/native"; then
    bin=$build/native/tests/cpp/test_kernels
    "$bin" || fail=1
    # Forcing a table the CPU cannot run (or an unknown name) must be refused.
    out=$(BLUELM_ISA=no_such_isa "$bin" --active)
    rc=$?
    if [ $rc -eq 2 ] && echo "$out" | grep -q "supports: scalar"; then
      echo "BLUELM_ISA=no_such_isa refused: ok"
    else
      echo "FAIL BLUELM_ISA=no_such_isa gave rc=$rc: $out"
      fail=1
    fi
  else
    echo "FAIL native build"
    fail=1
  fi
fi

if [ "$mode" = all ] || [ "$mode" = aarch64 ]; then
  echo "== aarch64 under qemu"
  missing=""
  command -v aarch64-linux-gnu-g++ >/dev/null || missing="$missing aarch64-linux-gnu-g++"
  command -v qemu-aarch64 >/dev/null || missing="$missing qemu-aarch64"
  if [ -n "$missing" ]; then
    echo "SKIP aarch64: missing$missing"
    if [ "$mode" = aarch64 ] || [ "${BLUELM_REQUIRE_AARCH64:-0}" = 1 ]; then fail=1; fi
  elif configure_and_build "$build/aarch64" \
      -DCMAKE_TOOLCHAIN_FILE="$root/tests/cpp/toolchain-aarch64.cmake"; then
    bin=$build/aarch64/tests/cpp/test_kernels
    # The three tables at once (each run is one emulated thread), each output
    # printed whole in order.
    pids=()
    for isa in neon neon_dotprod neon_i8mm; do
      BLUELM_ISA=$isa qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu "$bin" >"$build/aarch64.$isa.log" 2>&1 &
      pids+=($!)
    done
    i=0
    for isa in neon neon_dotprod neon_i8mm; do
      wait "${pids[$i]}" || fail=1
      i=$((i + 1))
      echo "-- BLUELM_ISA=$isa"
      cat "$build/aarch64.$isa.log"
    done
  else
    echo "FAIL aarch64 build"
    fail=1
  fi
fi

if [ $fail -ne 0 ]; then
  echo "kernel tests: FAILED"
else
  echo "kernel tests: ok"
fi
exit $fail
