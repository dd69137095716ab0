"""Writes a vision tower (SigLIP + projector) to GGUF per docs/vision_format.md.

Used by the encoder tests (from a transformers ``SiglipVisionModel``'s state
dict) and by benchmarks/bench_vision.py (random numpy weights), until the
converter of the ``vision`` branch is available everywhere.

Example:
    >>> cfg = dict(image_size=42, patch_size=6, hidden=64, ff=120, layers=2, heads=4,
    ...            proj_dim=48, projector="mlp_downsample")
    >>> write_vision_gguf("v.gguf", cfg, random_tensors(cfg), wtype="q8_0")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType

# BlueLM-V's encoder: SigLIP so400m at 384x384 with the 2x2 downsampling MLP projector
# (tests/test_vision_wide.py at one layer, benchmarks/bench_vision.py).
SO400M = dict(
    image_size=384,
    patch_size=14,
    hidden=1152,
    ff=4304,
    layers=27,
    heads=16,
    proj_dim=2048,
    projector="mlp_downsample",
)


# Contract name -> transformers SigLIP name (without ``vision_model.``).
SIGLIP_EMBEDDINGS = {
    "v.patch_embd.weight": "embeddings.patch_embedding.weight",
    "v.patch_embd.bias": "embeddings.patch_embedding.bias",
    "v.position_embd.weight": "embeddings.position_embedding.weight",
}
# Per layer: ``v.blk.N.<key>.{weight,bias}`` <- ``encoder.layers.N.<value>.{weight,bias}``.
SIGLIP_BLOCK = {
    "ln1": "layer_norm1",
    "ln2": "layer_norm2",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_out": "self_attn.out_proj",
    "ffn_up": "mlp.fc1",
    "ffn_down": "mlp.fc2",
}


def _matrix_type(name: str, shape: tuple[int, ...], wtype: str) -> Q:
    k = int(np.prod(shape[1:]))
    if wtype == "f32":
        return Q.F32
    if wtype == "f16" or k % 32 != 0:  # rows llama.cpp cannot hold as Q8_0 stay F16
        return Q.F16
    return Q.Q8_0


def _is_matrix(name: str) -> bool:
    return name.endswith(".weight") and any(
        p in name
        for p in (
            "patch_embd",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_out",
            "ffn_up",
            "ffn_down",
            "mm.0",
            "mm.2",
        )
    )


def tensor_names(cfg: Mapping[str, Any]) -> list[str]:
    """All tensor names of a config, in writing order."""
    names = ["v.patch_embd.weight", "v.patch_embd.bias", "v.position_embd.weight"]
    for i in range(cfg["layers"]):
        p = f"v.blk.{i}."
        for s in ("ln1", "attn_q", "attn_k", "attn_v", "attn_out", "ln2", "ffn_up", "ffn_down"):
            names += [p + s + ".weight", p + s + ".bias"]
    if cfg.get("post_ln", True):
        names += ["v.post_ln.weight", "v.post_ln.bias"]
    if cfg["projector"] == "mlp_downsample":
        names += ["mm.input_norm.weight", "mm.input_norm.bias"]
    if cfg["projector"] != "none":
        names += ["mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"]
    return names


def tensor_shape(cfg: Mapping[str, Any], name: str) -> tuple[int, ...]:
    """PyTorch-order shape of a tensor."""
    C, F, D, P = cfg["hidden"], cfg["ff"], cfg["proj_dim"], cfg["patch_size"]
    n = (cfg["image_size"] // P) ** 2
    inp = 4 * C if cfg["projector"] == "mlp_downsample" else C
    if name == "v.patch_embd.weight":
        return (C, 3, P, P)
    if name == "v.position_embd.weight":
        return (n, C)
    if name.startswith("mm.input_norm"):
        return (inp,)
    if name.startswith("mm.0"):
        return (D, inp) if name.endswith("weight") else (D,)
    if name.startswith("mm.2"):
        return (D, D) if name.endswith("weight") else (D,)
    if ".ffn_up." in name:
        return (F, C) if name.endswith("weight") else (F,)
    if ".ffn_down." in name:
        return (C, F) if name.endswith("weight") else (C,)
    if _is_matrix(name):
        return (C, C)
    return (C,)


def random_tensors(
    cfg: Mapping[str, Any], seed: int = 0, scale: float = 0.02
) -> Iterable[tuple[str, np.ndarray]]:
    """Random weights (generated one tensor at a time, to keep memory low)."""
    rng = np.random.default_rng(seed)
    for name in tensor_names(cfg):
        shape = tensor_shape(cfg, name)
        if name.endswith(".weight") and any(
            s in name for s in ("ln1", "ln2", "post_ln", "input_norm")
        ):
            yield name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            yield name, (scale * rng.standard_normal(shape)).astype(np.float32)


def siglip_tensors(state: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Maps a transformers ``SiglipVisionModel`` state dict to contract names."""
    prefix = "vision_model." if "vision_model.embeddings.patch_embedding.weight" in state else ""

    def g(k: str) -> np.ndarray:
        return np.asarray(state[prefix + k].detach().float().numpy(), dtype=np.float32)

    out = {ours: g(theirs) for ours, theirs in SIGLIP_EMBEDDINGS.items()}
    for i in range(cfg["layers"]):
        for ours, theirs in SIGLIP_BLOCK.items():
            for wb in ("weight", "bias"):
                out[f"v.blk.{i}.{ours}.{wb}"] = g(f"encoder.layers.{i}.{theirs}.{wb}")
    if cfg.get("post_ln", True):
        out["v.post_ln.weight"] = g("post_layernorm.weight")
        out["v.post_ln.bias"] = g("post_layernorm.bias")
    return out


def write_vision_gguf(
    path: str | os.PathLike[str],
    cfg: Mapping[str, Any],
    tensors: Iterable[tuple[str, np.ndarray]] | Mapping[str, np.ndarray],
    wtype: str = "q8_0",
) -> None:
    """Writes an mmproj-style GGUF; ``wtype`` is the matrices' type (q8_0, f16, f32)."""
    path = os.fspath(path)
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, "clip")
        w.add_bool("clip.has_vision_encoder", True)
        w.add_string("clip.projector_type", cfg["projector"])
        w.add_string("clip.vision.projector_type", cfg["projector"])
        w.add_bool("clip.use_gelu", True)
        w.add_uint32("clip.vision.image_size", cfg["image_size"])
        w.add_uint32("clip.vision.patch_size", cfg["patch_size"])
        w.add_uint32("clip.vision.embedding_length", cfg["hidden"])
        w.add_uint32("clip.vision.feed_forward_length", cfg["ff"])
        w.add_uint32("clip.vision.block_count", cfg["layers"])
        w.add_uint32("clip.vision.attention.head_count", cfg["heads"])
        w.add_float32("clip.vision.attention.layer_norm_epsilon", cfg.get("eps", 1e-6))
        w.add_uint32("clip.vision.projection_dim", cfg["proj_dim"])
        w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
        w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
        w.add_string("clip.vision.mm_patch_merge_type", "flat")
        if cfg["projector"] == "mlp_downsample":
            w.add_uint32("bluelm.vision.downsample", 2)
            w.add_float32("bluelm.vision.projector_ln_eps", 1e-5)
        w.add_string("bluelm.vision.image_token", "<image>")
        for name, arr in items:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if _is_matrix(name):
                qt = _matrix_type(name, arr.shape, wtype)
                if qt == Q.F32:
                    w.add_tensor(name, arr)
                elif qt == Q.F16:
                    w.add_tensor(name, arr.astype(np.float16))
                else:
                    flat = arr.reshape(arr.shape[0], -1)
                    w.add_tensor(name, gguf.quants.quantize(flat, Q.Q8_0), raw_dtype=Q.Q8_0)
            else:
                w.add_tensor(name, arr)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rewrite_gguf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    set_keys: Mapping[str, tuple[Any, gguf.GGUFValueType, gguf.GGUFValueType | None]] | None = None,
    drop_keys: Iterable[str] = (),
    drop_tensors: Iterable[str] = (),
    add_tensors: Mapping[str, np.ndarray] | None = None,
) -> None:
    """A copy of ``src`` with keys replaced or added (``{key: (value, type, array element
    type)}``), keys and tensors dropped, tensors added (F32, at the end); everything else
    (order, types, bytes) as in ``src``.

    Example:
        >>> rewrite_gguf("a.gguf", "b.gguf", drop_keys=["general.name"])  # doctest: +SKIP
    """
    r = gguf.GGUFReader(os.fspath(src))
    set_keys, drop_k, drop_t = dict(set_keys or {}), set(drop_keys), set(drop_tensors)
    arch = str(r.fields["general.architecture"].contents())
    w = gguf.GGUFWriter(os.fspath(dst), arch)
    w.kv_data[0].pop("general.architecture", None)  # re-added below, in src's order
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name in drop_k:
            continue
        if f.name in set_keys:
            value, vtype, sub = set_keys.pop(f.name)
        else:
            vtype = f.types[0]
            sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            value = f.contents()
        w.add_key_value(f.name, value, vtype, sub_type=sub)
    for key, (value, vtype, sub) in set_keys.items():  # new keys
        w.add_key_value(key, value, vtype, sub_type=sub)
    for t in r.tensors:
        if t.name not in drop_t:
            w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    for name, arr in (add_tensors or {}).items():
        w.add_tensor(name, np.ascontiguousarray(arr, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
