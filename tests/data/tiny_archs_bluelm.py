"""BlueLM for make_tiny_archs.py: vivo's config class and graph as remote code.

See make_tiny_archs.py for why the model class is an adapter over transformers'
LLaMA modules and how its ntkmixed RoPE is checked against vivo's own code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tiny_archs_common import BLUELM_REPO, INIT_STD, SEEDS, common, randomise, spm_model

# --- BlueLM ---------------------------------------------------------------------------------

_BLUELM_MODELING = '''
"""BlueLM on transformers' LLaMA modules: vivo's graph (github.com/vivo-ai-lab/BlueLM,
example/vllm/vllm/model_executor/models/bluelm.py): token embedding, then
nn.LayerNorm(hidden, eps=rms_norm_eps), then LLaMA layers; ntkmixed RoPE as vivo's
NTKMixedScalingRotaryEmbedding computes it. Written by tests/data/make_tiny_archs.py
for recording references only."""
import math

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from .configuration_bluelm import BlueLMConfig


def ntkmixed_inv_freq(dim, base, factor, power):
    # vivo: inv_freq / exp(a * arange(1, dim/2 + 1) ** power),
    # a = log(int(factor)) / (dim/2) ** power
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    a = math.log(int(factor)) / ((dim / 2) ** power)
    return inv_freq / torch.exp(a * torch.arange(1, dim / 2 + 1).float() ** power)


class BlueLMForCausalLM(LlamaForCausalLM):
    config_class = BlueLMConfig

    def __init__(self, config):
        keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                "rms_norm_eps", "tie_word_embeddings", "pad_token_id", "bos_token_id",
                "eos_token_id"]
        lc = LlamaConfig(**{k: getattr(config, k) for k in keys},
                         rope_theta=getattr(config, "rope_theta", 10000.0),
                         hidden_act=config.hidden_act, attention_bias=False, mlp_bias=False)
        lc._attn_implementation = "eager"
        super().__init__(lc)
        self.bluelm_config = config
        self.model.embed_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.model.embed_tokens.register_forward_hook(
            lambda mod, args, out: self.model.embed_layer_norm(out))
        s = config.rope_scaling  # transformers 5 fills in {"rope_type": "default", ...}
        kind = (s or {}).get("type", (s or {}).get("rope_type", "default"))
        if kind != "default":
            assert kind == "ntkmixed", s
            head_dim = config.hidden_size // config.num_attention_heads
            base = getattr(config, "rope_theta", 10000.0)
            self.model.rotary_emb = NTKMixedRotary(head_dim, base, s["factor"], s["power"])


class NTKMixedRotary(nn.Module):
    """cos/sin as LlamaRotaryEmbedding returns them, from vivo's frequencies (computed
    in forward: weight initialisation resets buffers)."""

    def __init__(self, dim, base, factor, power):
        super().__init__()
        self.args = (dim, base, factor, power)

    def forward(self, x, position_ids):
        f = ntkmixed_inv_freq(*self.args).to(x.device)
        freqs = position_ids[:, :, None].float() * f[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)
'''


def vivo_file(path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(BLUELM_REPO), "show", f"HEAD:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def check_ntkmixed_against_vivo(
    remote: Path, dim: int, base: float, factor: float, power: float, max_pos: int
) -> None:
    """vivo's NTKMixedScalingRotaryEmbedding (its own code, on CPU) gives the same cos/sin."""
    import types

    import torch

    src = vivo_file("example/vllm/vllm/model_executor/layers/rotary_embedding.py")
    src = src.replace('device="cuda"', 'device="cpu"').replace(
        "from vllm import pos_encoding_ops", ""
    )
    sys.modules.setdefault("vllm", types.ModuleType("vllm"))
    ns: dict[str, Any] = {"__name__": "vivo_rotary"}
    exec(compile(src, "vivo rotary_embedding.py", "exec"), ns)
    vivo = ns["NTKMixedScalingRotaryEmbedding"](dim, dim, max_pos, base, True, factor, power)
    spec: dict[str, Any] = {"__name__": "adapter", "BlueLMConfig": object}
    exec(
        compile(
            _BLUELM_MODELING.replace("from .configuration_bluelm import BlueLMConfig", ""),
            "adapter",
            "exec",
        ),
        spec,
    )
    f = spec["ntkmixed_inv_freq"](dim, base, factor, power)
    t = torch.arange(max_pos * int(factor), dtype=torch.float)
    freqs = torch.einsum("i,j -> ij", t, f)
    mine = torch.cat((freqs.cos(), freqs.sin()), dim=-1)
    if not torch.equal(mine, vivo.cos_sin_cache):
        raise RuntimeError("the adapter's ntkmixed frequencies differ from vivo's code")
    print(f"ntkmixed: adapter == vivo's NTKMixedScalingRotaryEmbedding over {len(t)} positions")


def build_bluelm(name: str, tmp: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig

    (tmp / "configuration_bluelm.py").write_text(
        vivo_file("example/vllm/vllm/transformers_utils/configs/bluelm.py")
    )
    (tmp / "modeling_bluelm.py").write_text(textwrap.dedent(_BLUELM_MODELING))
    n_tok = spm_model(tmp, gemma=False, control=[], user=[], size=400)
    scaling = {"type": "ntkmixed", "factor": 16.0, "power": 0.3} if name == "bluelm_32k" else None
    config = {
        "architectures": ["BlueLMForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_bluelm.BlueLMConfig",
            "AutoModelForCausalLM": "modeling_bluelm.BlueLMForCausalLM",
        },
        "model_type": "BlueLM",
        "vocab_size": n_tok + 16,  # more rows than the tokenizer has pieces, as the Hub's 100096
        **{k: v for k, v in common().items() if k != "initializer_range"},
        "num_key_value_heads": 4,
        "num_hidden_layers": 2,
        "max_position_embeddings": 2048,
        "hidden_act": "silu",
        "initializer_range": INIT_STD,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 3,
        "tie_word_embeddings": False,
        "use_stable_embedding": True,
        "rope_theta": 10000.0,
        "rope_scaling": scaling,
        "torch_dtype": "bfloat16",
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if scaling:
        check_ntkmixed_against_vivo(tmp, 16, 10000.0, 16.0, 0.3, 2048)
    from transformers import AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(tmp, trust_remote_code=True)
    torch.manual_seed(SEEDS[name])
    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True).to(torch.float32).eval()
    randomise(model, 7)
    with torch.no_grad():
        model.model.embed_layer_norm.weight.copy_(
            (1 + 0.2 * torch.randn(64)).to(torch.bfloat16).float()
        )
        model.model.embed_layer_norm.bias.copy_((0.3 * torch.randn(64)).to(torch.bfloat16).float())
    # the Hub layout: two bf16 pytorch_model shards and their index
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    names = list(state)
    weight_map = {}
    for s in range(2):
        fname = f"pytorch_model-{s + 1:05d}-of-00002.bin"
        part = {n: state[n] for n in names[s::2]}
        torch.save(part, tmp / fname)
        weight_map.update({n: fname for n in part})
    total = sum(v.numel() * 2 for v in state.values())
    (tmp / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
    )
    (tmp / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BlueLMTokenizer",
                "auto_map": {"AutoTokenizer": ["tokenization_bluelm.BlueLMTokenizer", None]},
                "add_bos_token": True,
                "add_eos_token": False,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<unk>",
            },
            indent=2,
        )
        + "\n"
    )
    from bluelm_cpp.convert.decoders import BLUELM_CHAT_TEMPLATE

    return {
        "chat": dict(system=True, tools=False, extra={}),
        "pre": None,
        "hf_tokenizer": False,
        "template": BLUELM_CHAT_TEMPLATE,
        "n_tokens": n_tok,
    }
