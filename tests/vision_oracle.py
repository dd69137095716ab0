"""A numpy SigLIP + projector that reads a vision GGUF (docs/vision_format.md).

Used by the tests as an independent reader of the converter's files: it
follows the contract text (names, shapes, keys) and is checked against the
PyTorch references recorded in tests/data/. Slow and simple on purpose.
"""

from __future__ import annotations

import math
from typing import Any

import gguf
import numpy as np


def read_gguf(path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
    """(keys, tensors as float32 in PyTorch order, tensor type names)."""
    r = gguf.GGUFReader(str(path))
    keys: dict[str, Any] = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        keys[f.name] = f.contents()
    tensors: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = np.asarray(data, np.float32).reshape(shape)
        types[t.name] = t.tensor_type.name
    return keys, tensors, types


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / math.sqrt(2)))


def encode(keys: dict[str, Any], t: dict[str, np.ndarray], pixels: np.ndarray) -> np.ndarray:
    """``[B, 3, S, S]`` -> encoder output ``[B, T, C]`` (post-LN when the file has it)."""
    p = int(keys["clip.vision.patch_size"])
    s = int(keys["clip.vision.image_size"])
    heads = int(keys["clip.vision.attention.head_count"])
    eps = float(keys["clip.vision.attention.layer_norm_epsilon"])
    n_layer = int(keys["clip.vision.block_count"])
    b = pixels.shape[0]
    g = s // p
    cols = pixels.reshape(b, 3, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, g * g, -1)
    w = t["v.patch_embd.weight"].reshape(t["v.patch_embd.weight"].shape[0], -1)
    x = cols.astype(np.float64) @ w.T + t["v.patch_embd.bias"] + t["v.position_embd.weight"]
    c = x.shape[-1]
    d = c // heads
    for i in range(n_layer):

        def lin(h: np.ndarray, name: str, i: int = i) -> np.ndarray:
            return h @ t[f"v.blk.{i}.{name}.weight"].T + t[f"v.blk.{i}.{name}.bias"]

        h = _ln(x, t[f"v.blk.{i}.ln1.weight"], t[f"v.blk.{i}.ln1.bias"], eps)
        q, k, v = (
            lin(h, n).reshape(b, -1, heads, d).transpose(0, 2, 1, 3)
            for n in ("attn_q", "attn_k", "attn_v")
        )
        a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = (a @ v).transpose(0, 2, 1, 3).reshape(b, -1, c)
        x = x + lin(o, "attn_out")
        h = _ln(x, t[f"v.blk.{i}.ln2.weight"], t[f"v.blk.{i}.ln2.bias"], eps)
        x = x + lin(_gelu_tanh(lin(h, "ffn_up")), "ffn_down")
    if "v.post_ln.weight" in t:
        x = _ln(x, t["v.post_ln.weight"], t["v.post_ln.bias"], eps)
    return x


def project(keys: dict[str, Any], t: dict[str, np.ndarray], feats: np.ndarray) -> np.ndarray:
    """Encoder output -> image embeddings per the file's projector type."""
    kind = keys["clip.projector_type"]
    x = feats.astype(np.float64)
    if kind == "none":
        return x
    if kind == "mlp_downsample":
        f = int(keys["bluelm.vision.downsample"])
        b, n, c = x.shape
        s = int(round(n**0.5))
        pad = -(-s // f) * f
        grid = np.zeros((b, pad, pad, c))
        grid[:, :s, :s] = x.reshape(b, s, s, c)
        m = pad // f
        x = grid.reshape(b, m, f, m, f, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, m * m, f * f * c)
        x = _ln(
            x,
            t["mm.input_norm.weight"],
            t["mm.input_norm.bias"],
            float(keys["bluelm.vision.projector_ln_eps"]),
        )
    elif kind != "mlp":
        raise ValueError(kind)
    x = x @ t["mm.0.weight"].T + t["mm.0.bias"]
    x = _gelu_erf(x)
    return x @ t["mm.2.weight"].T + t["mm.2.bias"]
