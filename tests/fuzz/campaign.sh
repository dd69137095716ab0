#!/usr/bin/env bash
# A longer fuzzing campaign on the GGUF reader (libFuzzer, ASan + UBSan).
#   tests/fuzz/campaign.sh [RUNS] [extra libFuzzer flags...]    (default RUNS: 1000000)
# The growing corpus lives in $BLUELM_FUZZ_BUILD/corpus-gguf (seeded from
# tests/fuzz/gguf/seeds); crashes, hangs and OOMs are written to
# $BLUELM_FUZZ_BUILD/artifacts-gguf/. Exit status is non-zero on any finding.
# Turn a finding into a regression seed: copy it into tests/fuzz/gguf/regressions/
# (CI replays every file there) after fixing the bug.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-1000000}
shift || true
bin=$(bash "$here/build_gguf_fuzzer.sh")
out=$(dirname "$bin")
corpus=$out/corpus-gguf
artifacts=$out/artifacts-gguf
mkdir -p "$corpus" "$artifacts"
cp -n "$here"/gguf/seeds/* "$here"/gguf/regressions/* "$corpus"/ 2>/dev/null || true
log=$out/campaign-gguf.log
start=$(date +%s)
set +e
"$bin" -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" "$corpus" >"$log" 2>&1
rc=$?
set -e
end=$(date +%s)
tail -n 25 "$log"
echo "campaign: rc=$rc, ${runs} runs requested, wall $((end - start)) s;" \
  "$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1);" \
  "findings: $(find "$artifacts" -type f | wc -l) file(s) in $artifacts"
exit $rc
