"""Tiny random checkpoints of each supported decoder arch, and what others make of them.

For qwen3, gemma2, gemma3, phi3, mistral and BlueLM (2K and 32K) this writes a
Hugging Face folder ``tests/data/tiny_<name>/`` built by transformers (BlueLM:
vivo's code, see below), with a tokenizer and the model family's real chat
template, and records, for it and for the existing ``tiny_llama`` /
``tiny_qwen2``:

* ``arch_reference.npz``: a prompt longer than the sliding window, transformers'
  float32 logits at every position, and its 16 greedy tokens (EOS not
  stopping);
* ``llamacpp.f32.gguf``: the folder converted by llama.cpp's own
  ``convert_hf_to_gguf.py`` (``--outtype f32``), unchanged, where llama.cpp
  knows the arch (not BlueLM);
* ``arch_reference.json``: versions, settings, transformers' token ids for the
  test texts (``TOKENIZER_TEXTS``; BlueLM: sentencepiece's, see below) and its
  rendering of chat conversations (``apply_chat_template``: text and ids);
* ``llamacpp_greedy.json`` (``--llamacpp-greedy``, needs llama-cpp-python):
  llama.cpp's 16 greedy tokens on this project's own F32 conversion, with that
  file's SHA-256 so the test knows the recording is for the same bytes.

Weights are saved in bfloat16 (the references use them widened to float32),
so the folders stay small and BlueLM's look like the Hub's.

BlueLM: the Hub's ``modeling_bluelm.py`` is not reachable from here; the
public code is vivo's port in github.com/vivo-ai-lab/BlueLM
(``example/vllm/vllm/transformers_utils/configs/bluelm.py``, the HF config
class, used verbatim as ``configuration_bluelm.py``; ``.../models/bluelm.py``
and ``.../layers/rotary_embedding.py``, the model). The remote code written to
a temporary folder (never into the repo) is that config class plus a model
class that runs vivo's graph on transformers' LLaMA modules: the token
embedding followed by ``nn.LayerNorm(hidden, eps=rms_norm_eps)`` (vivo's
``BlueLMModel.forward``) and, for ``ntkmixed``, inverse frequencies checked
here, bit for bit, against the cos/sin cache of vivo's own
``NTKMixedScalingRotaryEmbedding`` (executed on CPU). It is loaded with
``trust_remote_code=True`` from that folder; the checkpoint is saved as the
Hub's are (bf16 ``pytorch_model-0000N-of-00002.bin`` shards with an index,
``tokenizer.model``, a config naming the remote classes, ``vocab_size``
larger than the tokenizer). BlueLM's tokenizer class is remote code too, a
SentencePiece tokenizer; its ids are recorded from ``sentencepiece`` itself.

llama.cpp's converter fingerprints a BPE pre-tokenizer by hashing token ids of
a fixed text; a vocabulary trained here has no known hash, so for BPE folders
the recording answers that one question with the pre-tokenizer the folder's
``tokenizer.json`` declares (qwen2 / gpt-2) and leaves the converter otherwise
untouched.

    python tests/data/make_tiny_archs.py [--only qwen3 gemma2 ...] [--llamacpp-greedy]

Environment: LLAMA_CPP_DIR (default: the llama-cpp-python 0.3.36 sdist's
vendor/llama.cpp in /tmp/llsrc), BLUELM_REPO (a git checkout of
vivo-ai-lab/BlueLM; its files are read with ``git show HEAD:...``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent
LLAMA_CPP = Path(
    os.environ.get("LLAMA_CPP_DIR", "/tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp")
)
BLUELM_REPO = Path(os.environ.get("BLUELM_REPO", "/work/.mirror/vivo-ai-lab+BlueLM/repo"))
TEMPLATES = LLAMA_CPP / "models" / "templates"
VOCAB = 512
PROMPT_LEN = 80  # longer than every sliding window below (32)
WINDOW = 32
N_GREEDY = 16
INIT_STD = 0.08
TOKENIZER_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  two  spaces\n\nand\ttabs ",
    "I'm here, you're there, don't",
    "Numbers 12345 and 3.14",
    "Привет, мир! 你好 🙂",
    "def f(x):\n    return x * 2\n",
]
DATE = "26 Jul 2024"  # Llama 3.2's template prints today's date unless given one

# The Gemma 3 instruction models' chat template (google/gemma-3-*-it tokenizer_config.json).
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def conversations(system: bool, tools: bool) -> list[dict[str, Any]]:
    """The chat cases: (messages, tools, template kwargs, add_generation_prompt)."""
    user = {"role": "user", "content": "What is the capital of France?"}
    answer = {"role": "assistant", "content": "The capital of France is Paris."}
    follow = {"role": "user", "content": "  And of Italy?  "}
    cases: list[dict[str, Any]] = [
        {"messages": [user], "gen": True},
        {"messages": [user, answer, follow], "gen": True},
        {"messages": [user, answer], "gen": False},
    ]
    if system:
        sys_msg = {"role": "system", "content": "You are a terse geography tutor."}
        cases.append({"messages": [sys_msg, user, answer, follow], "gen": True})
    if tools:
        cases.append({"messages": [user], "tools": [WEATHER_TOOL], "gen": True})
    return cases


# --- tokenizers -------------------------------------------------------------------


def bpe_tokenizer(special: list[str], qwen_split: bool) -> Any:
    """A byte-level BPE trained on make_tiny_transformers' corpus (Qwen2's split regex)."""
    sys.path.insert(0, str(DATA))
    from make_tiny_transformers import training_text
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from bluelm_cpp.convert.tokenizer_keys import QWEN2_SPLIT

    tok = Tokenizer(models.BPE())
    if qwen_split:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    return tok


def spm_model(out: Path, *, gemma: bool, control: list[str], user: list[str], size: int) -> int:
    """A SentencePiece BPE with byte fallback: Llama's id layout, or Gemma's (no space prefix)."""
    import sentencepiece as spm

    sys.path.insert(0, str(DATA))
    from make_tiny_transformers import training_text

    ids: dict[str, Any] = (
        dict(
            pad_id=0,
            eos_id=1,
            bos_id=2,
            unk_id=3,
            pad_piece="<pad>",
            eos_piece="<eos>",
            bos_piece="<bos>",
        )
        if gemma
        else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    )
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text()),
        model_prefix=str(out / "tokenizer"),
        vocab_size=size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        add_dummy_prefix=not gemma,
        remove_extra_whitespaces=False,  # as Llama's, Mistral's and Gemma's models
        normalization_rule_name="identity",
        control_symbols=control,
        user_defined_symbols=user,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
        **ids,
    )
    (out / "tokenizer.vocab").unlink()
    return spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model")).vocab_size()


# --- models -------------------------------------------------------------------------


def common() -> dict[str, Any]:
    return {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-6,
        "initializer_range": INIT_STD,
    }


def randomise(model: Any, seed: int) -> None:
    """Norm weights and biases away from their ones/zeros defaults; Q and K scaled
    up so attention is sharp and positions (RoPE, windows) move the logits; all
    bf16-exact (the stored type)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    gemma = "Gemma" in type(model).__name__  # gemma's norms are (1 + w)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                p.copy_((0.5 if gemma else 3.0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("norm.weight"):
                p.copy_((0.0 if gemma else 1.0) + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("q_proj.weight", "k_proj.weight", "qkv_proj.weight")):
                p.mul_(4.0)
            elif name.endswith("o_proj.weight") and "BlueLM" in type(model).__name__:
                p.mul_(4.0)  # next to the LayerNorm'd embedding, attention needs weight
        for p in model.parameters():  # the weights as they are stored (bf16)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


SEEDS = {
    "qwen3": 31,
    "gemma2": 32,
    "gemma3": 33,
    "phi3": 34,
    "mistral": 35,
    "bluelm_2k": 36,
    "bluelm_32k": 37,
    "llama": 38,
    "qwen2": 39,
}


def build(name: str, tmp: Path) -> dict[str, Any]:
    """Create the folder in ``tmp``; return what the recording needs to know."""
    import torch
    import transformers as T

    c = common()
    torch.manual_seed(SEEDS[name])  # before any module is built
    if name == "qwen3":
        special = [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<think>",
            "</think>",
            "<tool_call>",
            "</tool_call>",
        ]
        cfg = T.Qwen3Config(
            **c,
            vocab_size=VOCAB,
            head_dim=32,
            num_hidden_layers=2,
            tie_word_embeddings=True,
            rope_theta=1e6,
            bos_token_id=None,
            eos_token_id=2,
            attn_implementation="eager",
        )
        model = T.Qwen3ForCausalLM(cfg)
        tok = T.PreTrainedTokenizerFast(
            tokenizer_object=bpe_tokenizer(special, True),
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
        )
        template, pre = (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text(), "qwen2"
        n_tok = VOCAB
        chat = dict(system=True, tools=True, extra={"enable_thinking": False})
    elif name in ("gemma2", "gemma3"):
        n_tok = spm_model(
            tmp, gemma=True, control=[], user=["<start_of_turn>", "<end_of_turn>"], size=VOCAB
        )
        if name == "gemma2":
            cfg = T.Gemma2Config(
                **c,
                vocab_size=n_tok,
                head_dim=16,
                num_hidden_layers=2,
                sliding_window=WINDOW,
                query_pre_attn_scalar=16,
                attn_logit_softcapping=1.5,
                final_logit_softcapping=2.0,
                attn_implementation="eager",
            )
            model = T.Gemma2ForCausalLM(cfg)
            template = (TEMPLATES / "google-gemma-2-2b-it.jinja").read_text()
            chat = dict(system=False, tools=False, extra={})
        else:
            rope = {
                "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
            }
            cfg = T.Gemma3TextConfig(
                **c,
                vocab_size=n_tok,
                head_dim=16,
                num_hidden_layers=6,
                sliding_window=WINDOW,
                query_pre_attn_scalar=16,
                rope_parameters=rope,
                attn_implementation="eager",
            )
            model = T.Gemma3ForCausalLM(cfg)
            template = GEMMA3_TEMPLATE
            chat = dict(system=True, tools=False, extra={})
        tok = T.GemmaTokenizer.from_pretrained(tmp)
        pre = None
    elif name == "phi3":
        n_tok = spm_model(tmp, gemma=False, control=[], user=[], size=400)
        added = ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]
        rope = {
            "rope_type": "longrope",
            "rope_theta": 1e4,
            "partial_rotary_factor": 0.5,
            "long_factor": [1.0, 1.5, 2.0, 3.0],
            "short_factor": [1.0, 1.1, 1.2, 1.3],
            "original_max_position_embeddings": 16,
        }
        cfg = T.Phi3Config(
            **{**c, "max_position_embeddings": 256},
            vocab_size=n_tok + 16,
            num_hidden_layers=2,
            original_max_position_embeddings=16,
            sliding_window=WINDOW,
            rope_parameters=rope,
            bos_token_id=1,
            eos_token_id=n_tok + 3,
            pad_token_id=n_tok,
            attn_implementation="eager",
        )
        model = T.Phi3ForCausalLM(cfg)
        tok = T.LlamaTokenizer.from_pretrained(tmp, legacy=False)
        tok.add_special_tokens({"additional_special_tokens": added})
        tok.eos_token = "<|end|>"
        template, pre = (TEMPLATES / "microsoft-Phi-3.5-mini-instruct.jinja").read_text(), None
        chat = dict(system=True, tools=False, extra={})
    elif name == "mistral":
        control = [
            "[INST]",
            "[/INST]",
            "[TOOL_CALLS]",
            "[AVAILABLE_TOOLS]",
            "[/AVAILABLE_TOOLS]",
            "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]",
        ]
        n_tok = spm_model(tmp, gemma=False, control=control, user=[], size=VOCAB)
        cfg = T.MistralConfig(
            **c,
            vocab_size=n_tok,
            head_dim=32,
            num_hidden_layers=2,
            sliding_window=None,
            bos_token_id=1,
            eos_token_id=2,
            attn_implementation="eager",
        )
        model = T.MistralForCausalLM(cfg)
        tok = T.LlamaTokenizer.from_pretrained(tmp, legacy=False)
        template, pre = (TEMPLATES / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text(), None
        chat = dict(system=True, tools=True, extra={})
    else:
        raise ValueError(name)
    model = model.to(torch.float32).eval()
    randomise(model, 7)
    model.generation_config.eos_token_id = None  # 16 greedy steps, whatever they are
    model.save_pretrained(tmp, safe_serialization=True)
    # bfloat16 on disk, as released checkpoints; the values are bf16-exact already
    st = next(tmp.glob("model*.safetensors"))
    from safetensors.torch import load_file, save_file

    save_file(
        {k: v.to(torch.bfloat16) for k, v in load_file(str(st)).items()},
        str(st),
        metadata={"format": "pt"},
    )
    cfg_path = tmp / "config.json"
    j = json.loads(cfg_path.read_text())
    j["dtype"] = "bfloat16"
    cfg_path.write_text(json.dumps(j, indent=2) + "\n")
    tok.chat_template = template
    tok.save_pretrained(tmp)
    tc = json.loads((tmp / "tokenizer_config.json").read_text())
    tc.pop("vocab_file", None)  # the work folder's path
    (tmp / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
    return {"chat": chat, "pre": pre, "hf_tokenizer": True, "n_tokens": n_tok}


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


# --- recording --------------------------------------------------------------------------------


def load_reference_model(d: Path, remote: bool, **overrides: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, trust_remote_code=remote, **overrides
    )
    if hasattr(m.config, "_attn_implementation"):
        m.config._attn_implementation = "eager"
    return m.eval()


def reference_outputs(model: Any, prompt: np.ndarray) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Logits of the prompt (one forward), then 16 greedy steps with the KV cache
    (generate) and the logits each step chose from."""
    import torch

    with torch.no_grad():
        ids = torch.from_numpy(prompt.astype(np.int64))[None, :]
        logits = model(input_ids=ids, use_cache=False).logits[0].to(torch.float32).numpy()
        out = model.generate(
            ids,
            max_new_tokens=N_GREEDY,
            min_new_tokens=N_GREEDY,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_logits=True,
        )
    steps = torch.cat(out.logits, 0).to(torch.float32).numpy()
    return logits, out.sequences[0, len(prompt) :].tolist(), steps


# What each reference must be sensitive to: the same weights with one setting
# changed must move the logits by at least 10x the 1e-4 bar, or the parity test
# could not tell the setting apart.
ABLATIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "gemma2": [
        ("no sliding window", {"sliding_window": 4096}),
        ("no attention soft-cap", {"attn_logit_softcapping": None}),
        ("no final soft-cap", {"final_logit_softcapping": None}),
    ],
    "gemma3": [
        ("no sliding window", {"sliding_window": 4096}),
        (
            "no linear RoPE scaling",
            {
                "rope_parameters": {
                    "full_attention": {"rope_type": "default", "rope_theta": 1e6},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                }
            },
        ),
        (
            "one RoPE base",
            {
                "rope_parameters": {
                    "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 1e6},
                }
            },
        ),
    ],
    "phi3": [
        ("no sliding window", {"sliding_window": None}),
        ("short RoPE factors", {"original_max_position_embeddings": 4096}),
    ],
    "bluelm_32k": [("plain RoPE", {"rope_scaling": None})],
    "qwen3": [("head_dim 16", None)],  # structural: shapes differ, nothing to load
}


def check_sensitivity(
    name: str, d: Path, remote: bool, prompt: np.ndarray, logits: np.ndarray
) -> dict[str, float]:
    import torch

    out: dict[str, float] = {}
    for label, overrides in ABLATIONS.get(name, []):
        if overrides is None:
            continue
        if name == "phi3" and "original_max_position_embeddings" in overrides:
            cfg = json.loads((d / "config.json").read_text())
            rope = dict(cfg["rope_parameters"], original_max_position_embeddings=4096)
            overrides = {"rope_parameters": rope, **overrides}
        m = load_reference_model(d, remote, **overrides)
        with torch.no_grad():
            ids = torch.from_numpy(prompt.astype(np.int64))[None, :]
            other = m(input_ids=ids, use_cache=False).logits[0].float().numpy()
        rel = float(np.abs(other - logits).max() / np.abs(logits).max())
        print(f"  {name}: {label} moves the logits by {rel:.3g} of max|logit|")
        if rel < 1e-3:
            raise RuntimeError(f"{name}: the reference is blind to '{label}' ({rel:.3g})")
        out[label] = rel
    return out


def _hf_tokenizer(d: Path, existing: bool) -> Any:
    """The folder's transformers tokenizer. tiny_llama/tiny_qwen2 name tokenizer classes
    that rebuild their own pre-tokenizer; their tokenizer.json is the tokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    return (PreTrainedTokenizerFast if existing else AutoTokenizer).from_pretrained(d)


def tokenizer_cases(d: Path, hf_tokenizer: bool, existing: bool) -> list[dict[str, Any]]:
    """transformers' ids of the test texts (BlueLM: none, its class is remote code)
    and, for a SentencePiece model, sentencepiece's own."""
    cases: list[dict[str, Any]] = [{"text": t} for t in TOKENIZER_TEXTS]
    if hf_tokenizer:
        tok = _hf_tokenizer(d, existing)
        for c in cases:
            c["ids"] = tok.encode(c["text"], add_special_tokens=False)
    if (d / "tokenizer.model").is_file():
        for c in cases:
            c["spm_ids"] = spm_ids(d, c["text"])
    return cases


def _special_texts(d: Path, sp: Any) -> dict[str, int]:
    """Texts split out before SentencePiece runs: added tokens and control pieces."""
    out = {
        sp.id_to_piece(i): i for i in range(sp.vocab_size()) if sp.is_control(i) or sp.is_unknown(i)
    }
    tj = d / "tokenizer.json"
    if tj.is_file():
        out.update(
            {a["content"]: a["id"] for a in json.loads(tj.read_text()).get("added_tokens", [])}
        )
    return out


def spm_ids(d: Path, text: str) -> list[int]:
    """sentencepiece's ids with special-token texts split out first (longest first) and
    each text fragment encoded on its own: llama.cpp's rule for SentencePiece vocabularies."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    specials = _special_texts(d, sp)
    frags: list[Any] = [text]
    for tok in sorted(specials, key=len, reverse=True):
        nxt: list[Any] = []
        for f in frags:
            if isinstance(f, int):
                nxt.append(f)
                continue
            for k, part in enumerate(f.split(tok)):
                if k:
                    nxt.append(specials[tok])
                if part:
                    nxt.append(part)
        frags = nxt
    ids: list[int] = []
    for f in frags:
        ids += [f] if isinstance(f, int) else sp.encode(f)
    return ids


def chat_cases(
    d: Path, chat: dict[str, Any], template: str | None, hf_tokenizer: bool, existing: bool
) -> list[dict[str, Any]]:
    """transformers' apply_chat_template text, the ids transformers gives that text and,
    for SentencePiece models, sentencepiece's ids by llama.cpp's rule."""
    from transformers import PreTrainedTokenizerFast

    if hf_tokenizer:
        tok = _hf_tokenizer(d, existing)
    else:  # BlueLM: its tokenizer class is remote code; transformers' renderer all the same
        from tokenizers import Tokenizer, models

        vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
            bos_token="<s>",
            eos_token="</s>",
        )
    if template is not None:
        tok.chat_template = template
    extra = dict(chat["extra"])
    if "date_string" in (tok.chat_template or ""):
        extra["date_string"] = DATE
    cases = []
    for case in conversations(chat["system"], chat["tools"]):
        text = tok.apply_chat_template(
            case["messages"],
            tools=case.get("tools"),
            tokenize=False,
            add_generation_prompt=case["gen"],
            **extra,
        )
        rec: dict[str, Any] = {**case, "kwargs": extra, "text": text}
        if hf_tokenizer:
            rec["ids"] = tok(text, add_special_tokens=False)["input_ids"]
        if (d / "tokenizer.model").is_file():
            rec["spm_ids"] = spm_ids(d, text)
        cases.append(rec)
    return cases


def llamacpp_convert(d: Path, out: Path, pre: str | None) -> None:
    """Run llama.cpp's convert_hf_to_gguf.py (its own gguf-py) on folder ``d``."""
    wrapper = textwrap.dedent(f"""
        import os, runpy, sys
        sys.path.insert(0, {str(LLAMA_CPP)!r})
        sys.path.insert(1, {str(LLAMA_CPP / "gguf-py")!r})
        import conversion.base as base
        pre = {pre!r}
        if pre is not None:  # only for a hash no trained-here vocabulary can have
            orig = base.TextModel.get_vocab_base_pre
            def patched(self, tokenizer):
                try:
                    return orig(self, tokenizer)
                except NotImplementedError:
                    return pre
            base.TextModel.get_vocab_base_pre = patched
        sys.argv = ["convert_hf_to_gguf.py", {str(d)!r}, "--outtype", "f32",
                    "--outfile", {str(out)!r}]
        runpy.run_path({str(LLAMA_CPP / "convert_hf_to_gguf.py")!r}, run_name="__main__")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", wrapper], check=True, env=env, cwd="/tmp")


def record(name: str, only_greedy_llamacpp: bool = False) -> None:
    import tokenizers
    import torch
    import transformers

    out = DATA / f"tiny_{name}"
    bluelm = name.startswith("bluelm")
    existing = name in ("llama", "qwen2")
    # a fixed work folder (outside the repo): its path ends up in tokenizer.model's
    # trainer spec and in llama.cpp's general.name, so the output stays reproducible
    tmp = Path(tempfile.gettempdir()) / "make_tiny_archs" / f"tiny_{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if True:
        if existing:
            shutil.copytree(out, tmp, dirs_exist_ok=True)
            info: dict[str, Any] = {
                "pre": "gpt-2",
                "hf_tokenizer": True,
                "chat": {"system": True, "tools": True, "extra": {}},
                "template": (
                    TEMPLATES
                    / (
                        "meta-llama-Llama-3.2-3B-Instruct.jinja"
                        if name == "llama"
                        else "Qwen-Qwen2.5-7B-Instruct.jinja"
                    )
                ).read_text(),
                "n_tokens": VOCAB,
            }
        elif bluelm:
            info = build_bluelm(name, tmp)
        else:
            info = build(name, tmp)
        model = load_reference_model(tmp, remote=bluelm)
        rng = np.random.default_rng(SEEDS[name])
        # ids the tokenizer has, past the special ones
        prompt = rng.integers(12, info["n_tokens"], size=PROMPT_LEN).astype(np.int32)
        logits, greedy, step_logits = reference_outputs(model, prompt)
        sensitivity = check_sensitivity(name, tmp, bluelm, prompt, logits)
        if not existing:
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(tmp, out, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
            out.chmod(0o755)
        np.savez(
            out / "arch_reference.npz",
            prompt_ids=prompt,
            logits=logits.astype(np.float32),
            greedy=np.asarray(greedy, dtype=np.int32),
            greedy_logits=step_logits,
        )
        meta = {
            "generator": "tests/data/make_tiny_archs.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "hf_class": type(model).__name__,
            "remote_code": "vivo-ai-lab/BlueLM "
            + subprocess.run(
                ["git", "-C", str(BLUELM_REPO), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            if bluelm
            else None,
            "prompt_len": PROMPT_LEN,
            "sliding_window": getattr(model.config, "sliding_window", None),
            "max_abs_logit": float(np.abs(logits).max()),
            "greedy_steps": N_GREEDY,
            "sensitivity": sensitivity,
            "tokenizer_cases": tokenizer_cases(tmp, info["hf_tokenizer"], existing),
            "chat_cases": chat_cases(
                tmp, info["chat"], info.get("template"), info["hf_tokenizer"], existing
            ),
        }
        if info.get("template") is not None:
            meta["chat_template"] = info["template"]
        if not bluelm:
            llamacpp_convert(tmp, out / "llamacpp.f32.gguf", info["pre"])
        (out / "arch_reference.json").write_text(
            json.dumps(meta, indent=1, ensure_ascii=False) + "\n"
        )
        size = sum(f.stat().st_size for f in out.iterdir()) / 1024
        print(
            f"tiny_{name}: {size:.0f} KiB, max|logit| {meta['max_abs_logit']:.3f}, greedy {greedy}"
        )


def llamacpp_prompt(name: str) -> list[int]:
    """The prompt llama.cpp's greedy check runs: the reference's (Phi-3: cut to fit its
    sliding window with the 16 steps, as llama.cpp runs Phi-3 without the window)."""
    prompt = [int(t) for t in np.load(DATA / f"tiny_{name}" / "arch_reference.npz")["prompt_ids"]]
    return prompt[: WINDOW - N_GREEDY] if name == "phi3" else prompt


def llamacpp_greedy(path: Path, prompt: list[int]) -> tuple[list[int], list[float]]:
    """llama.cpp's (llama-cpp-python's) greedy tokens with an F32 KV cache, and the gap
    between the best two logits at each step."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=256,
        n_batch=64,
        n_threads=2,
        logits_all=True,
        verbose=False,
        type_k=0,
        type_v=0,
    )
    llm.eval(prompt)
    toks: list[int] = []
    margins: list[float] = []
    for _ in range(N_GREEDY):
        row = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        top2 = np.sort(row)[-2:]
        margins.append(float(top2[1] - top2[0]))
        toks.append(int(row.argmax()))
        llm.eval([toks[-1]])
    return toks, margins


def record_llamacpp_greedy(name: str) -> None:
    """llama.cpp's greedy tokens on this project's own F32 conversion of the folder."""
    import llama_cpp

    from bluelm_cpp.convert import convert_checkpoint

    d = DATA / f"tiny_{name}"
    prompt = llamacpp_prompt(name)
    with tempfile.TemporaryDirectory() as t:
        path = Path(t) / "ours.f32.gguf"
        convert_checkpoint(d, path, "f32", progress=False)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        toks, margins = llamacpp_greedy(path, prompt)
    (d / "llamacpp_greedy.json").write_text(
        json.dumps(
            {
                "generator": "tests/data/make_tiny_archs.py --llamacpp-greedy",
                "llama_cpp_python": llama_cpp.__version__,
                "gguf_sha256": digest,
                "prompt_ids": prompt,
                "tokens": toks,
                "top2_margin": margins,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"tiny_{name}: llama.cpp greedy {toks}")


ALL = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "mistral", "bluelm_2k", "bluelm_32k"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=ALL, choices=ALL)
    ap.add_argument(
        "--llamacpp-greedy",
        action="store_true",
        help="only record llama.cpp's greedy tokens on our conversions",
    )
    args = ap.parse_args()
    for name in args.only:
        if args.llamacpp_greedy:
            if not name.startswith("bluelm"):
                record_llamacpp_greedy(name)
        else:
            record(name)


if __name__ == "__main__":
    main()
