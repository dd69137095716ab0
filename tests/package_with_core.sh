#!/usr/bin/env bash
# An importable bluelm_cpp built outside pip: the package's Python sources copied
# to DEST/bluelm_cpp next to the given compiled extension. The sanitizer run and
# the aarch64 run put DEST first on PYTHONPATH.
#   tests/package_with_core.sh DEST PATH/TO/_core.<suffix>.so
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$1
core=$2
rm -rf "$dest"
mkdir -p "$dest"
cp -r "$root/bluelm_cpp" "$dest/"
find "$dest" -name '__pycache__' -prune -exec rm -rf {} +
find "$dest/bluelm_cpp" -maxdepth 1 -name '_core*.so' -delete
cp "$core" "$dest/bluelm_cpp/"
