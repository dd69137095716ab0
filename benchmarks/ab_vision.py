#!/usr/bin/env python3
"""Old vs new build of the vision encoder, interleaved one encode at a time.

Each build runs in its own long-lived worker (its own Python, e.g. a venv's
``bin/python`` with that build installed), loaded once; the two take turns
(order alternated pair by pair), each encoding one batch of patches. The VM
changes speed within seconds, so only the ratio within a pair means much:
printed are the median wall and CPU seconds per patch of each build and the
median of the per-pair ratios new / old.

Usage (run from outside the source tree; FILE as bench_vision.py writes it):
    python benchmarks/ab_vision.py OLD_PYTHON NEW_PYTHON FILE [--pairs 12]
                                   [--threads 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from ab_workers import PairedWorkers

WORKER = r"""
import os, sys, time
import numpy as np
from bluelm_cpp import _core
vm = _core.VisionModel(sys.argv[1])
threads, batch = int(sys.argv[2]), int(sys.argv[3])
x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, 384, 384)).astype(np.float32)
vm.encode_features(x, threads, batch_size=batch)  # warm-up
print("ready", flush=True)
for _ in sys.stdin:
    c0, t0 = os.times(), time.perf_counter()
    vm.encode_features(x, threads, batch_size=batch)
    t1, c1 = time.perf_counter(), os.times()
    cpu = c1.user + c1.system - c0.user - c0.system
    print((t1 - t0) / batch, cpu / batch, flush=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("old_python")
    ap.add_argument("new_python")
    ap.add_argument("file")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    wall: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    args = [a.file, str(a.threads), str(a.batch)]
    with PairedWorkers(WORKER, args, a.old_python, a.new_python) as workers:
        for i, line in workers.pairs(a.pairs):
            for name, text in line.items():
                w, c = (float(v) for v in text.split())
                wall[name].append(w)
                cpu[name].append(c)
            print(
                f"pair {i}: wall old {wall['old'][-1]:.3f} new {wall['new'][-1]:.3f} s/patch, "
                f"CPU old {cpu['old'][-1]:.3f} new {cpu['new'][-1]:.3f}",
                flush=True,
            )
    for label, d in (("wall", wall), ("CPU", cpu)):
        ratio = statistics.median(n / o for n, o in zip(d["new"], d["old"]))
        old, new = statistics.median(d["old"]), statistics.median(d["new"])
        print(
            f"{label}: old {old:.3f}, new {new:.3f} s/patch (medians of {a.pairs}); "
            f"median ratio new/old {ratio:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
