#!/usr/bin/env bash
# Builds the C++ core, the kernel tests and the _core extension with
# -fsanitize=address,undefined -fno-sanitize-recover=all (at -O1: CMakeLists.txt) into a build folder of
# its own (never the pip build), then runs the kernel tests and the pytest suite
# against that extension with the ASan runtime preloaded into the (uninstrumented)
# Python. Any ASan/UBSan report or leak from our code fails the run.
#   tests/sanitize/run_sanitized.sh [pytest args...]
# Without arguments it runs the CI subset below: every test that drives the
# native core except the long llama.cpp/transformers parity sweeps (run them by
# naming them; about 15 minutes under ASan) and test_fuzz_gguf.py (its fuzzer
# is instrumented by clang itself).
# Build folder: $BLUELM_SANITIZE_BUILD (default: build/sanitize).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/sanitize
build=${BLUELM_SANITIZE_BUILD:-$root/build/sanitize}
py=${PYTHON:-python}
# The real interpreter, not a launcher: a pyenv shim is a bash script, and bash
# under the preloaded ASan runtime fails (LSan reports bash's own allocations).
py=$("$py" -c 'import sys; print(sys.executable)')
jobs=$(nproc 2>/dev/null || echo 2)

# The extension is built by g++, so the preloaded runtime must be g++'s libasan.
cxx=${BLUELM_SANITIZE_CXX:-g++}
libasan=$("${cxx}" -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
  echo "FAIL: $cxx has no libasan.so ($libasan)"
  exit 1
fi
# libstdc++ is preloaded too: ASan intercepts __cxa_throw only if libstdc++ is
# present at start-up (python does not link it; the extension dlopens it late).
libstdcxx=$(readlink -f "$("${cxx}" -print-file-name=libstdc++.so)")
preload="$libasan $libstdcxx"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

echo "== sanitizer build ($build)"
mkdir -p "$build"
cmake -S "$root" -B "$build/cmake" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DBLUELM_SANITIZE=ON -DBLUELM_BUILD_TESTS=ON \
  -DBLUELM_BUILD_PYTHON=ON -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF -DPython_EXECUTABLE="$(command -v "$py")" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
cmake --build "$build/cmake" --target _core test_kernels -j "$jobs" >"$build/build.log" 2>&1 ||
  { tail -n 80 "$build/build.log"; exit 1; }

# An importable package: the Python sources next to the sanitized _core.
pkg=$build/pkg
bash "$root/tests/package_with_core.sh" "$pkg" "$build"/cmake/_core*.so
# An editable (scikit-build-core) install of bluelm-cpp redirects imports of
# bluelm_cpp to its own build; drop those finders so $pkg wins.
cat >"$pkg/sitecustomize.py" <<'PY'
import sys

sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__.startswith("ScikitBuild")]
PY

# Leaks: the interpreter's own (objects alive at exit, allocator leaves) are
# suppressed by function name in lsan.supp; every other leak is reported.
# Reports go to files: pytest captures fd 2, so a report printed there while a
# test runs would be lost when the sanitizer ends the process.
reports=$build/reports
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:detect_stack_use_after_return=1:strict_init_order=1:check_initialization_order=1:print_suppressions=0:${ASAN_OPTIONS_EXTRA:-}"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0:exitcode=86"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1:exitcode=86"
# Python's small-object allocator hides buffer overflows from ASan: use malloc.
export PYTHONMALLOC=malloc

echo "== kernel tests under ASan+UBSan"
"$build/cmake/tests/cpp/test_kernels"

echo "== pytest under ASan+UBSan (extension: $pkg/bluelm_cpp)"
cd "$root/tests"
PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}" LD_PRELOAD="$preload" \
  "$py" -c "import bluelm_cpp, bluelm_cpp._core as c, sys; \
assert c.__file__.startswith('$pkg'), c.__file__; \
assert bluelm_cpp.__file__.startswith('$pkg'), bluelm_cpp.__file__; print('sanitized core:', c.__file__)"
# test_kernels_cpp.py rebuilds the kernel tests without sanitizers (run above instead).
if [ $# -eq 0 ]; then
  set -- test_model.py test_concurrency.py test_leak.py test_fuzz_inputs.py \
    test_errors_doc.py test_sanitizer_canary.py test_tokenizer.py test_chat_template.py \
    test_convert.py test_fuzz_vision.py test_quantize.py test_kquant_model.py
fi
set +e
PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}" LD_PRELOAD="$preload" BLUELM_SANITIZED=1 \
  "$py" -m pytest -q -p no:cacheprovider --ignore=test_kernels_cpp.py \
  --ignore=test_fuzz_gguf.py "$@"
rc=$?
set -e
if [ -n "$(ls -A "$reports")" ]; then
  for f in "$reports"/*; do
    echo "---- $f"
    head -c 20000 "$f"
  done
  echo "sanitized run: FAILED (sanitizer reports above)"
  exit 1
fi
if [ $rc -ne 0 ]; then
  echo "sanitized run: FAILED (pytest exit status $rc)"
  exit $rc
fi
echo "sanitized run: clean"
