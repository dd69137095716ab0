#!/usr/bin/env bash
# Builds the libFuzzer GGUF target with clang (ASan + UBSan, no recovery).
#   tests/fuzz/build_gguf_fuzzer.sh   -> prints the binary's path
# Output folder: $BLUELM_FUZZ_BUILD (default: build/fuzz).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${BLUELM_FUZZ_BUILD:-$root/build/fuzz}
cxx=${BLUELM_FUZZ_CXX:-clang++}
mkdir -p "$out"
bin=$out/fuzz_gguf
srcs=(
  "$root/tests/fuzz/gguf/fuzz_gguf.cpp"
  "$root/csrc/core/gguf_file.cpp"
  "$root/csrc/core/block_formats.cpp"
  "$root/csrc/core/quantize.cpp"
  "$root/csrc/core/huge_pages.cpp"
  "$root/csrc/llm/llm_arch.cpp"
  "$root/csrc/llm/llm_config.cpp"
  "$root/csrc/llm/llm_weights.cpp"
  "$root/csrc/kernels/dispatch.cpp"
  "$root/csrc/kernels/kernel_choice.cpp"
  "$root/csrc/kernels/kquant_pack.cpp"
  "$root/csrc/kernels/repack.cpp"
  "$root/csrc/kernels/cpu_features.cpp"
  "$root"/csrc/kernels/scalar/*.cpp
)
# No `ls -t | head` here: under pipefail, head closing the pipe early kills ls (exit 141, no message).
stale=0
[ -x "$bin" ] || stale=1
for f in "${srcs[@]}" "$root"/csrc/*/*.h "$root"/csrc/kernels/*/*.h "$0"; do
  [ "$stale" = 1 ] && break
  [ "$f" -nt "$bin" ] && stale=1
done
if [ "$stale" = 1 ]; then
  "$cxx" -std=c++17 -O1 -g -fno-omit-frame-pointer -Wall -Wextra \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I "$root/csrc" "${srcs[@]}" -o "$bin.tmp" -lpthread >&2
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
