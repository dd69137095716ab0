"""The long-prompt fidelity test's shared parts (tests/test_long_prompt_fidelity.py and
tests/data/record_long_prompt_fidelity.py): the F32 copy of a GGUF whose weights gguf-py
dequantises, the prompt, and the two figures (mean KL divergence and top-1 agreement of
a run's logits against the F32 copy's)."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np

DATA_DIR = Path(__file__).resolve().parent
RECORD = DATA_DIR / "llamacpp_long_prompt_fidelity.json"
N_PROMPT = 1024  # prompt tokens (BOS included): the issue asks for at least 1024


def write_f32_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Writes ``src`` with every tensor dequantised to F32 by gguf-py (same keys, same
    tensor names and order); ``general.file_type`` becomes 0 (all F32)."""
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    tmp = Path(str(dst) + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        if field.name == gguf.Keys.General.FILE_TYPE:
            writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))  # numpy order
        data = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
        writer.add_tensor(t.name, data.reshape(shape), raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)


def prompt_text() -> str:
    """The prompt's source: the repository's English corpus (Python's reference text)."""
    return (DATA_DIR / "corpus.txt").read_text(encoding="utf-8")


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def figures(logits: np.ndarray, ref: np.ndarray, rows: int = 128) -> dict[str, float]:
    """Mean over positions of KL(ref || logits) of the softmaxes, top-1 agreement
    (the argmax of both equal), and the largest per-position KL; in slices of
    ``rows`` positions so the float64 copies stay small."""
    assert logits.shape == ref.shape, (logits.shape, ref.shape)
    kl = np.empty(len(ref))
    same = np.empty(len(ref), bool)
    for i in range(0, len(ref), rows):
        lp, lq = log_softmax(ref[i : i + rows]), log_softmax(logits[i : i + rows])
        kl[i : i + rows] = (np.exp(lp) * (lp - lq)).sum(axis=-1)
        same[i : i + rows] = ref[i : i + rows].argmax(-1) == logits[i : i + rows].argmax(-1)
    return {"mean_kl": float(kl.mean()), "top1": float(same.mean()), "max_kl": float(kl.max())}
