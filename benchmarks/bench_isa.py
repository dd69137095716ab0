#!/usr/bin/env python3
"""Prefill and decode of GGUF files under each kernel table (``BLUELM_ISA``), same run.

For a type whose SIMD kernel is new (Q2_K, Q3_K, IQ4_XS, IQ4_NL on AVX2, issue 12), the
end-to-end gain over the scalar reference: each (file, table) runs in its own child
process (the table is chosen at import), the children alternate table by table for
``--rounds`` rounds, each child timing ``pp<N>`` (``Model.eval_logits`` of N random ids)
and ``tg<N>`` (``Model.generate_tokens``, greedy, N tokens). Medians over all rounds, and
each table's ratio to the first one. Single thread by default (``--threads``).

    python benchmarks/bench_isa.py --model smollm2-Q2_K.gguf --model smollm2-IQ4_NL.gguf \\
        [--isa scalar,avx2] [--pp 64] [--tg 32] [--rounds 5]

The kernel-level figures (GF/s per type, scalar against every table) come from
``build/kernel-tests/native/tests/cpp/test_kernels --bench Q2_K,Q3_K,IQ4_XS,IQ4_NL``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter


def _child(model: str, threads: int, pp: int, tg: int) -> dict[str, object]:
    import bluelm_cpp
    from bluelm_cpp import _core

    m = bluelm_cpp.Model(model, n_ctx=pp + tg + 8, n_threads=threads)
    rng = random.Random(1234)
    ids = [rng.randrange(m.n_vocab) for _ in range(pp)]
    no_eog = {int(i): -1e9 for i in m.tokenizer.eog_ids}
    m.eval_logits(ids[:8])  # warm up (pages in the weights)
    t0 = time.perf_counter()
    m.eval_logits(ids)
    pp_s = time.perf_counter() - t0
    m.reset()
    t0 = time.perf_counter()
    n = sum(1 for _ in m.generate_tokens(ids[:1], tg, temperature=0, logit_bias=no_eog))
    tg_s = time.perf_counter() - t0
    assert n == tg, n
    return {"isa": _core.isa(), "pp_tps": pp / pp_s, "tg_tps": tg / tg_s}


def _types(model: str) -> str:
    import gguf

    c = Counter(t.tensor_type.name for t in gguf.GGUFReader(model).tensors if len(t.shape) > 1)
    return ", ".join(f"{k} x{v}" for k, v in c.most_common())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a GGUF path (repeatable)")
    ap.add_argument(
        "--isa", default="scalar,avx2", help="comma-separated tables; ratios against the first"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pp", type=int, default=64, help="prompt tokens")
    ap.add_argument("--tg", type=int, default=32, help="tokens generated")
    ap.add_argument(
        "--rounds", type=int, default=5, help="child runs per (file, table), alternating"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.model[0], a.threads, a.pp, a.tg)))
        return 0
    isas = a.isa.split(",")
    for model in a.model:
        name = os.path.basename(model)
        print(f"{name} ({_types(model)}), {a.threads} thread(s), pp{a.pp} / tg{a.tg}")
        got: dict[str, list[dict[str, float]]] = {i: [] for i in isas}
        for _ in range(a.rounds):
            for isa in isas:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--model",
                    model,
                    "--threads",
                    str(a.threads),
                    "--pp",
                    str(a.pp),
                    "--tg",
                    str(a.tg),
                ]
                env = dict(os.environ, BLUELM_ISA=isa)
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                res = json.loads(r.stdout.strip().splitlines()[-1])
                assert res["isa"] == isa, res
                got[isa].append(res)
        base: dict[str, float] = {}
        for isa in isas:
            med = {k: statistics.median(r[k] for r in got[isa]) for k in ("pp_tps", "tg_tps")}
            base = base or med
            print(
                f"  {isa:<12} pp {med['pp_tps']:8.1f} t/s (x{med['pp_tps'] / base['pp_tps']:.2f})"
                f"   tg {med['tg_tps']:7.1f} t/s (x{med['tg_tps'] / base['tg_tps']:.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
