"""Instructions per weight byte of the NEON K-quant matmuls (Q4_K, Q5_K,
Q6_K), neon_dotprod vs neon_i8mm tables of bluelm-cpp, counted under
qemu-aarch64 (this machine has no ARM timing).

The driver benchmarks/arm/kquant_matmul.cpp (built here for aarch64 with
cmake -DBLUELM_BUILD_BENCH=ON and tests/cpp/toolchain-aarch64.cmake unless
--driver gives one) runs, R times, the Q8_K conversion of T activation rows
and the gemm of an N x K matrix on each table's load-time layout, one thread.
qemu's TCG plugin benchmarks/arm/insn_count.c counts every executed guest
instruction; R = 1 and R = 3 are run, so set-up cancels out:

    per call = (count(R=3) - count(R=1)) / 2
    per weight byte and token = per call / (N * row bytes) / T
    per super-block = per call / (N * K / 256) / T   (one row's 256 weights, one token)

T = 1 is decode (a gemv), T > 1 a prefill chunk. Both tables give the scalar
reference's bits, so their checksums must be equal (printed). Instruction
counts are not time: they compare the work each kernel asks of the core.

    python benchmarks/bench_arm_kquant_insn.py --qemu-include /path/qemu-7.2.0/include/qemu
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from bench_arm_insn import REPS, build_ours, count, plugin_of, short

ROOT = Path(__file__).resolve().parent.parent
BLOCK_BYTES = {"q4_k": 144, "q5_k": 176, "q6_k": 210}
ISAS = ("neon_dotprod", "neon_i8mm")


def per_call(plugin: Path, driver: Path, args: list[str], isa: str, tmp: Path):
    """Instructions of one call (R = 3 minus R = 1), its top function, checksum."""
    env = {**os.environ, "BLUELM_ISA": isa}
    (t1, s1, _), (t3, s3, out3) = [count(plugin, driver, [*args, str(r)], env, tmp) for r in REPS]
    calls = REPS[1] - REPS[0]
    syms = {k: (s3.get(k, 0) - s1.get(k, 0)) / calls for k in set(s1) | set(s3)}
    top = max((v, k) for k, v in syms.items())
    checksum = re.search(r"checksum (\S+)", out3).group(1)
    return (t3 - t1) / calls, top, checksum


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--driver", type=Path, help="built kquant_matmul (default: build it)")
    ap.add_argument("--plugin", type=Path, help="built insn_count plugin")
    ap.add_argument("--qemu-include", type=Path, help="folder with qemu-plugin.h")
    ap.add_argument("--types", default="q4_k,q5_k,q6_k")
    ap.add_argument("--shape", default="2560x2560", help="KxN (K a multiple of 256)")
    ap.add_argument("--tokens", default="1,64", help="T values: 1 = decode, >1 = a prefill chunk")
    ap.add_argument("--build", type=Path, default=ROOT / "build" / "arm-insn")
    a = ap.parse_args()
    if shutil.which("qemu-aarch64") is None:
        sys.exit("qemu-aarch64 is needed (Debian: qemu-user)")
    K, N = (int(v) for v in a.shape.split("x"))
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        plugin = plugin_of(a, tmp)
        driver = a.driver or build_ours(a.build, "kquant_matmul")
        print(
            f"qemu-aarch64 -cpu max, K={K} N={N}, "
            f"instructions per call (R={REPS[1]} minus R={REPS[0]})"
        )
        hdr = (
            f"{'type':>5} {'T':>4} | {'dotprod/B':>9} {'i8mm/B':>8} {'i8mm/dot':>8} | "
            f"{'dotprod/SB':>10} {'i8mm/SB':>8} | checksums | top function (i8mm)"
        )
        print(hdr)
        print("-" * len(hdr))
        for typ in a.types.split(","):
            wbytes = N * K // 256 * BLOCK_BYTES[typ]
            sblocks = N * K // 256
            for T in (int(t) for t in a.tokens.split(",")):
                args = [typ, str(K), str(N), str(T)]
                res = {isa: per_call(plugin, driver, args, isa, tmp) for isa in ISAS}
                (d, _, dcs), (m, mtop, mcs) = res[ISAS[0]], res[ISAS[1]]
                same = "equal" if dcs == mcs else f"DIFFER {dcs} {mcs}"
                print(
                    f"{typ:>5} {T:>4} | {d / wbytes / T:9.3f} {m / wbytes / T:8.3f} "
                    f"{m / d:8.3f} | {d / sblocks / T:10.1f} {m / sblocks / T:8.1f} | "
                    f"{same:>9} | "
                    f"{short(mtop[1])} {mtop[0] / wbytes / T:.3f}/B"
                )
        print(
            "\n/B: per weight byte and token; /SB: per super-block (one row's 256 weights) "
            "and token; i8mm/dot < 1: the i8mm table executes fewer"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
