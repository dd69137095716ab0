"""Records what llama.cpp makes of the llama-quantize mixes (tests/data/llamacpp_mixes.json).

For each mix (Q4_K_M, Q5_K_M, Q6_K, Q5_0, Q5_1, Q3_K_M, Q2_K, IQ4_NL, IQ4_XS):

* the trained tiny models (tests/data/trained_llama, trained_qwen2,
  trained_llama_k): this project's converter writes an F32 GGUF (llama.cpp's
  converter gives the same floats: fp16 weights widened), ``llama-quantize``
  quantises it; recorded are the type of every tensor, the SHA-256 of all
  tensor data (tensors in name order), and the 16 tokens llama.cpp (llama-cpp-python,
  F32 KV cache) greedy-decodes from the model's ``greedy_prompt``;
* SmolLM2-135M-Instruct Q4_1 (bundled): ``llama-quantize --allow-requantize``;
  types and data hash.

    python tests/data/record_llamacpp_mixes.py [--quantize /tmp/llbuild/bin/llama-quantize]

Needs llama-cpp-python, a llama-quantize binary of the same llama.cpp
(llama-cpp-python 0.3.36's sdist) and bluelm_cpp installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np

DATA = Path(__file__).resolve().parent
sys.path.insert(0, str(DATA.parent))
from llamacpp_greedy import greedy_llamacpp  # noqa: E402

OUT = DATA / "llamacpp_mixes.json"
MIXES = ["q4_k_m", "q5_k_m", "q6_k", "q5_0", "q5_1", "q3_k_m", "q2_k", "iq4_nl", "iq4_xs"]
MODELS = ["trained_llama", "trained_qwen2", "trained_llama_k"]
GREEDY = 16


def file_record(path: Path) -> dict[str, object]:
    """Tensor types and the SHA-256 of the tensor data, tensors in name order."""
    r = gguf.GGUFReader(path)
    h = hashlib.sha256()
    for t in sorted(r.tensors, key=lambda t: t.name):  # llama-quantize orders by layer
        h.update(np.ascontiguousarray(t.data).view(np.uint8))  # no copy
    return {"types": {t.name: t.tensor_type.name for t in r.tensors}, "sha256": h.hexdigest()}


def quantize(exe: str, src: Path, dst: Path, mix: str, requant: bool = False) -> None:
    cmd = [exe, *(["--allow-requantize"] if requant else []), str(src), str(dst), mix.upper(), "2"]
    subprocess.run(cmd, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quantize", default="/tmp/llbuild/bin/llama-quantize")
    ns = ap.parse_args()
    import llama_cpp

    from bluelm_cpp.convert import convert_checkpoint
    from bluelm_cpp.default_model import default_model_path

    rec: dict[str, object] = {
        "llama_cpp_python": llama_cpp.__version__,
        "greedy_tokens": GREEDY,
        "models": {},
    }
    models: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            f32 = Path(tmp) / f"{name}.f32.gguf"
            convert_checkpoint(DATA / name, f32, "f32", progress=False)
            prompt = np.load(DATA / name / "reference.npz")["greedy_prompt"].tolist()
            per_mix = {}
            for mix in MIXES:
                q = Path(tmp) / f"{name}.{mix}.gguf"
                quantize(ns.quantize, f32, q, mix)
                per_mix[mix] = {**file_record(q), "greedy": greedy_llamacpp(q, prompt, GREEDY)}
                print(name, mix, sorted(set(per_mix[mix]["types"].values())))
            models[name] = per_mix
        smol = {}
        for mix in MIXES:
            q = Path(tmp) / f"smollm2.{mix}.gguf"
            quantize(ns.quantize, Path(default_model_path()), q, mix, requant=True)
            smol[mix] = file_record(q)
            q.unlink()
            print("smollm2", mix)
        models["smollm2_q4_1"] = smol
    rec["models"] = models
    OUT.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
