"""A longer fuzzing campaign on the image path (no atheris: seeded random inputs).

Each execution is one of: ``plan_grid`` on a random size (1..100000 per side,
log-uniform) with a random method and limits; ``load_image`` (plus patch
cutting when it loads) on a mutated seed image; or a PNG whose header claims a
random size. A result the properties forbid, or any exception other than the
project's, is a finding: its input is saved under build/fuzz/artifacts-vision/.

    python tests/fuzz/vision/campaign.py 200000 [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vision_fuzz as vf  # noqa: E402

from bluelm_cpp.vision import METHODS  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def one(rng: random.Random, seeds: list[bytes]) -> tuple[str, object]:
    kind = rng.random()
    if kind < 0.5:
        args = (
            vf.random_size(rng),
            vf.random_size(rng),
            rng.choice(METHODS),
            rng.choice([None, 1, 2, 3, 4, 6]),
            rng.randint(1, 16),
            rng.choice([0.0, 0.1, 0.5, 0.99]),
        )
        vf.check_plan_grid(*args)
        return "plan_grid", args
    if kind < 0.8:
        data = vf.mutate(rng.choice(seeds), rng)
        vf.check_load(data)
        return "load", data
    w, h = vf.random_size(rng), vf.random_size(rng)
    vf.check_forged(w, h)
    return "forged", (w, h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("count", type=int, nargs="?", default=200000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    # Pillow warns on every corrupt header it survives; those inputs are the point.
    warnings.simplefilter("ignore")
    out = ROOT / "build" / "fuzz" / "artifacts-vision"
    rng = random.Random(args.seed)
    seeds = vf.seed_inputs()
    counts = {"plan_grid": 0, "load": 0, "forged": 0}
    findings = 0
    start = time.perf_counter()
    for i in range(args.count):
        state = rng.getstate()
        try:
            kind, _ = one(rng, seeds)
            counts[kind] += 1
        except Exception as e:  # noqa: BLE001 - every escape is a finding
            findings += 1
            out.mkdir(parents=True, exist_ok=True)
            # Replaying: random.Random().setstate(state) then one(rng, seeds).
            (out / f"finding-{args.seed}-{i}.txt").write_text(
                f"seed={args.seed} index={i}\nstate={state!r}\n" + traceback.format_exc()
            )
            print(f"finding at {i}: {type(e).__name__}: {e}", file=sys.stderr)
        if (i + 1) % 20000 == 0:
            print(
                f"{i + 1} execs, {time.perf_counter() - start:.0f} s, {findings} findings",
                flush=True,
            )
    wall = time.perf_counter() - start
    print(
        f"campaign: {args.count} execs ({counts}) in {wall:.0f} s "
        f"({args.count / wall:.0f}/s), findings: {findings}"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
