#!/usr/bin/env python3
"""Hand check of issue 12's table: the files llama-quantize makes from SmolLM2 load,
generate and keep the fidelity bars in bluelm-cpp.

1. An F32 source: the bundled SmolLM2-135M-Instruct Q4_1, dequantised by gguf-py.
2. For each mix (Q4_K_M, Q5_K_M, Q6_K, Q3_K_M, Q2_K, IQ4_XS, IQ4_NL, Q5_0, Q5_1):
   ``llama-quantize F32 OUT MIX`` (llama.cpp's own tool, as a user makes a file).
3. Each file through ``bluelm_cpp.Model``: its tensor types, 16 greedy tokens of
   a prompt (and, with llama-cpp-python installed, whether llama.cpp's 16 greedy
   tokens on the same file are the same), and the logits over a 96-token text
   against an F32 copy of that file dequantised by gguf-py: mean KL divergence
   and top-1 agreement, with the issue's bars (KL <= 0.012, top-1 >= 88%).
4. Whether bluelm-cpp's own requantiser (requantize_gguf, the C++ quantiser with
   llama-quantize's policy) writes the same bytes from the same source.

    cd /tmp && python /path/to/benchmarks/check_llamacpp_mixes.py \
        [--llama-quantize /tmp/llbuild/bin/llama-quantize] [--work /tmp/bluelm-mixes]

Exit status 1 when a file misses a bar.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import gguf
import numpy as np

import bluelm_cpp
from bluelm_cpp.convert.requantize import requantize_gguf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_kquant_fidelity import KL_BAR, MIXES, N_TOKENS, TEXT, TOP1_BAR  # noqa: E402  the suite's text and bars
from test_kquant_model import mean_kl  # noqa: E402

PROMPT = "The capital of France is"


def logits(path: Path) -> np.ndarray:
    with bluelm_cpp.Model(path, n_ctx=128, n_batch=N_TOKENS, n_threads=2) as m:
        ids = m.tokenize(TEXT)[:N_TOKENS]
        return np.asarray(m.eval_logits(ids, all_positions=True))


def greedy_ours(path: Path) -> tuple[list[int], list[float], str]:
    """16 argmax steps (no stop at end-of-text, as llama.cpp's loop below), the
    top-1 minus top-2 logit of each step, and the text."""
    with bluelm_cpp.Model(path, n_ctx=128, n_threads=2) as m:
        ctx = m._require_open()  # the loop llama.cpp's below runs: prompt, then 1 token/step
        ctx.eval(m.tokenize(PROMPT), False)
        toks: list[int] = []
        margins: list[float] = []
        for _ in range(16):
            lg = np.asarray(ctx.logits()).reshape(-1)
            top2 = np.sort(lg)[-2:]
            margins.append(float(top2[1] - top2[0]))
            toks.append(int(np.argmax(lg)))
            ctx.eval([toks[-1]], False)
        return toks, margins, m.detokenize(toks)


def greedy_llamacpp(path: Path, prompt_ids: list[int]) -> list[int] | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=128, n_threads=2, logits_all=True, verbose=False
    )
    out: list[int] = []
    llm.eval(prompt_ids)
    for _ in range(16):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for t in sorted(gguf.GGUFReader(path).tensors, key=lambda t: t.name):
        h.update(np.ascontiguousarray(t.data).view(np.uint8))  # no copy
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-quantize", default="/tmp/llbuild/bin/llama-quantize")
    ap.add_argument("--work", default="/tmp/bluelm-mixes")
    ns = ap.parse_args()
    work = Path(ns.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "smollm2-f32.gguf"
    if not src.exists():
        requantize_gguf(bluelm_cpp.default_model_path(), src, "f32")
    with bluelm_cpp.Model(src, n_ctx=64) as m:
        prompt_ids = m.tokenize(PROMPT)
    print(f"source: {src} (SmolLM2 Q4_1 dequantised by gguf-py); isa {bluelm_cpp._core.isa()}")
    ok = True
    rows = []
    for mix in MIXES:
        path = work / f"smollm2-{mix}.gguf"
        subprocess.run(
            [ns.llama_quantize, str(src), str(path), mix.upper(), "2"],
            check=True,
            capture_output=True,
        )
        types = Counter(t.tensor_type.name for t in gguf.GGUFReader(path).tensors)
        t0 = time.perf_counter()
        toks, margins, text = greedy_ours(path)
        gen_s = time.perf_counter() - t0
        theirs = greedy_llamacpp(path, prompt_ids)
        ref = work / f"smollm2-{mix}.f32copy.gguf"
        requantize_gguf(path, ref, "f32", force=True)
        q, f = logits(path), logits(ref)
        ref.unlink()
        kl, top1 = mean_kl(f, q), float((q.argmax(1) == f.argmax(1)).mean())
        ours_file = work / f"smollm2-{mix}.ours.gguf"
        requantize_gguf(src, ours_file, mix, force=True)
        same = digest(ours_file) == digest(path)
        ours_file.unlink()
        good = kl <= KL_BAR and top1 >= TOP1_BAR
        ok &= good
        rows.append((mix, kl, top1, good, theirs, toks, same, gen_s))
        print(f"\n{mix.upper()}: {dict(types)}")
        print(f"  greedy: {text!r} ({gen_s:.1f} s)")
        if theirs is not None:
            diff = next((i for i, (a, b) in enumerate(zip(toks, theirs)) if a != b), None)
            print(
                "  llama.cpp's 16 greedy tokens on the same file: "
                + (
                    "identical"
                    if diff is None
                    else f"first differ at step {diff} (our top-2 margin there {margins[diff]:.3f})"
                )
            )
        print(f"  KL {kl:.4f} top-1 {top1:.3f} -> {'ok' if good else 'MISSES the bars'}")
        print(f"  bluelm-cpp's requantiser writes the same tensor data: {same}")
    print("\n| mix | mean KL | top-1 | bars | llama.cpp greedy equal | our quantiser same bytes |")
    print("|---|---|---|---|---|---|")
    for mix, kl, top1, good, theirs, toks, same, _ in rows:
        eq = "-" if theirs is None else ("yes" if theirs == toks else "no (see above)")
        print(
            f"| {mix.upper()} | {kl:.4f} | {top1:.3f} | {'met' if good else 'NOT met'} | {eq} | "
            f"{'yes' if same else 'no'} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
