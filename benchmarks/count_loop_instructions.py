"""Instructions per multiply-add of a kernel's inner loops, read from the
disassembly of a (cross-)compiled object: this machine has no ARM timing, so
the NEON int8 kernels are compared by what their loops execute.

A loop is a backward branch and the instructions from its target to it; for
each innermost loop that holds one of the given mnemonics the script prints
its instruction count, how many of those are the given mnemonics, and how many
touch the stack (spills). Multiply-adds per loop iteration come from the
kernel's tile shape (docs/ARCHITECTURE.md, "Vision"), e.g.:

    cmake -S . -B /tmp/arm -DBLUELM_BUILD_PYTHON=OFF \\
        -DCMAKE_TOOLCHAIN_FILE=$PWD/tests/cpp/toolchain-aarch64.cmake
    cmake --build /tmp/arm -j2
    python benchmarks/count_loop_instructions.py \\
        /tmp/arm/CMakeFiles/bluelm.dir/csrc/kernels/neon_dotprod/i8.cpp.o sdot --macs 768
"""

from __future__ import annotations

import argparse
import re
import subprocess
from dataclasses import dataclass

LINE = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")


@dataclass
class Insn:
    addr: int
    op: str
    args: str


@dataclass
class Loop:
    start: int
    end: int
    body: list[Insn]

    def count(self, ops: set[str]) -> int:
        return sum(1 for i in self.body if i.op in ops)

    def spills(self) -> int:
        return sum(1 for i in self.body if i.op in ("ldr", "str", "ldp", "stp") and "sp" in i.args)


def disassemble(obj: str, objdump: str) -> list[Insn]:
    cmd = [objdump, "-d", "--no-show-raw-insn", obj]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return [Insn(int(m[1], 16), m[2], m[3]) for m in map(LINE.match, out.stdout.splitlines()) if m]


def innermost_loops(insns: list[Insn]) -> list[Loop]:
    """Backward branches to a target inside the same function; a loop that
    contains another one is dropped."""
    index = {ins.addr: k for k, ins in enumerate(insns)}
    loops = []
    for k, ins in enumerate(insns):
        if not ins.op.startswith("b") or ins.op in ("bl", "blr", "br", "bic", "bif", "bit", "bsl"):
            continue
        m = re.match(r"([0-9a-f]+)\b", ins.args)
        if not m or int(m[1], 16) >= ins.addr or int(m[1], 16) not in index:
            continue
        loops.append(Loop(int(m[1], 16), ins.addr, insns[index[int(m[1], 16)] : k + 1]))

    def contains(a: Loop, b: Loop) -> bool:
        return b is not a and a.start <= b.start and b.end <= a.end

    return [a for a in loops if not any(contains(a, b) for b in loops)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("object", help="object file (.o) holding the kernel")
    ap.add_argument("mnemonics", help="comma-separated multiply-add instructions (sdot, usmmla)")
    ap.add_argument("--macs", type=int, default=0, help="multiply-adds per widest-loop iteration")
    ap.add_argument("--objdump", default="aarch64-linux-gnu-objdump")
    args = ap.parse_args()
    ops = set(args.mnemonics.split(","))
    loops = [lp for lp in innermost_loops(disassemble(args.object, args.objdump)) if lp.count(ops)]
    if not loops:
        raise SystemExit(f"no loop with {args.mnemonics} in {args.object}")
    for lp in loops:
        print(
            f"loop {lp.start:#x}-{lp.end:#x}: {len(lp.body)} instructions, "
            f"{lp.count(ops)} {args.mnemonics}, {lp.spills()} stack loads/stores"
        )
    widest = max(loops, key=lambda lp: lp.count(ops))
    if args.macs:
        print(
            f"widest loop: {len(widest.body)} instructions / {args.macs} multiply-adds = "
            f"{len(widest.body) / args.macs:.4f} per MAC"
        )


if __name__ == "__main__":
    main()
