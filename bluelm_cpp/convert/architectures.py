"""Hugging Face architectures -> GGUF tensor names, shapes and hyperparameter keys.

Each supported ``config.json`` ``architectures[0]`` maps to an
:class:`Architecture`: the GGUF arch name, a table of HF tensor name patterns
(``{bid}`` is the block index) with their llama.cpp names, expected shapes and
an optional transform, the HF tensors that are dropped on purpose, the RoPE
scaling types it accepts and hooks for arch-specific keys and tensors. The
tables of the supported decoders are in :mod:`bluelm_cpp.convert.decoders`.

``llama`` (LlamaForCausalLM, MistralForCausalLM, BlueLMForCausalLM): Q and K
weights (and biases) are permuted from HF's rotate-half layout (the two halves
of each head hold the two members of a RoPE pair) to llama.cpp's interleaved
layout (pairs are adjacent rows), as llama.cpp's converter does. The NeoX-RoPE
archs (qwen2, qwen3, gemma2, gemma3, phi3) need no permutation.

Example:
    >>> from bluelm_cpp.convert.architectures import get_architecture
    >>> get_architecture({"architectures": ["Qwen2ForCausalLM"]}).gguf_arch
    'qwen2'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import gguf
import numpy as np

from ..errors import ModelFormatError
from .safetensors_reader import Checkpoint
from .tokenizer_keys import TokenizerKeys


@dataclass(frozen=True)
class HParams:
    """The decoder hyperparameters the converter needs, read from config.json.

    ``config`` is the whole (text) config, for the keys only one arch reads.
    """

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    head_dim: int
    head_dim_explicit: bool
    n_ctx: int
    rope_theta: float
    rms_eps: float
    tied: bool
    rope_scaling: dict[str, Any] | None
    n_rot: int = 0  # rotated dimensions per head (partial_rotary_factor); 0: head_dim
    rope_theta_swa: float | None = None  # sliding-window layers' base (gemma3)
    activation: str = "silu"
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def rot_dims(self) -> int:
        """Rotated dimensions per head."""
        return self.n_rot or self.head_dim


Transform = Callable[[np.ndarray, HParams], np.ndarray]
ShapeFn = Callable[[HParams], tuple[int, ...]]


@dataclass(frozen=True)
class TensorRule:
    """One HF tensor (``{bid}`` = block index) and the GGUF tensor it becomes."""

    hf: str
    gguf: str
    shape: ShapeFn
    transform: Transform | None = None
    required: bool = True
    # rows the transform must see together (it is then applied per slice of
    # rows); None: the transform needs the whole tensor
    row_group: Callable[[HParams], int] | None = None


@dataclass(frozen=True)
class PlannedTensor:
    """A GGUF tensor to write: where its data comes from and its HF-order shape.

    ``row_group``: the tensor may be read, transformed and encoded in slices of
    a multiple of this many rows (None: only whole).
    """

    gguf_name: str
    shape: tuple[int, ...]
    hf_name: str | None  # None: generated (``generate`` gives the data)
    transform: Transform | None = None
    generate: Callable[[], np.ndarray] | None = None
    row_group: int | None = None


# Hooks an Architecture may set (see decoders.py for the users).
KeysHook = Callable[[gguf.GGUFWriter, HParams], None]
# Generated tensors (rope factors) from the hyperparameters, placed after the embedding.
ExtraTensors = Callable[[HParams], list[PlannedTensor]]
# Rewrites the planned tensors once all are known (BlueLM folds its embedding
# LayerNorm into token_embd); gets the tensors that matched no rule but were
# claimed by ``consumes``.
PlanHook = Callable[[HParams, "Checkpoint", dict[str, PlannedTensor], set[str]], None]


@dataclass(frozen=True)
class Architecture:
    """How one HF architecture becomes one GGUF arch."""

    hf_names: tuple[str, ...]
    gguf_arch: str
    rules: tuple[TensorRule, ...]
    ignored: tuple[str, ...] = ()  # regexes of HF tensors dropped on purpose
    extra_keys: KeysHook | None = None
    notes: str = ""
    activations: tuple[str, ...] = ("silu", "swish")  # accepted hidden_act values
    rope_types: tuple[str, ...] = ("linear", "llama3")  # accepted RoPE scaling types
    extra_tensors: ExtraTensors | None = None
    consumes: tuple[str, ...] = ()  # regexes of HF tensors a plan hook folds away
    plan_hook: PlanHook | None = None
    spm_space_prefix: bool | None = None  # SentencePiece add_space_prefix (gemma: False)
    default_chat_template: str | None = None  # when the tokenizer files have none
    _compiled: list[tuple[re.Pattern[str], TensorRule]] = field(
        default_factory=list, compare=False, repr=False
    )

    def apply_tokenizer_defaults(self, tok: TokenizerKeys) -> None:
        """What the arch implies for its tokenizer: gemma's SentencePiece adds no
        space prefix; BlueLM gets its chat template when the files carry none."""
        if self.spm_space_prefix is not None and tok.model == "llama":
            tok.add_space_prefix = self.spm_space_prefix
        if self.default_chat_template and not tok.special.chat_template:
            tok.special.chat_template = self.default_chat_template

    def compiled(self) -> list[tuple[re.Pattern[str], TensorRule]]:
        if not self._compiled:
            for rule in self.rules:
                pat = re.escape(rule.hf).replace(re.escape("{bid}"), r"(\d+)")
                self._compiled.append((re.compile(pat + r"\Z"), rule))
        return self._compiled


# --- Q/K permutation -------------------------------------------------------


def permute_rotate_half_to_interleaved(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder the rows of a Q or K projection (or bias) for llama.cpp's RoPE.

    HF keeps RoPE pair (i, i + d/2) of each head in the two halves of the
    head; llama.cpp wants pair (2i, 2i + 1). Rows are permuted within each head.

    Example:
        >>> w = np.arange(8, dtype=np.float32)       # one head of dim 8
        >>> permute_rotate_half_to_interleaved(w, 1)
        array([0., 4., 1., 5., 2., 6., 3., 7.], dtype=float32)
    """
    rows = w.shape[0]
    if rows % (2 * n_heads):
        raise ModelFormatError(f"cannot split {rows} rows into {n_heads} heads of even size")
    half = rows // n_heads // 2
    return w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_interleaved_to_rotate_half(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of :func:`permute_rotate_half_to_interleaved`.

    Example:
        >>> w = np.arange(16, dtype=np.float32).reshape(8, 2)
        >>> x = permute_rotate_half_to_interleaved(w, 2)
        >>> bool((permute_interleaved_to_rotate_half(x, 2) == w).all())
        True
    """
    rows = w.shape[0]
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _permute_heads(w: np.ndarray, hp: HParams) -> np.ndarray:
    # heads counted from the rows, so a slice of whole heads is permuted alike
    return permute_rotate_half_to_interleaved(w, w.shape[0] // hp.head_dim)


def _head_rows(hp: HParams) -> int:
    return hp.head_dim


_permute_q = _permute_k = _permute_heads


# --- hyperparameters --------------------------------------------------------


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    # multimodal wrappers keep the decoder's settings in text_config
    tc = config.get("text_config")
    return {**config, **tc} if isinstance(tc, dict) else config


def _rope_settings(c: dict[str, Any]) -> tuple[float, float | None, dict[str, Any] | None]:
    """(theta, sliding layers' theta, scaling dict) from either config layout.

    transformers 5 keeps RoPE in ``rope_parameters`` (per layer type for gemma3:
    ``{"full_attention": {...}, "sliding_attention": {...}}``); transformers 4
    configs have ``rope_theta``, ``rope_scaling`` and ``rope_local_base_freq``.
    """
    rope = c.get("rope_parameters") if isinstance(c.get("rope_parameters"), dict) else {}
    swa: dict[str, Any] = {}
    if isinstance(rope.get("full_attention"), dict):
        sliding = rope.get("sliding_attention")
        swa = sliding if isinstance(sliding, dict) else {}
        rope = rope["full_attention"]
    scaling = c.get("rope_scaling") if isinstance(c.get("rope_scaling"), dict) else None
    kind = rope.get("rope_type", rope.get("type", "default"))
    if scaling is None and kind not in (None, "default"):
        scaling = rope  # transformers 5 keeps scaling inside rope_parameters
    theta = float(rope.get("rope_theta", c.get("rope_theta", 10000.0)))
    theta_swa = swa.get("rope_theta", c.get("rope_local_base_freq"))
    return theta, None if theta_swa is None else float(theta_swa), scaling


def read_hparams(config: dict[str, Any], where: str = "config.json") -> HParams:
    """Read decoder hyperparameters, with a clear error for a missing key.

    Example:
        >>> hp = read_hparams({"vocab_size": 300, "hidden_size": 64,
        ...     "num_hidden_layers": 2, "num_attention_heads": 4,
        ...     "intermediate_size": 128})
        >>> (hp.head_dim, hp.n_head_kv, hp.rope_theta)
        (16, 4, 10000.0)
    """
    c = _text_config(config)

    def need(*keys: str) -> Any:
        for k in keys:
            if c.get(k) is not None:
                return c[k]
        raise ModelFormatError(f"{where}: missing {' / '.join(repr(k) for k in keys)}")

    def as_int(v: Any, key: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ModelFormatError(f"{where}: {key} must be a positive integer, got {v!r}")
        return v

    n_embd = as_int(need("hidden_size", "n_embd", "dim"), "hidden_size")
    n_head = as_int(need("num_attention_heads", "n_head", "n_heads"), "num_attention_heads")
    n_head_kv = as_int(c.get("num_key_value_heads") or n_head, "num_key_value_heads")
    if n_head % n_head_kv:
        raise ModelFormatError(
            f"{where}: num_attention_heads {n_head} is not a multiple of "
            f"num_key_value_heads {n_head_kv}"
        )
    explicit = c.get("head_dim") is not None
    head_dim = as_int(c["head_dim"], "head_dim") if explicit else n_embd // n_head
    if not explicit and n_embd % n_head:
        raise ModelFormatError(f"{where}: hidden_size {n_embd} is not a multiple of {n_head}")
    theta, theta_swa, scaling = _rope_settings(c)
    rope = c.get("rope_parameters") if isinstance(c.get("rope_parameters"), dict) else {}
    partial = rope.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0))
    n_rot = int(float(partial) * head_dim) if partial is not None else head_dim
    if n_rot <= 0 or n_rot > head_dim or n_rot % 2:
        raise ModelFormatError(
            f"{where}: partial_rotary_factor {partial!r} gives {n_rot} rotated dims"
        )
    act = c.get("hidden_activation") or c.get("hidden_act") or "silu"
    return HParams(
        n_vocab=as_int(need("vocab_size"), "vocab_size"),
        n_embd=n_embd,
        n_layer=as_int(need("num_hidden_layers", "n_layer", "n_layers"), "num_hidden_layers"),
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=as_int(need("intermediate_size", "n_inner"), "intermediate_size"),
        head_dim=head_dim,
        head_dim_explicit=explicit,
        n_ctx=as_int(c.get("max_position_embeddings") or 2048, "max_position_embeddings"),
        rope_theta=theta,
        rms_eps=float(c.get("rms_norm_eps", 1e-6)),
        tied=bool(c.get("tie_word_embeddings", False)),
        rope_scaling=scaling,
        n_rot=n_rot,
        rope_theta_swa=theta_swa,
        activation=str(act),
        config=c,
    )


def check_hparams(arch: Architecture, hp: HParams, where: str = "config.json") -> None:
    """Refuse what the runtime would run differently from the checkpoint.

    Example:
        >>> hp = read_hparams({"vocab_size": 8, "hidden_size": 64, "num_hidden_layers": 1,
        ...     "num_attention_heads": 1, "intermediate_size": 8, "hidden_act": "relu"})
        >>> try:
        ...     check_hparams(get_architecture({"architectures": ["LlamaForCausalLM"]}), hp)
        ... except ModelFormatError as e:
        ...     print(str(e)[:44])
        config.json: hidden_act 'relu' is not suppor
    """
    if hp.activation not in arch.activations:
        raise ModelFormatError(
            f"{where}: hidden_act {hp.activation!r} is not supported by {arch.hf_names[0]} "
            f"(supported: {', '.join(arch.activations)})"
        )
    rope_scaling_kind(arch, hp, where)


def write_hparam_keys(w: gguf.GGUFWriter, arch: Architecture, hp: HParams) -> None:
    """Write llama.cpp's ``{arch}.*`` hyperparameter keys."""
    w.add_block_count(hp.n_layer)
    w.add_context_length(hp.n_ctx)
    w.add_embedding_length(hp.n_embd)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    if hp.head_dim_explicit:  # llama.cpp writes these whenever config has head_dim
        w.add_key_length(hp.head_dim)
        w.add_value_length(hp.head_dim)
    w.add_vocab_size(hp.n_vocab)
    w.add_rope_dimension_count(hp.rot_dims)
    if rope_scaling_kind(arch, hp) == "linear":
        assert hp.rope_scaling is not None
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(hp.rope_scaling["factor"]))
    if arch.extra_keys is not None:
        arch.extra_keys(w, hp)


def rope_scaling_kind(arch: Architecture, hp: HParams, where: str = "config.json") -> str:
    """``"none"`` or the RoPE scaling type, refused unless ``arch`` accepts it.

    Example:
        >>> hp = read_hparams({"vocab_size": 8, "hidden_size": 64, "num_hidden_layers": 1,
        ...     "num_attention_heads": 1, "intermediate_size": 8,
        ...     "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
        >>> try:
        ...     rope_scaling_kind(get_architecture({"architectures": ["LlamaForCausalLM"]}), hp)
        ... except ModelFormatError as e:
        ...     print(str(e)[:44])
        config.json: rope_scaling type 'yarn' is not
    """
    s = hp.rope_scaling
    if not s:
        return "none"
    kind = str(s.get("rope_type", s.get("type", "default"))).lower()
    if kind == "su":  # Phi-3's old name
        kind = "longrope"
    if kind == "default":
        return "none"
    if kind not in arch.rope_types:
        raise ModelFormatError(
            f"{where}: rope_scaling type {kind!r} is not supported by {arch.hf_names[0]} "
            f"(supported: {', '.join(arch.rope_types) or 'none'})"
        )
    if kind in ("linear", "llama3", "ntkmixed") and not isinstance(s.get("factor"), (int, float)):
        raise ModelFormatError(
            f"{where}: rope_scaling {kind!r} needs a numeric 'factor', got {s!r}"
        )
    return kind


def llama3_rope_factors(hp: HParams) -> np.ndarray:
    """Per-frequency divisors for Llama 3 RoPE scaling (``rope_freqs.weight``).

    Example:
        >>> hp = read_hparams({"vocab_size": 8, "hidden_size": 64, "num_hidden_layers": 1,
        ...     "num_attention_heads": 1, "intermediate_size": 8,
        ...     "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
        >>> llama3_rope_factors(hp).shape
        (32,)
    """
    s = hp.rope_scaling or {}
    factor = float(s["factor"])
    low = float(s.get("low_freq_factor", 1.0))
    high = float(s.get("high_freq_factor", 4.0))
    old_ctx = float(s.get("original_max_position_embeddings", 8192))
    dim = hp.rot_dims
    freqs = 1.0 / (hp.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def generated(name: str, data: np.ndarray) -> PlannedTensor:
    """A planned tensor whose data is computed, not read (rope factors)."""
    return PlannedTensor(name, data.shape, None, generate=lambda: data)


# --- tensor planning ----------------------------------------------------------


def plan_tensors(arch: Architecture, hp: HParams, ckpt: Checkpoint) -> list[PlannedTensor]:
    """Map every checkpoint tensor to its GGUF tensor, checking names and shapes.

    Raises :class:`ModelFormatError` for an unknown tensor, a missing one, a
    block index past ``num_hidden_layers`` or a shape that does not match
    config.json. The result is in llama.cpp order: embedding, blocks, head.
    """
    check_hparams(arch, hp)
    found: dict[str, PlannedTensor] = {}
    unknown: list[str] = []
    claimed: set[str] = set()
    ignored = [re.compile(p + r"\Z") for p in arch.ignored]
    consumed = [re.compile(p + r"\Z") for p in arch.consumes]
    if hp.tied:  # a tied head is the embedding; llama.cpp stores it once
        ignored.append(re.compile(r"lm_head\.weight\Z"))
    for name in ckpt.names():
        for pat, rule in arch.compiled():
            m = pat.match(name)
            if m is None:
                continue
            bid = int(m.group(1)) if m.groups() else None
            if bid is not None and bid >= hp.n_layer:
                raise ModelFormatError(
                    f"{ckpt.info(name).file}: tensor {name!r} is for block {bid}, but "
                    f"config.json has num_hidden_layers = {hp.n_layer}"
                )
            gname = rule.gguf.format(bid=bid)
            want = rule.shape(hp)
            got = ckpt.info(name).shape
            if tuple(got) != want:
                keys = getattr(rule.shape, "config_keys", ())
                raise ModelFormatError(
                    f"{ckpt.info(name).file}: tensor {name!r} has shape {list(got)}, "
                    f"expected {list(want)} from config.json"
                    + (f" ({' x '.join(keys)})" if keys else "")
                )
            if rule.transform is None:
                group: int | None = 1
            else:
                group = rule.row_group(hp) if rule.row_group is not None else None
            found[gname] = PlannedTensor(gname, want, name, rule.transform, row_group=group)
            break
        else:
            if any(p.match(name) for p in consumed):
                claimed.add(name)
            elif not any(p.match(name) for p in ignored):
                unknown.append(name)
    if unknown:
        where = ckpt.info(unknown[0]).file
        raise ModelFormatError(
            f"{where}: {len(unknown)} tensor(s) not known for {arch.hf_names[0]} "
            f"(arch {arch.gguf_arch}): {', '.join(unknown[:5])}"
            + (" ..." if len(unknown) > 5 else "")
        )
    if arch.plan_hook is not None:
        arch.plan_hook(hp, ckpt, found, claimed)
    ordered: list[PlannedTensor] = []
    missing: list[str] = []
    globals_first = [r for r in arch.rules if "{bid}" not in r.gguf and "output" not in r.gguf]
    per_block = [r for r in arch.rules if "{bid}" in r.gguf]
    globals_last = [r for r in arch.rules if "{bid}" not in r.gguf and "output" in r.gguf]

    def take(rule: TensorRule, bid: int | None) -> None:
        gname = rule.gguf.format(bid=bid)
        if gname in found:
            ordered.append(found.pop(gname))
        elif rule.required and not (hp.tied and gname == "output.weight"):
            missing.append(rule.hf.format(bid=bid))

    for r in globals_first:
        take(r, None)
    if rope_scaling_kind(arch, hp) == "llama3":
        ordered.append(generated("rope_freqs.weight", llama3_rope_factors(hp)))
    if arch.extra_tensors is not None:
        ordered.extend(arch.extra_tensors(hp))
    for bid in range(hp.n_layer):
        for r in per_block:
            take(r, bid)
    for r in globals_last:
        take(r, None)
    ordered.extend(found.values())  # tensors a plan hook added (an untied head)
    if missing:
        raise ModelFormatError(
            f"checkpoint is missing {len(missing)} tensor(s) for {arch.hf_names[0]}: "
            f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
        )
    return ordered


# --- the registry -------------------------------------------------------------

_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add an architecture (keyed by each of its HF class names).

    Example:
        >>> a = get_architecture({"architectures": ["LlamaForCausalLM"]})
        >>> mine = Architecture(("MyLlamaForCausalLM",), "llama", a.rules, a.ignored)
        >>> register(mine).gguf_arch
        'llama'
    """
    for n in arch.hf_names:
        _REGISTRY[n] = arch
    return arch


def supported_architectures() -> list[str]:
    """HF class names this converter knows.

    Example:
        >>> "LlamaForCausalLM" in supported_architectures()
        True
    """
    return sorted(_REGISTRY)


def get_architecture(config: dict[str, Any], where: str = "config.json") -> Architecture:
    """The :class:`Architecture` for a config.json, or :class:`ModelFormatError`.

    Example:
        >>> get_architecture({"architectures": ["LlamaForCausalLM"]}).gguf_arch
        'llama'
    """
    names = config.get("architectures")
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        raise ModelFormatError(f"{where}: no 'architectures' list naming the model class")
    arch = _REGISTRY.get(names[0])
    if arch is None:
        raise ModelFormatError(
            f"{where}: architectures[0] {names[0]!r} is not supported "
            f"(supported: {', '.join(supported_architectures())})"
        )
    return arch


# The decoders' tables register themselves; imported last, as they use the above.
from . import decoders as _decoders  # noqa: E402,F401
