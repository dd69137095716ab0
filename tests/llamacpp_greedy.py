"""llama.cpp's greedy tokens, as the converter tests and their recorder ask for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def greedy_llamacpp(path: Path, prompt: list[int], n: int) -> list[int]:
    """The n tokens llama-cpp-python greedy-decodes from ``prompt`` (F32 KV cache,
    as ours in these tests; 2 threads, n_ctx 256)."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=256,
        n_threads=2,
        logits_all=True,
        verbose=False,
        type_k=0,  # GGML_TYPE_F32
        type_v=0,
    )
    out: list[int] = []
    llm.eval(prompt)
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out
