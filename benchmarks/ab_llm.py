#!/usr/bin/env python3
"""Old vs new build of the LLM path, interleaved run by run on one GGUF file.

Each build runs in its own long-lived worker (its own Python, e.g. a venv's
``bin/python`` with that build installed, or a wrapper that sets PYTHONPATH),
loaded once; the two take turns, the order alternated pair by pair. The VM
changes speed within seconds, so only the ratio within a pair means much.

- ``pp``: one run = ``Model.eval_logits`` over N random token ids into an empty
  context (llama-bench's pp N); printed: each build's median t/s and the median
  of the per-pair ratios new / old.
- ``decode``: one run = 128 tokens through ``Model.generate_tokens`` (greedy,
  end-of-generation biased away, as bench_llm.py) in 16 blocks of 8, with a
  read probe (``_core.ReadProbe``, best of 2 sweeps of 256 MiB) before each
  block and after the last, each block set against the higher of the two
  probes beside it (bench_llm.py's blocks measure); printed: each build's median
  % of that roofline over all blocks and the per-pair differences new - old of
  the run medians. Needs the weight bytes read per token (bench_llm.py prints
  them as "weights read per token"). ``--depth N`` puts N random prompt tokens
  before the 128 (llama-bench's ``-d N``: decode where attention over a long
  cache counts); the median per-pair t/s ratio is printed too.

Usage (from outside the source tree):
    python benchmarks/ab_llm.py pp OLD_PYTHON NEW_PYTHON FILE [--tokens 512] [--pairs 10]
    python benchmarks/ab_llm.py decode OLD_PYTHON NEW_PYTHON FILE --weight-bytes B [--depth 0]
        [--pairs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from ab_workers import PairedWorkers

WORKER = r"""
import json, random, sys, time
import bluelm_cpp
from bluelm_cpp import _core
mode, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
arg, depth = float(sys.argv[4]), int(sys.argv[5])
m = bluelm_cpp.Model(path, n_ctx=4096, n_batch=512, n_threads=threads, kv_type="f16")
if mode == "pp":
    rng = random.Random(1234)
    ids = [rng.randrange(m.n_vocab) for _ in range(int(arg))]
    def run():
        t0 = time.perf_counter()
        m.eval_logits(ids)
        return {"tps": len(ids) / (time.perf_counter() - t0)}
else:
    no_eog = {int(i): -1e9 for i in m.tokenizer.eog_ids}
    probe = _core.ReadProbe(256 << 20, threads)
    prompt = [random.Random(1234).randrange(m.n_vocab) for _ in range(depth)] + [1000]
    def run():
        m.reset()
        it = m.generate_tokens(prompt, 129, temperature=0, logit_bias=no_eog)
        next(it)
        probes, secs = [probe.best_of(2)], []
        for _ in range(16):
            t0 = time.perf_counter()
            for _ in range(8):
                next(it)
            secs.append(time.perf_counter() - t0)
            probes.append(probe.best_of(2))
        it.close()
        pct = [100 * 8 * arg / s / max(probes[i], probes[i + 1]) for i, s in enumerate(secs)]
        return {"pct": pct, "probes": probes, "tps": 128 / sum(secs)}
run()
print("ready", flush=True)
for _ in sys.stdin:
    print(json.dumps(run()), flush=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=("pp", "decode"))
    ap.add_argument("old_python")
    ap.add_argument("new_python")
    ap.add_argument("file")
    ap.add_argument("--tokens", type=int, default=512, help="pp: prompt tokens")
    ap.add_argument("--weight-bytes", type=float, default=0.0, help="decode: bytes read per token")
    ap.add_argument("--depth", type=int, default=0, help="decode: prompt tokens before the 128")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.mode == "decode" and a.weight_bytes <= 0:
        ap.error("decode needs --weight-bytes (bench_llm.py prints 'weights read per token')")
    arg = a.tokens if a.mode == "pp" else a.weight_bytes
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    args = [a.mode, a.file, str(a.threads), str(arg), str(a.depth)]
    with PairedWorkers(WORKER, args, a.old_python, a.new_python) as workers:
        for i, line in workers.pairs(a.pairs):
            for name, text in line.items():
                runs[name].append(json.loads(text))
            o, n = runs["old"][-1], runs["new"][-1]
            if a.mode == "pp":
                print(f"pair {i}: old {o['tps']:.1f} new {n['tps']:.1f} t/s", flush=True)
            else:
                probes = o["probes"] + n["probes"]
                om, nm = statistics.median(o["pct"]), statistics.median(n["pct"])
                print(
                    f"pair {i}: old {om:.1f}% new {nm:.1f}% of the probes "
                    f"({min(probes) / 1e9:.1f}-{max(probes) / 1e9:.1f} GB/s), "
                    f"old {o['tps']:.1f} new {n['tps']:.1f} t/s",
                    flush=True,
                )
    if a.mode == "pp":
        old = [r["tps"] for r in runs["old"]]
        new = [r["tps"] for r in runs["new"]]
        ratio = statistics.median(b / x for x, b in zip(old, new))
        faster = sum(b > x for x, b in zip(old, new))
        om, nm = statistics.median(old), statistics.median(new)
        print(
            f"pp{a.tokens}: old {om:.1f}, new {nm:.1f} t/s; "
            f"median ratio new/old {ratio:.3f} over {a.pairs} pairs, {faster} faster"
        )
    else:
        med = {k: [statistics.median(r["pct"]) for r in v] for k, v in runs.items()}
        every = {k: statistics.median([x for r in v for x in r["pct"]]) for k, v in runs.items()}
        diffs = [round(b - x, 1) for x, b in zip(med["old"], med["new"])]
        ratios = [n["tps"] / o["tps"] for o, n in zip(runs["old"], runs["new"])]
        faster = sum(r > 1 for r in ratios)
        print(
            f"decode at depth {a.depth}, all blocks: old {every['old']:.1f}%, "
            f"new {every['new']:.1f}% of the probes"
        )
        print(f"per-pair differences new - old of the run medians (points): {diffs}")
        print(
            f"median t/s ratio new/old {statistics.median(ratios):.3f} "
            f"over {a.pairs} pairs, {faster} faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
