"""Instructions per weight byte of the NEON dotprod Q4_0 matmul, bluelm-cpp vs
llama.cpp, counted under qemu-aarch64 (this machine has no ARM timing).

Both sides run the same work in a small static aarch64 driver with one thread:
R times, quantise T activation rows to Q8_0 and multiply them by an N x K Q4_0
matrix (T = 1: decode, a gemv; T > 1: a prefill chunk, a gemm). qemu's TCG
plugin benchmarks/arm/insn_count.c counts every executed guest instruction;
each driver runs with R = 1 and R = 3, so set-up cancels out:

    per call = (count(R=3) - count(R=1)) / 2
    per weight byte = per call / (N * K / 32 * 18)      (Q4_0 block: 18 bytes)

and, for T > 1, per weight byte and token = per weight byte / T. The per-function
counts of the same difference show where the instructions go. Instruction counts
are not time (no cache or pipeline model): they compare the work each kernel asks
of the core, e.g. how many instructions feed each SDOT.

The drivers:
- bluelm-cpp: benchmarks/arm/q4_0_matmul.cpp, built here for aarch64
  (cmake -DBLUELM_BUILD_BENCH=ON with tests/cpp/toolchain-aarch64.cmake) unless
  --ours gives a binary; BLUELM_ISA (--isa, default neon_dotprod) picks the table.
- llama.cpp: benchmarks/arm/ggml_q4_0_matmul.cpp (ggml_mul_mat on the CPU
  backend with its repack buffer type, as llama.cpp loads weights), linked
  against ggml cross-compiled here from --llama-src (a llama.cpp source tree,
  e.g. the llama-cpp-python sdist's vendor/llama.cpp) with GGML_NATIVE=OFF,
  GGML_OPENMP=OFF and GGML_CPU_ARM_ARCH = our table's -march
  (armv8.2-a+dotprod+fp16 for neon_dotprod, armv8.6-a+dotprod+i8mm+fp16 for
  neon_i8mm); or --llama PATH, such a driver built already. Nothing of
  llama.cpp lives in this repository. Both drivers draw the same random weights and activations
  (mt19937(42), one fp16 scale then 16 quant bytes per block, then the
  activations), so their checksums agree when both compute the same product.
- the plugin: --plugin PATH (built), or --qemu-include DIR holding qemu's
  qemu-plugin.h (Debian: `apt-get source qemu`, include/qemu/) to build it here.

    python benchmarks/bench_arm_insn.py \\
        --llama-src /tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp \\
        --qemu-include /path/qemu-7.2.0/include/qemu
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
Q4_0_BLOCK_BYTES = 18
REPS = (1, 3)


def build_ours(build: Path, target: str = "q4_0_matmul") -> Path:
    """Cross-compiles a driver of benchmarks/arm (default q4_0_matmul.cpp) for
    aarch64 (incremental)."""
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'tests/cpp/toolchain-aarch64.cmake'}",
            "-DBLUELM_BUILD_PYTHON=OFF",
            "-DBLUELM_BUILD_BENCH=ON",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["cmake", "--build", str(build), "--target", target, "-j", str(os.cpu_count() or 2)],
        check=True,
        capture_output=True,
    )
    return build / "benchmarks" / "arm" / target


# GGML_CPU_ARM_ARCH of ggml built to match each table's -march (kernels.cmake).
GGML_ARCH = {
    "neon_dotprod": "armv8.2-a+dotprod+fp16",
    "neon_i8mm": "armv8.6-a+dotprod+i8mm+fp16",
}


def build_llama(src: Path, isa: str, build: Path) -> Path:
    """ggml of a llama.cpp tree (configured whole: its ggml folder alone is not a
    complete project in the sdist), cross-compiled for aarch64 (static, incremental),
    and benchmarks/arm/ggml_q4_0_matmul.cpp linked against it."""
    if isa not in GGML_ARCH:
        sys.exit(f"--llama-src: no ggml -march for --isa {isa} (one of {', '.join(GGML_ARCH)})")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'tests/cpp/toolchain-aarch64.cmake'}",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DGGML_NATIVE=OFF",
            "-DGGML_OPENMP=OFF",
            f"-DGGML_CPU_ARM_ARCH={GGML_ARCH[isa]}",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_TOOLS=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "ggml", "-j", str(os.cpu_count() or 2)],
        check=True,
        capture_output=True,
    )
    libs = [build / "ggml" / "src" / f"lib{n}.a" for n in ("ggml", "ggml-cpu", "ggml-base")]
    out = build / "ggml_q4_0_matmul"
    subprocess.run(
        [
            "aarch64-linux-gnu-g++",
            "-O2",
            "-std=c++17",
            "-static",
            "-I",
            str(src / "ggml" / "include"),
            str(ROOT / "benchmarks" / "arm" / "ggml_q4_0_matmul.cpp"),
            *map(str, libs),
            "-lpthread",
            "-lm",
            "-o",
            str(out),
        ],
        check=True,
    )
    return out


def build_plugin(include: Path, out: Path) -> Path:
    cc = os.environ.get("CC", "cc")
    subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-O2",
            "-I",
            str(include),
            str(ROOT / "benchmarks" / "arm" / "insn_count.c"),
            "-o",
            str(out),
        ],
        check=True,
    )
    return out


def plugin_of(a: argparse.Namespace, tmp: Path) -> Path:
    """The plugin: --plugin as given, or built from --qemu-include into tmp."""
    if a.plugin:
        return a.plugin
    if a.qemu_include:
        return build_plugin(a.qemu_include, tmp / "insn_count.so")
    sys.exit("give --plugin or --qemu-include (see the docstring)")


def count(plugin: Path, binary: Path, args: list[str], env: dict[str, str], tmp: Path):
    """(total, {symbol: count}, stdout) of one run under qemu with the plugin."""
    out = tmp / "counts.txt"
    proc = subprocess.run(
        ["qemu-aarch64", "-cpu", "max", "-plugin", f"{plugin},out={out}", str(binary), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.read_text().splitlines()
    total = int(lines[0].split()[1])
    per_sym = {}
    for line in lines[1:]:
        n, name = line.split(" ", 1)
        per_sym[name] = int(n)
    return total, per_sym, proc.stdout.strip()


def per_call(plugin, binary, shape, env, tmp):
    """Instructions of one call (difference of R = 3 and R = 1), its top functions."""
    K, N, T = shape
    runs = [count(plugin, binary, [str(K), str(N), str(T), str(r)], env, tmp) for r in REPS]
    (t1, s1, _), (t3, s3, out3) = runs
    calls = REPS[1] - REPS[0]
    syms = {k: (s3.get(k, 0) - s1.get(k, 0)) / calls for k in set(s1) | set(s3)}
    top = sorted(((v, k) for k, v in syms.items() if v > 0), reverse=True)[:3]
    checksum = float(re.search(r"checksum (\S+)", out3).group(1))
    return (t3 - t1) / calls, top, checksum, out3


def short(sym: str) -> str:
    """A readable function name: demangled, without return type, scope and arguments."""
    if shutil.which("c++filt"):
        sym = subprocess.run(["c++filt", sym], capture_output=True, text=True).stdout.strip()
    sym = re.sub(r" \[clone [^\]]*\]", "", sym).replace("(anonymous namespace)::", "")
    if sym.endswith(")"):  # the argument list: the balanced (...) at the end
        depth = 0
        for i in range(len(sym) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(sym[i], 0)
            if depth == 0:
                sym = sym[:i]
                break
    depth, start = 0, 0
    for i, ch in enumerate(sym):  # after the last space or "::" outside <...>
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if depth == 0 and (ch == " " or sym.startswith("::", i)):
            start = i + (2 if ch == ":" else 1)
    return sym[start:]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ours", type=Path, help="bluelm-cpp driver (default: build it)")
    ap.add_argument("--llama", type=Path, help="llama.cpp driver (same command line), built")
    ap.add_argument("--llama-src", type=Path, help="llama.cpp source tree: build its driver here")
    ap.add_argument("--plugin", type=Path, help="built insn_count plugin")
    ap.add_argument("--qemu-include", type=Path, help="folder with qemu-plugin.h")
    ap.add_argument("--isa", default="neon_dotprod", help="BLUELM_ISA for our driver")
    ap.add_argument(
        "--shapes",
        default="2560x2560,2560x6912",
        help="KxN weight shapes (BlueLM-3B: attention 2560x2560, FFN 2560x6912)",
    )
    ap.add_argument("--tokens", default="1,128", help="T values: 1 = decode, >1 = a prefill chunk")
    ap.add_argument("--build", type=Path, default=ROOT / "build" / "arm-insn")
    a = ap.parse_args()
    if shutil.which("qemu-aarch64") is None:
        sys.exit("qemu-aarch64 is needed (Debian: qemu-user)")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        plugin = plugin_of(a, tmp)
        ours = a.ours or build_ours(a.build)
        if a.llama_src and not a.llama:
            a.llama = build_llama(a.llama_src, a.isa, a.build / f"ggml-{a.isa}")
        env_ours = {**os.environ, "BLUELM_ISA": a.isa}
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
        tokens = [int(t) for t in a.tokens.split(",")]
        print(f"qemu-aarch64 -cpu max, instruction counts per call (R={REPS[1]} minus R={REPS[0]})")
        print(f"ours: {ours} (BLUELM_ISA={a.isa}); llama.cpp: {a.llama or '-'}\n")
        hdr = f"{'K':>5} {'N':>5} {'T':>4} | {'ours/B':>8} {'llama/B':>8} {'ratio':>6} | "
        hdr += "top functions (instructions per weight byte and token)"
        print(hdr)
        print("-" * len(hdr))
        for K, N in shapes:
            wbytes = N * K // 32 * Q4_0_BLOCK_BYTES
            for T in tokens:
                o, otop, ocs, _ = per_call(plugin, ours, (K, N, T), env_ours, tmp)
                row = f"{K:>5} {N:>5} {T:>4} | {o / wbytes / T:8.3f} "
                tops = "ours: " + ", ".join(f"{short(s)} {v / wbytes / T:.3f}" for v, s in otop)
                if a.llama:
                    g, gtop, gcs, _ = per_call(plugin, a.llama, (K, N, T), dict(os.environ), tmp)
                    agree = abs(ocs - gcs) <= 1e-3 * max(abs(ocs), abs(gcs), 1e-6)
                    row += f"{g / wbytes / T:8.3f} {o / g:6.2f} | "
                    tops += "; llama.cpp: " + ", ".join(
                        f"{short(s)} {v / wbytes / T:.3f}" for v, s in gtop
                    )
                    tops += "" if agree else f"  (checksums differ: {ocs} vs {gcs})"
                else:
                    row += f"{'-':>8} {'-':>6} | "
                print(row + tops)
        print(
            "\nper weight byte and token (T > 1: divided by T); ratio = ours / llama.cpp "
            "(> 1: we execute more instructions)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
