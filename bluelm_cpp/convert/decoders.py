"""The supported decoder architectures: tensor tables, keys and hooks per arch.

One table per Hugging Face class, each registered with
:func:`~bluelm_cpp.convert.architectures.register`. The GGUF names, keys and
conventions are llama.cpp's (its ``convert_hf_to_gguf.py`` and gguf-py's
tensor map), so a llama.cpp-style reader sees the model it expects:

* ``LlamaForCausalLM``, ``MistralForCausalLM`` -> ``llama`` (Q/K permuted to
  interleaved RoPE pairs; Mistral's ``sliding_window`` is written as
  ``llama.attention.sliding_window``, which this runtime honours and llama.cpp
  ignores).
* ``Qwen2ForCausalLM`` -> ``qwen2`` (q/k/v biases), ``Qwen3ForCausalLM`` ->
  ``qwen3`` (per-head ``q_norm``/``k_norm``, ``head_dim`` from config.json).
* ``Gemma2ForCausalLM`` / ``Gemma3ForCausalLM`` -> ``gemma2`` / ``gemma3``:
  RMSNorm weights stored with gemma's ``+1`` baked in, pre and post norms,
  soft-caps, the sliding-window layers as a per-layer flag array, two RoPE
  bases, ``attention.scale`` from ``query_pre_attn_scalar``.
* ``Phi3ForCausalLM`` -> ``phi3``: fused ``attn_qkv`` and ``ffn_up`` (gate
  rows, then up rows), LongRoPE's ``rope_factors_long``/``_short`` and its
  attention factor.
* ``BlueLMForCausalLM`` -> ``llama``: the embedding LayerNorm
  (``use_stable_embedding``) is folded into ``token_embd`` (it acts on each
  token's row alone, so LN(E)[t] is exact), ``ntkmixed`` RoPE becomes
  ``rope_freqs.weight``, and the ``[|Human|]:...[|AI|]:`` chat template is
  written when the tokenizer has none.

Example:
    >>> from bluelm_cpp.convert.architectures import get_architecture
    >>> get_architecture({"architectures": ["Gemma3ForCausalLM"]}).gguf_arch
    'gemma3'
"""

from __future__ import annotations

import math
from typing import Any

import gguf
import numpy as np

from ..errors import ModelFormatError
from .architectures import (
    Architecture,
    HParams,
    PlannedTensor,
    TensorRule,
    _head_rows,
    _permute_k,
    _permute_q,
    generated,
    register,
    rope_scaling_kind,
)
from .safetensors_reader import Checkpoint

# --- shapes (HF order: rows, cols) --------------------------------------------


def _vocab_embd(hp: HParams) -> tuple[int, ...]:
    return (hp.n_vocab, hp.n_embd)


def _embd(hp: HParams) -> tuple[int, ...]:
    return (hp.n_embd,)


def _head(hp: HParams) -> tuple[int, ...]:
    return (hp.head_dim,)


def _q(hp: HParams) -> tuple[int, ...]:
    return (hp.n_head * hp.head_dim, hp.n_embd)


def _kv(hp: HParams) -> tuple[int, ...]:
    return (hp.n_head_kv * hp.head_dim, hp.n_embd)


def _qkv(hp: HParams) -> tuple[int, ...]:
    return ((hp.n_head + 2 * hp.n_head_kv) * hp.head_dim, hp.n_embd)


def _q_b(hp: HParams) -> tuple[int, ...]:
    return (hp.n_head * hp.head_dim,)


def _kv_b(hp: HParams) -> tuple[int, ...]:
    return (hp.n_head_kv * hp.head_dim,)


def _o(hp: HParams) -> tuple[int, ...]:
    return (hp.n_embd, hp.n_head * hp.head_dim)


def _ff_in(hp: HParams) -> tuple[int, ...]:
    return (hp.n_ff, hp.n_embd)


def _gate_up(hp: HParams) -> tuple[int, ...]:
    return (2 * hp.n_ff, hp.n_embd)


def _ff_out(hp: HParams) -> tuple[int, ...]:
    return (hp.n_embd, hp.n_ff)


# The config.json keys behind each shape, for errors that say which value disagrees.
for _fn, _keys in (
    (_vocab_embd, ("vocab_size", "hidden_size")),
    (_embd, ("hidden_size",)),
    (_head, ("head_dim",)),
    (_q, ("num_attention_heads * head_dim", "hidden_size")),
    (_kv, ("num_key_value_heads * head_dim", "hidden_size")),
    (_qkv, ("(num_attention_heads + 2 * num_key_value_heads) * head_dim", "hidden_size")),
    (_q_b, ("num_attention_heads * head_dim",)),
    (_kv_b, ("num_key_value_heads * head_dim",)),
    (_o, ("hidden_size", "num_attention_heads * head_dim")),
    (_ff_in, ("intermediate_size", "hidden_size")),
    (_gate_up, ("2 * intermediate_size", "hidden_size")),
    (_ff_out, ("hidden_size", "intermediate_size")),
):
    _fn.config_keys = _keys  # type: ignore[attr-defined]


def _plus_one(w: np.ndarray, hp: HParams) -> np.ndarray:
    # gemma's RMSNorm multiplies by (1 + weight); llama.cpp's files store 1 + weight
    return w.astype(np.float32) + np.float32(1.0)


def _one_row(hp: HParams) -> int:
    return 1


_L = "model.layers.{bid}."
_IGNORED = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)


def _llama_rules(*, permute: bool, qkv_bias_required: bool) -> tuple[TensorRule, ...]:
    """The LLaMA-family layer table; Qwen2 differs only in biases and RoPE layout."""
    pq = _permute_q if permute else None
    pk = _permute_k if permute else None
    hr = _head_rows if permute else None
    b = qkv_bias_required
    return (
        TensorRule("model.embed_tokens.weight", "token_embd.weight", _vocab_embd),
        TensorRule(_L + "input_layernorm.weight", "blk.{bid}.attn_norm.weight", _embd),
        TensorRule(_L + "self_attn.q_proj.weight", "blk.{bid}.attn_q.weight", _q, pq, True, hr),
        TensorRule(_L + "self_attn.q_proj.bias", "blk.{bid}.attn_q.bias", _q_b, pq, b, hr),
        TensorRule(_L + "self_attn.k_proj.weight", "blk.{bid}.attn_k.weight", _kv, pk, True, hr),
        TensorRule(_L + "self_attn.k_proj.bias", "blk.{bid}.attn_k.bias", _kv_b, pk, b, hr),
        TensorRule(_L + "self_attn.v_proj.weight", "blk.{bid}.attn_v.weight", _kv),
        TensorRule(_L + "self_attn.v_proj.bias", "blk.{bid}.attn_v.bias", _kv_b, None, b),
        TensorRule(_L + "self_attn.o_proj.weight", "blk.{bid}.attn_output.weight", _o),
        TensorRule(_L + "post_attention_layernorm.weight", "blk.{bid}.ffn_norm.weight", _embd),
        TensorRule(_L + "mlp.gate_proj.weight", "blk.{bid}.ffn_gate.weight", _ff_in),
        TensorRule(_L + "mlp.up_proj.weight", "blk.{bid}.ffn_up.weight", _ff_in),
        TensorRule(_L + "mlp.down_proj.weight", "blk.{bid}.ffn_down.weight", _ff_out),
        TensorRule("model.norm.weight", "output_norm.weight", _embd),
        TensorRule("lm_head.weight", "output.weight", _vocab_embd),
    )


def _qk_norm_rules(transform: Any = None) -> tuple[TensorRule, ...]:
    return (
        TensorRule(
            _L + "self_attn.q_norm.weight", "blk.{bid}.attn_q_norm.weight", _head, transform
        ),
        TensorRule(
            _L + "self_attn.k_norm.weight", "blk.{bid}.attn_k_norm.weight", _head, transform
        ),
    )


def _gemma_rules(qk_norm: bool) -> tuple[TensorRule, ...]:
    """Gemma 2/3: four RMSNorms per layer, every norm weight stored as 1 + w."""
    one, g = _plus_one, _one_row
    rules = (
        TensorRule("model.embed_tokens.weight", "token_embd.weight", _vocab_embd),
        TensorRule(
            _L + "input_layernorm.weight", "blk.{bid}.attn_norm.weight", _embd, one, True, g
        ),
        TensorRule(_L + "self_attn.q_proj.weight", "blk.{bid}.attn_q.weight", _q),
        TensorRule(_L + "self_attn.k_proj.weight", "blk.{bid}.attn_k.weight", _kv),
        TensorRule(_L + "self_attn.v_proj.weight", "blk.{bid}.attn_v.weight", _kv),
        TensorRule(_L + "self_attn.o_proj.weight", "blk.{bid}.attn_output.weight", _o),
        TensorRule(
            _L + "post_attention_layernorm.weight",
            "blk.{bid}.post_attention_norm.weight",
            _embd,
            one,
            True,
            g,
        ),
        TensorRule(
            _L + "pre_feedforward_layernorm.weight",
            "blk.{bid}.ffn_norm.weight",
            _embd,
            one,
            True,
            g,
        ),
        TensorRule(
            _L + "post_feedforward_layernorm.weight",
            "blk.{bid}.post_ffw_norm.weight",
            _embd,
            one,
            True,
            g,
        ),
        TensorRule(_L + "mlp.gate_proj.weight", "blk.{bid}.ffn_gate.weight", _ff_in),
        TensorRule(_L + "mlp.up_proj.weight", "blk.{bid}.ffn_up.weight", _ff_in),
        TensorRule(_L + "mlp.down_proj.weight", "blk.{bid}.ffn_down.weight", _ff_out),
        TensorRule("model.norm.weight", "output_norm.weight", _embd, one, True, g),
    )
    return rules + (_qk_norm_rules(one) if qk_norm else ())


def _phi3_rules() -> tuple[TensorRule, ...]:
    return (
        TensorRule("model.embed_tokens.weight", "token_embd.weight", _vocab_embd),
        TensorRule(_L + "input_layernorm.weight", "blk.{bid}.attn_norm.weight", _embd),
        TensorRule(_L + "self_attn.qkv_proj.weight", "blk.{bid}.attn_qkv.weight", _qkv),
        TensorRule(_L + "self_attn.o_proj.weight", "blk.{bid}.attn_output.weight", _o),
        TensorRule(_L + "post_attention_layernorm.weight", "blk.{bid}.ffn_norm.weight", _embd),
        TensorRule(_L + "mlp.gate_up_proj.weight", "blk.{bid}.ffn_up.weight", _gate_up),
        TensorRule(_L + "mlp.down_proj.weight", "blk.{bid}.ffn_down.weight", _ff_out),
        TensorRule("model.norm.weight", "output_norm.weight", _embd),
        TensorRule("lm_head.weight", "output.weight", _vocab_embd),
    )


# --- keys -----------------------------------------------------------------------


def _swa_layers(hp: HParams, default_pattern: int) -> list[bool]:
    """Which layers slide: config.json's ``layer_types``, else the arch's period."""
    types = hp.config.get("layer_types")
    if isinstance(types, list) and len(types) == hp.n_layer:
        return [t == "sliding_attention" for t in types]
    period = int(hp.config.get("sliding_window_pattern") or default_pattern)
    return [period == 0 or i % period < period - 1 for i in range(hp.n_layer)]


def _window(hp: HParams, key: str = "sliding_window") -> int | None:
    v = hp.config.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ModelFormatError(f"config.json: {key} must be a non-negative integer, got {v!r}")
    return v


def _mistral_keys(w: gguf.GGUFWriter, hp: HParams) -> None:
    if (n := _window(hp)) is not None:
        w.add_sliding_window(n)  # every layer (transformers' Mistral); llama.cpp ignores it


def _qwen_keys(w: gguf.GGUFWriter, hp: HParams) -> None:
    n = _window(hp)
    if hp.config.get("use_sliding_window") and n:
        w.add_sliding_window(n)
        w.add_sliding_window_pattern(_swa_layers(hp, 0))


def _gemma_keys(
    w: gguf.GGUFWriter,
    hp: HParams,
    period: int,
    default_window: int | None,
    final_default: float | None,
) -> None:
    scalar = hp.config.get("query_pre_attn_scalar") or hp.head_dim
    w.add_attention_scale(float(scalar) ** -0.5)
    n = _window(hp)
    n = default_window if n is None else n
    if n:
        w.add_sliding_window(n)
        w.add_sliding_window_pattern(_swa_layers(hp, period))
    if hp.rope_theta_swa is not None:
        w.add_rope_freq_base_swa(hp.rope_theta_swa)
    final = hp.config.get("final_logit_softcapping", final_default)
    if final is not None or final_default is not None:  # 0: none
        w.add_final_logit_softcapping(float(final or 0.0))


def _gemma2_keys(w: gguf.GGUFWriter, hp: HParams) -> None:
    _gemma_keys(w, hp, 2, 4096, 0.0)  # gemma2 always gets the key, as llama.cpp's converter
    w.add_attn_logit_softcapping(float(hp.config.get("attn_logit_softcapping") or 0.0))


def _gemma3_keys(w: gguf.GGUFWriter, hp: HParams) -> None:
    if hp.config.get("attn_logit_softcapping") is not None:
        raise ModelFormatError("config.json: attn_logit_softcapping is not supported for Gemma 3")
    _gemma_keys(w, hp, 6, None, None)


# --- Phi-3: LongRoPE ------------------------------------------------------------


def _phi3_rope(hp: HParams) -> tuple[int, float | None, dict[str, Any]]:
    """(original context, attention factor or None without LongRoPE, the scaling dict)."""
    s = hp.rope_scaling or {}
    orig = s.get(
        "original_max_position_embeddings", hp.config.get("original_max_position_embeddings")
    )
    orig = int(orig or hp.n_ctx)
    if rope_scaling_kind(PHI3, hp) != "longrope":
        return orig, None, s
    factor = s.get("factor") or hp.n_ctx / orig
    attn = s.get("attention_factor")
    if attn is None:  # transformers' default (and llama.cpp converter's)
        attn = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1.0 else 1.0
    return orig, float(attn), s


def _phi3_keys(w: gguf.GGUFWriter, hp: HParams) -> None:
    orig, attn, _ = _phi3_rope(hp)
    w.add_rope_scaling_orig_ctx_len(orig)
    if attn is not None:
        w.add_rope_scaling_attn_factors(attn)
    w.add_sliding_window(_window(hp) or 0)  # 0: none (as llama.cpp's converter)


def _phi3_tensors(hp: HParams) -> list[PlannedTensor]:
    _, attn, s = _phi3_rope(hp)
    if attn is None:
        return []
    out = []
    for kind in ("long", "short"):
        f = s.get(f"{kind}_factor")
        if not isinstance(f, list) or len(f) != hp.rot_dims // 2:
            n = hp.rot_dims // 2
            raise ModelFormatError(f"config.json: rope_scaling {kind}_factor must be {n} numbers")
        out.append(generated(f"rope_factors_{kind}.weight", np.asarray(f, dtype=np.float32)))
    return out


# --- BlueLM ---------------------------------------------------------------------

#: BlueLM's chat format, as vivo's cli_demo.py / cli_demo_tool.py build it
#: (github.com/vivo-ai-lab/BlueLM): BOS, then ``[|SYSTEM|]:``, ``[|Human|]:``,
#: ``[|AI|]:`` (answers end with ``</s>``) and ``[|Function|]:`` turns.
BLUELM_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '[|SYSTEM|]:' + message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '[|Human|]:' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '[|AI|]:' + message['content'] + eos_token }}"
    "{% elif message['role'] in ['tool', 'function', 'observation'] %}"
    "{{ '[|Function|]:' + message['content'] }}"
    "{% else %}{{ raise_exception('unknown role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '[|AI|]:' }}{% endif %}"
)


def ntkmixed_rope_factors(hp: HParams) -> np.ndarray:
    """Per-frequency divisors of BlueLM's ``ntkmixed`` RoPE (``rope_freqs.weight``).

    vivo's ``NTKMixedScalingRotaryEmbedding`` divides inverse frequency k
    (k = 1 .. d/2) by ``exp(a * k**power)`` with ``a = ln(factor) / (d/2)**power``.

    Example:
        >>> from bluelm_cpp.convert.architectures import read_hparams
        >>> hp = read_hparams({"vocab_size": 8, "hidden_size": 64, "num_hidden_layers": 1,
        ...     "num_attention_heads": 1, "intermediate_size": 8,
        ...     "rope_scaling": {"type": "ntkmixed", "factor": 16.0, "power": 0.3}})
        >>> f = ntkmixed_rope_factors(hp)
        >>> f.shape, round(float(f[-1]), 3)
        ((32,), 16.0)
    """
    s = hp.rope_scaling or {}
    power = s.get("power")
    if not isinstance(power, (int, float)) or isinstance(power, bool) or not power > 0:
        raise ModelFormatError(
            f"config.json: rope_scaling 'ntkmixed' needs a positive 'power', got {s!r}"
        )
    half = hp.rot_dims // 2
    a = math.log(float(s["factor"])) / half ** float(power)
    k = np.arange(1, half + 1, dtype=np.float64)
    return np.exp(a * k ** float(power)).astype(np.float32)


def _bluelm_tensors(hp: HParams) -> list[PlannedTensor]:
    if rope_scaling_kind(BLUELM, hp) != "ntkmixed":
        return []
    return [generated("rope_freqs.weight", ntkmixed_rope_factors(hp))]


_EMBD_LN = ("model.embed_layer_norm.weight", "model.embed_layer_norm.bias")


def layer_norm_rows(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm of each row (in float64, rounded once to float32).

    Example:
        >>> y = layer_norm_rows(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2), 0.0)
        >>> y.tolist()
        [[-1.0, 1.0]]
    """
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=1, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + eps) * weight.astype(np.float64) + bias.astype(np.float64)
    return y.astype(np.float32)


def _bluelm_fold(
    hp: HParams, ckpt: Checkpoint, found: dict[str, PlannedTensor], claimed: set[str]
) -> None:
    stable = hp.config.get("use_stable_embedding", True)  # BlueLMConfig's default
    have = [n for n in _EMBD_LN if n in claimed]
    if not stable:
        if have:
            raise ModelFormatError(
                f"config.json: use_stable_embedding is false, but the checkpoint has {have[0]}"
            )
        return
    if len(have) != len(_EMBD_LN):
        missing = [n for n in _EMBD_LN if n not in claimed]
        raise ModelFormatError(
            f"config.json: use_stable_embedding is true, but the checkpoint has no {missing[0]}"
        )
    for n in _EMBD_LN:
        if tuple(ckpt.info(n).shape) != (hp.n_embd,):
            raise ModelFormatError(
                f"{ckpt.info(n).file}: tensor {n!r} has shape {list(ckpt.info(n).shape)}, "
                f"expected [{hp.n_embd}] from config.json"
            )
    emb = found.get("token_embd.weight")
    if emb is None:
        return  # reported as missing by plan_tensors
    params: dict[str, np.ndarray] = {}

    def fold(rows: np.ndarray, hp: HParams) -> np.ndarray:
        if not params:
            params.update({n: ckpt.load(n) for n in _EMBD_LN})
        return layer_norm_rows(rows, params[_EMBD_LN[0]], params[_EMBD_LN[1]], hp.rms_eps)

    found["token_embd.weight"] = PlannedTensor(
        emb.gguf_name, emb.shape, emb.hf_name, fold, row_group=1
    )
    if hp.tied:  # the head multiplies by the raw embedding: store it apart
        found["output.weight"] = PlannedTensor("output.weight", emb.shape, emb.hf_name, row_group=1)


# --- the registrations -------------------------------------------------------------

LLAMA = register(
    Architecture(
        hf_names=("LlamaForCausalLM",),
        gguf_arch="llama",
        rules=_llama_rules(permute=True, qkv_bias_required=False),
        ignored=_IGNORED,
        notes="Q/K permuted to interleaved RoPE pairs; biases optional (attention_bias)",
    )
)

MISTRAL = register(
    Architecture(
        hf_names=("MistralForCausalLM",),
        gguf_arch="llama",
        rules=_llama_rules(permute=True, qkv_bias_required=False),
        ignored=_IGNORED,
        extra_keys=_mistral_keys,
        notes="as LLaMA; sliding_window written as llama.attention.sliding_window",
    )
)

QWEN2 = register(
    Architecture(
        hf_names=("Qwen2ForCausalLM",),
        gguf_arch="qwen2",
        rules=_llama_rules(permute=False, qkv_bias_required=True),
        ignored=_IGNORED,
        extra_keys=_qwen_keys,
        notes="q/k/v biases; NeoX RoPE, so no permutation",
    )
)

QWEN3 = register(
    Architecture(
        hf_names=("Qwen3ForCausalLM",),
        gguf_arch="qwen3",
        rules=_llama_rules(permute=False, qkv_bias_required=False) + _qk_norm_rules(),
        ignored=_IGNORED,
        extra_keys=_qwen_keys,
        notes="per-head RMSNorm of Q and K; head_dim from config.json",
    )
)

_GELU = ("gelu_pytorch_tanh", "gelu_tanh", "gelu_new")

GEMMA2 = register(
    Architecture(
        hf_names=("Gemma2ForCausalLM",),
        gguf_arch="gemma2",
        rules=_gemma_rules(qk_norm=False),
        ignored=_IGNORED + (r"lm_head\.weight",),  # always the embedding
        extra_keys=_gemma2_keys,
        activations=_GELU,
        rope_types=(),
        spm_space_prefix=False,
        notes="norms stored as 1 + w; soft-caps; even layers slide",
    )
)

GEMMA3 = register(
    Architecture(
        hf_names=("Gemma3ForCausalLM",),
        gguf_arch="gemma3",
        rules=_gemma_rules(qk_norm=True),
        ignored=_IGNORED + (r"lm_head\.weight",),
        extra_keys=_gemma3_keys,
        activations=_GELU,
        rope_types=("linear",),
        spm_space_prefix=False,
        notes="as gemma2 plus Q/K norms, two RoPE bases, 5 of 6 layers slide",
    )
)

PHI3 = register(
    Architecture(
        hf_names=("Phi3ForCausalLM",),
        gguf_arch="phi3",
        rules=_phi3_rules(),
        ignored=_IGNORED,
        extra_keys=_phi3_keys,
        rope_types=("longrope",),
        extra_tensors=_phi3_tensors,
        notes="fused attn_qkv and gate+up ffn_up; LongRoPE factors",
    )
)

BLUELM = register(
    Architecture(
        hf_names=("BlueLMForCausalLM",),
        gguf_arch="llama",
        rules=_llama_rules(permute=True, qkv_bias_required=False),
        ignored=_IGNORED,
        rope_types=("ntkmixed",),
        extra_tensors=_bluelm_tensors,
        consumes=(r"model\.embed_layer_norm\.(weight|bias)",),
        plan_hook=_bluelm_fold,
        default_chat_template=BLUELM_CHAT_TEMPLATE,
        notes="embedding LayerNorm folded into token_embd; ntkmixed RoPE as rope_freqs",
    )
)
