"""Vision checkpoints -> GGUF, per docs/vision_format.md.

Three kinds of ``config.json`` ``architectures[0]``:

* ``BlueLMVForConditionalGeneration`` (:mod:`bluelm_cpp.vision.reference`):
  SigLIP with ``post_layernorm``, projector ``mlp_downsample``, LLaMA decoder.
* ``LlavaOnevisionForConditionalGeneration``: SigLIP up to
  ``vision_feature_layer`` (no ``post_layernorm``: transformers takes
  ``hidden_states[vision_feature_layer]``), projector ``mlp``,
  ``image_newline``, anyres pinpoints, Qwen2 decoder.
* ``SiglipVisionModel`` (bare encoder): SigLIP with ``post_layernorm``,
  projector type ``none`` (the encoder's output is the embedding).

The decoder goes through the text converter's tables (same names, types and
tokenizer keys as a text-only conversion); the vision tower goes into the same
file, or into a separate mmproj file (``general.architecture = clip``) when
``mmproj`` is given. Vision tensor types: norms, biases, position embeddings
and ``image_newline`` F32; matrices ``vision_outtype`` (Q8_0 by default, F16 or
F32 on request), falling back to F16 when the row length is not a multiple of 32.

Example:
    >>> from bluelm_cpp.convert.vision import convert_vision_checkpoint
    >>> s = convert_vision_checkpoint("tests/data/tiny_bluelm_v", "tiny.gguf",
    ...                               outtype="f32", vision_outtype="f32")  # doctest: +SKIP
    >>> s.vision.types                                                      # doctest: +SKIP
    {'F32': 37}
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from ..errors import InvalidArgumentError, ModelFileError, ModelFormatError
from .architectures import (
    Architecture,
    HParams,
    PlannedTensor,
    get_architecture,
    plan_tensors,
    read_hparams,
    write_hparam_keys,
)
from .output_file import replacing_output
from .quantize_policy import FILE_TYPES, TypeChoice, check_outtype, choose_type, encode
from .quantize_policy import encoded_shape as _encoded_shape
from .safetensors_reader import Checkpoint, TensorInfo, open_checkpoint
from .tokenizer_keys import TokenizerKeys, read_tokenizer
from .vision_hparams import (
    VISION_ARCHITECTURES,
    VisionHParams,
    hf_architecture,
    read_config,
    read_vision_hparams,
)

K = gguf.Keys
VISION_OUTTYPES = ("f32", "f16", "q8_0")
# keys llama.cpp reads but gguf-py has no constant for (tools/mtmd/clip-impl.h)
KEY_GRID_PINPOINTS = "clip.vision.image_grid_pinpoints"
KEY_MERGE_TYPE = "clip.vision.mm_patch_merge_type"
KEY_FEATURE_LAYER = "clip.vision.feature_layer"
# this project's keys (docs/vision_format.md)
KEY_GRID_METHOD = "bluelm.vision.grid_method"
KEY_ALPHA = "bluelm.vision.alpha"
KEY_MAX_SIDE = "bluelm.vision.max_grid_side"
KEY_MAX_PATCHES = "bluelm.vision.max_patches"
KEY_DOWNSAMPLE = "bluelm.vision.downsample"
KEY_IMAGE_TOKEN = "bluelm.vision.image_token"
KEY_IMAGE_TOKEN_ID = "bluelm.vision.image_token_id"
KEY_PROJ_LN_EPS = "bluelm.vision.projector_ln_eps"
KEY_ANYRES_MAX = "bluelm.vision.anyres_max_patches"

_TEXT_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


@dataclass
class VisionSummary:
    """What one converted file holds (types per tensor)."""

    output: Path
    tensors: list[tuple[str, tuple[int, ...], str, str | None]] = field(default_factory=list)

    @property
    def types(self) -> dict[str, int]:
        """Tensor count per GGML type name."""
        out: dict[str, int] = {}
        for _, _, t, _ in self.tensors:
            out[t] = out.get(t, 0) + 1
        return out


@dataclass
class VisionConvertSummary:
    """Result of :func:`convert_vision_checkpoint`: ``text`` is None for a bare encoder;
    ``vision`` is the file holding the vision tower (the same path as ``text``
    for a combined file)."""

    hf_arch: str
    text: VisionSummary | None
    vision: VisionSummary


# --- names --------------------------------------------------------------------


def canonical_name(name: str) -> str:
    """Map the layouts of transformers 4 and 5 onto one set of names.

    Vision tower -> ``vision_tower.<SigLIP name without vision_model.>``;
    decoder -> ``model.*`` / ``lm_head.weight``.

    Example:
        >>> canonical_name("model.language_model.layers.0.mlp.up_proj.weight")
        'model.layers.0.mlp.up_proj.weight'
        >>> canonical_name("language_model.lm_head.weight")
        'lm_head.weight'
        >>> canonical_name("vision_tower.vision_model.post_layernorm.bias")
        'vision_tower.post_layernorm.bias'
    """
    n = re.sub(
        r"^model\.(?=(language_model|vision_tower|multi_modal_projector|image_newline))", "", name
    )
    if n.startswith("language_model."):
        rest = n[len("language_model.") :]
        return rest if rest.startswith("model.") or rest == "lm_head.weight" else "model." + rest
    if n.startswith("vision_tower."):
        rest = n[len("vision_tower.") :]
        return "vision_tower." + rest.removeprefix("vision_model.")
    return n


def _bare_siglip_name(name: str) -> str:
    return "vision_tower." + name.removeprefix("vision_model.")


def renamed_checkpoint(ckpt: Checkpoint, rename: Callable[[str], str]) -> Checkpoint:
    """A view of ``ckpt`` under new names (loads go to the original tensors)."""
    infos: dict[str, TensorInfo] = {}
    source: dict[str, str] = {}
    for n in ckpt.names():
        new = rename(n)
        if new in infos:
            raise ModelFormatError(f"checkpoint has both {source[new]!r} and {n!r}")
        i = ckpt.info(n)
        infos[new] = TensorInfo(new, i.dtype, i.shape, i.file)
        source[new] = n
    return Checkpoint(infos, lambda n: ckpt.load(source[n]), ckpt.close)


def filtered_checkpoint(ckpt: Checkpoint, keep: Callable[[str], bool]) -> Checkpoint:
    """Only the tensors whose name passes ``keep``."""
    infos = {n: ckpt.info(n) for n in ckpt.names() if keep(n)}
    return Checkpoint(infos, ckpt.load, None)


# --- vision tensors -----------------------------------------------------------

_V = "vision_tower."
_BLOCK = re.compile(r"vision_tower\.encoder\.layers\.(\d+)\.(.+)\Z")
_BLOCK_MAP = {
    "layer_norm1.weight": "ln1.weight",
    "layer_norm1.bias": "ln1.bias",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.out_proj.weight": "attn_out.weight",
    "self_attn.out_proj.bias": "attn_out.bias",
    "layer_norm2.weight": "ln2.weight",
    "layer_norm2.bias": "ln2.bias",
    "mlp.fc1.weight": "ffn_up.weight",
    "mlp.fc1.bias": "ffn_up.bias",
    "mlp.fc2.weight": "ffn_down.weight",
    "mlp.fc2.bias": "ffn_down.bias",
}


def _tn(tensor: gguf.MODEL_TENSOR, suffix: str, bid: int | None = None) -> str:
    base = gguf.TENSOR_NAMES[tensor]
    return (base.format(bid=bid) if bid is not None else base) + "." + suffix


def _block_shape(key: str, hp: VisionHParams) -> tuple[int, ...]:
    c, f = hp.hidden, hp.ff
    if key.endswith("bias") or key.startswith("layer_norm"):
        return (f,) if key == "mlp.fc1.bias" else (c,)
    if key == "mlp.fc1.weight":
        return (f, c)
    if key == "mlp.fc2.weight":
        return (c, f)
    return (c, c)


def vision_tensor_table(hp: VisionHParams) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Canonical HF name -> (GGUF name, expected shape) for every vision tensor written.

    Example:
        >>> hp = VisionHParams(64, 128, 2, 2, 4, 70, 14, 1e-6, "mlp_downsample", 32, True,
        ...     (0.5,) * 3, (0.5,) * 3, "relaxed", 0.1, 3, 9, 2, 1e-5)
        >>> vision_tensor_table(hp)["multi_modal_projector.linear_1.weight"]
        ('mm.0.weight', (32, 256))
    """
    c, d, p = hp.hidden, hp.proj_dim, hp.patch_size
    M = gguf.MODEL_TENSOR
    t: dict[str, tuple[str, tuple[int, ...]]] = {
        _V + "embeddings.patch_embedding.weight": (_tn(M.V_ENC_EMBD_PATCH, "weight"), (c, 3, p, p)),
        _V + "embeddings.patch_embedding.bias": (_tn(M.V_ENC_EMBD_PATCH, "bias"), (c,)),
        _V + "embeddings.position_embedding.weight": (
            _tn(M.V_ENC_EMBD_POS, "weight"),
            (hp.n_pos, c),
        ),
    }
    for bid in range(hp.n_layer):
        for key, gname in _BLOCK_MAP.items():
            blk = gguf.TENSOR_NAMES[M.V_ENC_INPUT_NORM].format(bid=bid).rsplit(".", 1)[0]
            t[f"{_V}encoder.layers.{bid}.{key}"] = (f"{blk}.{gname}", _block_shape(key, hp))
    if hp.post_ln:
        t[_V + "post_layernorm.weight"] = (_tn(M.V_POST_NORM, "weight"), (c,))
        t[_V + "post_layernorm.bias"] = (_tn(M.V_POST_NORM, "bias"), (c,))
    mm = "multi_modal_projector."
    if hp.projector == "mlp_downsample":
        c4 = c * hp.downsample * hp.downsample
        t[mm + "input_norm.weight"] = (_tn(M.V_MM_INP_NORM, "weight"), (c4,))
        t[mm + "input_norm.bias"] = (_tn(M.V_MM_INP_NORM, "bias"), (c4,))
        t[mm + "linear_1.weight"] = (_tn(M.V_MMPROJ, "weight", 0), (d, c4))
    elif hp.projector == "mlp":
        t[mm + "linear_1.weight"] = (_tn(M.V_MMPROJ, "weight", 0), (d, c))
    if hp.projector in ("mlp", "mlp_downsample"):
        t[mm + "linear_1.bias"] = (_tn(M.V_MMPROJ, "bias", 0), (d,))
        t[mm + "linear_2.weight"] = (_tn(M.V_MMPROJ, "weight", 2), (d, d))
        t[mm + "linear_2.bias"] = (_tn(M.V_MMPROJ, "bias", 2), (d,))
    if hp.projector == "mlp":
        t["image_newline"] = (gguf.TENSOR_NAMES[M.V_ENC_EMBD_IMGNL], (d,))
    return t


def vision_type(gguf_name: str, shape: tuple[int, ...], outtype: str) -> TypeChoice:
    """The contract's type policy for one vision tensor.

    Example:
        >>> vision_type("v.patch_embd.weight", (1152, 3, 14, 14), "q8_0").qtype.name
        'F16'
        >>> vision_type("v.position_embd.weight", (729, 1152), "q8_0").qtype.name
        'F32'
    """
    if outtype not in VISION_OUTTYPES:
        raise InvalidArgumentError(
            f"vision outtype {outtype!r} is not supported "
            f"(choose one of {', '.join(VISION_OUTTYPES)})"
        )
    if len(shape) <= 1 or gguf_name.startswith("v.position_embd"):
        return TypeChoice(T.F32)
    if outtype == "q8_0":
        k = int(np.prod(shape[1:]))  # the row: every dim after the output one
        if k % 32:
            return TypeChoice(T.F16, f"row length {k} is not a multiple of 32 (Q8_0 block)")
        return TypeChoice(T.Q8_0)
    return TypeChoice(T.F16 if outtype == "f16" else T.F32)


def plan_vision(
    ckpt: Checkpoint, hp: VisionHParams, outtype: str
) -> list[tuple[PlannedTensor, TypeChoice]]:
    """Check names and shapes of the vision tensors and choose their types."""
    table = vision_tensor_table(hp)
    found: dict[str, PlannedTensor] = {}
    for name in ckpt.names():
        if name in table:
            gname, want = table[name]
            got = tuple(ckpt.info(name).shape)
            if got != want:
                raise ModelFormatError(
                    f"{ckpt.info(name).file}: tensor {name!r} has shape {list(got)}, "
                    f"expected {list(want)} from config.json"
                )
            found[name] = PlannedTensor(gname, want, name)
            continue
        m = _BLOCK.match(name)
        if m and int(m.group(1)) >= hp.n_layer and m.group(2) in _BLOCK_MAP:
            continue  # layers past vision_feature_layer are never run
        if m and int(m.group(1)) >= hp.n_layer_file:
            raise ModelFormatError(f"tensor {name!r} is past num_hidden_layers {hp.n_layer_file}")
        if (
            name.startswith(_V + "head.")
            or name == _V + "post_layernorm.weight"
            or (name == _V + "post_layernorm.bias")
        ):
            continue  # pooling head; post-LN unused by LLaVA
        raise ModelFormatError(f"{ckpt.info(name).file}: unknown vision tensor {name!r}")
    missing = [n for n in table if n not in found]
    if missing:
        raise ModelFormatError(
            f"checkpoint is missing {len(missing)} vision tensor(s): {', '.join(missing[:5])}"
        )
    return [(found[n], vision_type(found[n].gguf_name, found[n].shape, outtype)) for n in table]


def write_vision_keys(w: gguf.GGUFWriter, hp: VisionHParams) -> None:
    """The ``clip.*`` and ``bluelm.vision.*`` keys of docs/vision_format.md."""
    cv = K.ClipVision
    w.add_bool(K.Clip.HAS_VISION_ENCODER, True)
    w.add_string(K.Clip.PROJECTOR_TYPE, hp.projector)
    w.add_string(cv.PROJECTOR_TYPE, hp.projector)
    w.add_bool(K.Clip.HAS_LLAVA_PROJECTOR, hp.projector != "none")
    w.add_bool(cv.USE_GELU, True)
    w.add_uint32(cv.IMAGE_SIZE, hp.image_size)
    w.add_uint32(cv.PATCH_SIZE, hp.patch_size)
    w.add_uint32(cv.EMBEDDING_LENGTH, hp.hidden)
    w.add_uint32(cv.FEED_FORWARD_LENGTH, hp.ff)
    w.add_uint32(cv.BLOCK_COUNT, hp.n_layer)
    # Without it llama.cpp's LLaVA graph runs block_count - 1 layers.
    w.add_array(KEY_FEATURE_LAYER, [hp.n_layer])
    w.add_uint32(cv.Attention.HEAD_COUNT, hp.n_head)
    w.add_float32(cv.Attention.LAYERNORM_EPS, hp.eps)
    w.add_uint32(cv.PROJECTION_DIM, hp.proj_dim)
    w.add_array(cv.IMAGE_MEAN, list(hp.mean))
    w.add_array(cv.IMAGE_STD, list(hp.std))
    if hp.pinpoints_wh:
        w.add_array(KEY_GRID_PINPOINTS, [int(x) for wh in hp.pinpoints_wh for x in wh])
        w.add_uint32(KEY_ANYRES_MAX, hp.anyres_max)
    w.add_string(KEY_MERGE_TYPE, "spatial_unpad" if hp.projector == "mlp" else "flat")
    w.add_string(KEY_GRID_METHOD, hp.grid_method)
    w.add_float32(KEY_ALPHA, hp.alpha)
    w.add_uint32(KEY_MAX_SIDE, hp.max_side)
    w.add_uint32(KEY_MAX_PATCHES, hp.max_patches)
    if hp.projector == "mlp_downsample":
        w.add_uint32(KEY_DOWNSAMPLE, hp.downsample)
        w.add_float32(KEY_PROJ_LN_EPS, hp.proj_ln_eps)
    w.add_string(KEY_IMAGE_TOKEN, hp.image_token)
    if hp.image_token_id is not None:
        w.add_uint32(KEY_IMAGE_TOKEN_ID, hp.image_token_id)


# --- the decoder ----------------------------------------------------------------


@dataclass
class _TextPart:
    arch: Architecture
    hp: HParams
    tensors: list[tuple[PlannedTensor, TypeChoice]]
    tokenizer: TokenizerKeys


def _plan_text(
    model_dir: Path, config: dict[str, Any], ckpt: Checkpoint, outtype: str
) -> _TextPart:
    where = str(model_dir / "config.json")
    tc = config.get("text_config")
    if not isinstance(tc, dict):
        raise ModelFormatError(f"{where}: no text_config object")
    cls = tc.get("architectures", [None])[0] if isinstance(tc.get("architectures"), list) else None
    cls = cls or _TEXT_CLASSES.get(str(tc.get("model_type", "llama")))
    if cls is None:
        raise ModelFormatError(f"{where}: text model_type {tc.get('model_type')!r} not supported")
    text_cfg = dict(tc)
    text_cfg["architectures"] = [cls]
    if "tie_word_embeddings" not in text_cfg and "tie_word_embeddings" in config:
        text_cfg["tie_word_embeddings"] = config["tie_word_embeddings"]
    arch = get_architecture(text_cfg, where)
    hp = read_hparams(text_cfg, where)
    tokenizer = read_tokenizer(model_dir, hp.n_vocab)
    text_ckpt = filtered_checkpoint(ckpt, lambda n: n.startswith("model.") or n == "lm_head.weight")
    planned = plan_tensors(arch, hp, text_ckpt)
    choices = [(p, choose_type(p.gguf_name, p.shape, outtype, hp.tied)) for p in planned]
    return _TextPart(arch, hp, choices, tokenizer)


# --- writing ------------------------------------------------------------------


def _check_output(output: Path, force: bool) -> None:
    if output.is_dir():
        raise ModelFileError(f"{output}: output path is a folder")
    if output.exists() and not force:
        raise ModelFileError(
            f"{output}: output file exists (use --force / force=True to replace it)"
        )
    if not output.parent.is_dir():
        raise ModelFileError(f"{output}: output folder {output.parent} does not exist")


def _add_infos(
    w: gguf.GGUFWriter, tensors: list[tuple[PlannedTensor, TypeChoice]], summary: VisionSummary
) -> None:
    for p, choice in tensors:
        byte_shape, nbytes = _encoded_shape(p.shape, choice.qtype)
        if choice.qtype in (T.F32, T.F16):
            dtype = np.dtype(np.float32 if choice.qtype == T.F32 else np.float16)
            w.add_tensor_info(p.gguf_name, byte_shape, dtype, nbytes)
        else:
            w.add_tensor_info(
                p.gguf_name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=choice.qtype
            )
        summary.tensors.append((p.gguf_name, p.shape, choice.qtype.name, choice.fallback))


def _write_file(
    out: Path,
    force: bool,
    arch_name: str,
    name: str,
    keys: Callable[[gguf.GGUFWriter], None],
    tensors: list[tuple[PlannedTensor, TypeChoice]],
    load: Callable[[PlannedTensor], np.ndarray],
) -> VisionSummary:
    """Write one GGUF through a temporary file renamed at the end."""
    summary = VisionSummary(out)
    with replacing_output(out, force) as tmp:
        w = gguf.GGUFWriter(tmp, arch_name)
        try:
            w.add_name(name)
            keys(w)
            _add_infos(w, tensors, summary)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for p, choice in tensors:
                w.write_tensor_data(encode(load(p), choice.qtype))
            w.flush()
        finally:
            w.close()
    return summary


def convert_vision_checkpoint(
    model_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    outtype: str = "f16",
    vision_outtype: str = "q8_0",
    mmproj: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> VisionConvertSummary:
    """Convert a BlueLM-V, LLaVA-OneVision or bare SigLIP checkpoint folder.

    ``output`` gets the decoder (``outtype``, as the text converter) and, unless
    ``mmproj`` is given, the vision tower too; with ``mmproj`` the vision tower
    goes there (``general.architecture = clip``). A bare ``SiglipVisionModel``
    has no decoder: ``output`` is its mmproj file (``mmproj`` must be None).

    Example:
        >>> s = convert_vision_checkpoint("tests/data/tiny_llava_ov", "llm.gguf",
        ...                               mmproj="mmproj.gguf", progress=False)  # doctest: +SKIP
        >>> s.vision.types                                                    # doctest: +SKIP
        {'F16': 2, 'F32': 24, 'Q8_0': 14}
    """
    outtype = check_outtype(outtype)
    if vision_outtype.lower() not in VISION_OUTTYPES:
        raise InvalidArgumentError(
            f"vision outtype {vision_outtype!r} is not supported "
            f"(choose one of {', '.join(VISION_OUTTYPES)})"
        )
    vision_outtype = vision_outtype.lower()
    src = Path(model_dir)
    config = read_config(src)
    arch = hf_architecture(config)
    if arch not in VISION_ARCHITECTURES:
        raise ModelFormatError(
            f"{src / 'config.json'}: architecture {arch!r} is not a vision model "
            f"(supported: {', '.join(VISION_ARCHITECTURES)})"
        )
    out = Path(output).absolute()
    mm_out = Path(mmproj).absolute() if mmproj is not None else None
    if arch == "SiglipVisionModel" and mm_out is not None:
        raise InvalidArgumentError("a bare SiglipVisionModel has no decoder: give only output")
    if mm_out is not None and mm_out == out:
        raise InvalidArgumentError("mmproj and output must be different files")
    for o in (out, mm_out):
        if o is not None:
            _check_output(o, force)
    hp = read_vision_hparams(src, config, arch)
    raw = open_checkpoint(src)
    rename = _bare_siglip_name if arch == "SiglipVisionModel" else canonical_name
    ckpt = renamed_checkpoint(raw, rename)
    try:
        vision_ckpt = filtered_checkpoint(
            ckpt,
            lambda n: (
                n.startswith(_V) or n.startswith("multi_modal_projector.") or n == "image_newline"
            ),
        )
        vtensors = plan_vision(vision_ckpt, hp, vision_outtype)
        text = None if arch == "SiglipVisionModel" else _plan_text(src, config, ckpt, outtype)
        known = {p.hf_name for p, _ in vtensors} | (
            {p.hf_name for p, _ in text.tensors} if text else set()
        )
        extra = [
            n
            for n in ckpt.names()
            if n not in known
            and not n.startswith(_V)
            and "rotary_emb.inv_freq" not in n
            and not (text is not None and text.hp.tied and n == "lm_head.weight")
            # folded into another tensor by the text arch (BlueLM's embedding LayerNorm)
            and not (text is not None and any(re.fullmatch(c, n) for c in text.arch.consumes))
        ]
        if extra:
            raise ModelFormatError(f"{src}: {len(extra)} unknown tensor(s): {', '.join(extra[:5])}")

        def load_vision(p: PlannedTensor) -> np.ndarray:
            assert p.hf_name is not None
            return ckpt.load(p.hf_name)

        def load_text(p: PlannedTensor) -> np.ndarray:
            assert text is not None
            data = p.generate() if p.generate is not None else ckpt.load(str(p.hf_name))
            return p.transform(data, text.hp) if p.transform is not None else data

        def mm_keys(w: gguf.GGUFWriter) -> None:
            w.add_type(gguf.GGUFType.MMPROJ)
            w.add_file_type(int(FILE_TYPES[vision_outtype]))
            write_vision_keys(w, hp)

        name = src.absolute().name
        if text is None:
            vs = _write_file(out, force, "clip", name, mm_keys, vtensors, load_vision)
            summary = VisionConvertSummary(arch, None, vs)
        else:
            tp = text

            def text_keys(w: gguf.GGUFWriter, with_vision: bool) -> None:
                write_hparam_keys(w, tp.arch, tp.hp)
                w.add_file_type(int(FILE_TYPES[outtype]))
                w.add_quantization_version(gguf.GGML_QUANT_VERSION)
                tp.tokenizer.write(w)
                if with_vision:
                    write_vision_keys(w, hp)

            def load_any(p: PlannedTensor) -> np.ndarray:
                return load_vision(p) if p.gguf_name.startswith(("v.", "mm.")) else load_text(p)

            if mm_out is None:
                both = tp.tensors + vtensors
                ts = _write_file(
                    out,
                    force,
                    tp.arch.gguf_arch,
                    name,
                    lambda w: text_keys(w, True),
                    both,
                    load_any,
                )
                summary = VisionConvertSummary(arch, ts, ts)
            else:
                ts = _write_file(
                    out,
                    force,
                    tp.arch.gguf_arch,
                    name,
                    lambda w: text_keys(w, False),
                    tp.tensors,
                    load_text,
                )
                vs = _write_file(mm_out, force, "clip", name, mm_keys, vtensors, load_vision)
                summary = VisionConvertSummary(arch, ts, vs)
    finally:
        raw.close()
    if progress:
        for s in {id(x): x for x in (summary.text, summary.vision) if x is not None}.values():
            print(f"wrote {s.output}: {s.types}", file=sys.stderr)
    return summary
