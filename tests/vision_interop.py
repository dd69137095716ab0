"""What llama.cpp's mtmd reads of an mmproj file, for data/record_mtmd_vision.py and
test_vision_interop.py: the keys its clip loader consults and a hash of every tensor,
so a test can tell that the converter still writes the file llama.cpp was recorded on.

Example:
    >>> consulted_keys("mmproj.gguf")["clip.vision.feature_layer"]  # doctest: +SKIP
    ['ARRAY', 'INT32', [2]]
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import gguf
import numpy as np

# Where the recording scripts look for llama.cpp (the llama-cpp-python 0.3.36 sdist).
LLAMA_CPP_SRC = Path("/tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp")

# Every key llama.cpp's clip loader reads for a vision file with projector
# 'mlp' (llama-cpp-python 0.3.36 sdist, tools/mtmd/clip.cpp: the loader's
# constructor and load_hparams).
LLAMA_CPP_KEYS = (
    "general.architecture",
    "clip.has_vision_encoder",
    "clip.has_audio_encoder",
    "clip.projector_type",
    "clip.vision.projector_type",
    "clip.vision.embedding_length",
    "clip.vision.attention.head_count",
    "clip.vision.attention.head_count_kv",
    "clip.vision.attention.head_dim",
    "clip.vision.feed_forward_length",
    "clip.vision.block_count",
    "clip.vision.projection_dim",
    "clip.vision.attention.layer_norm_epsilon",
    "clip.vision.image_size",
    "clip.vision.patch_size",
    "clip.vision.image_grid_pinpoints",
    "clip.use_gelu",
    "clip.use_silu",
    "clip.vision.mm_patch_merge_type",
    "clip.vision.image_mean",
    "clip.vision.image_std",
    "clip.vision.feature_layer",
    "clip.minicpmv_version",
)


def consulted_keys(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{key: [GGUF type names..., value]}`` for LLAMA_CPP_KEYS (None when absent), JSON-ready."""
    fields = gguf.GGUFReader(os.fspath(path)).fields
    out: dict[str, Any] = {}
    for k in LLAMA_CPP_KEYS:
        if k not in fields:
            out[k] = None
            continue
        v = fields[k].contents()
        if isinstance(v, float) or (isinstance(v, list) and v and isinstance(v[0], float)):
            v = np.asarray(v, np.float32).tolist()  # JSON keeps them exactly
        out[k] = [*(t.name for t in fields[k].types), v]
    return out


def tensor_hashes(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{name: "TYPE [ne0, ne1, ...] sha256"}`` of every tensor's bytes."""
    out = {}
    for t in gguf.GGUFReader(os.fspath(path)).tensors:
        h = hashlib.sha256(np.ascontiguousarray(t.data).tobytes()).hexdigest()
        out[t.name] = f"{t.tensor_type.name} {[int(x) for x in t.shape]} {h}"
    return out


def cos(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened, in float64."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
