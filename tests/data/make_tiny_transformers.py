"""Write tiny random-weight Hugging Face checkpoints and their reference logits.

Creates ``tests/data/tiny_llama/`` (LlamaForCausalLM, untied lm_head) and
``tests/data/tiny_qwen2/`` (Qwen2ForCausalLM, tied embeddings, q/k/v biases),
each with a byte-level BPE tokenizer (vocab 512), ``reference.npz`` (a 200-token
prompt and transformers' float32 logits at every position) and
``reference.json`` (versions and settings).

Needs torch, transformers and tokenizers; the tests only read the outputs.

    python tests/data/make_tiny_transformers.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

DATA_DIR = Path(__file__).resolve().parent
VOCAB_SIZE = 512
PROMPT_LEN = 200
INIT_STD = 0.08  # larger than the 0.02 default so logits are not near-uniform

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def training_text() -> list[str]:
    """A fixed, varied corpus for the BPE trainer."""
    base = [
        "The quick brown fox jumps over the lazy dog.",
        "Once upon a time, there was a little model that could run on a CPU.",
        "def forward(self, x):\n    return self.norm(x + self.attn(x))\n",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 -7 1e-6",
        "Hello, world! How are you today? I'm fine, thanks.",
        "Les élèves étudient à l'école. Größe, Straße, naïve café.",
        "Привет, мир! Как дела?",
        "你好，世界。今天天气很好。",
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n",
        "<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>\n",
        "    indented line\n\ttabbed line\n\n\nblank lines above",
        'JSON: {"key": [1, 2, 3], "value": null, "ok": true}',
        "emoji: 🙂 🚀 👍🏽 and symbols: © ® ™ € £ ¥ → ∞",
    ]
    rng = np.random.default_rng(1234)
    words = " ".join(base).split()
    extra = []
    for _ in range(400):
        n = int(rng.integers(4, 16))
        extra.append(" ".join(words[int(i)] for i in rng.integers(0, len(words), n)))
    return base * 20 + extra


def build_tokenizer(special: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"tokenizer vocab {tok.get_vocab_size()} != {VOCAB_SIZE}")
    return tok


def randomise_extras(model: torch.nn.Module, seed: int) -> None:
    """Give norms and biases non-trivial values (defaults are ones/zeros)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def to_legacy_layout(out: Path, chat_template: str, rope_theta: float) -> None:
    """Rewrite the saved files the way transformers 4 wrote them.

    One folder in each layout so a converter is checked against both: top-level
    ``rope_theta``/``torch_dtype`` in config.json, the chat template inside
    tokenizer_config.json and a special_tokens_map.json.
    """
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("rope_parameters", None)
    cfg["rope_theta"] = rope_theta
    cfg["torch_dtype"] = cfg.pop("dtype", "float32")
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc.pop("backend", None)
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc["chat_template"] = chat_template
    tc["add_bos_token"] = False
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    (out / "chat_template.jinja").unlink(missing_ok=True)

    special = {k: tc[k] for k in ("bos_token", "eos_token", "pad_token") if tc.get(k)}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def check_reload(out: Path, model_cls: Any, prompt: np.ndarray, logits: np.ndarray) -> None:
    """The saved folder must load back to the same logits."""
    again = model_cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        ids = torch.from_numpy(prompt.astype(np.int64))[None, :]
        got = again.eval()(input_ids=ids, use_cache=False).logits[0].numpy()
    if not np.array_equal(got, logits):
        raise RuntimeError(f"{out.name}: reloaded model differs by {np.abs(got - logits).max()}")
    PreTrainedTokenizerFast.from_pretrained(out)


def make_one(
    name: str,
    model_cls: type,
    config: Any,
    special: list[str],
    bos: str | None,
    eos: str,
    chat_template: str,
    seed: int,
    legacy: bool,
) -> None:
    out = DATA_DIR / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32).eval()
    randomise_extras(model, seed + 1)
    model.save_pretrained(out, safe_serialization=True)

    tok = build_tokenizer(special)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,
        unk_token=None,
        model_max_length=config.max_position_embeddings,
    )
    fast.chat_template = chat_template
    fast.save_pretrained(out)

    # ids drawn from the non-special part of the vocabulary
    rng = np.random.default_rng(seed)
    prompt = rng.integers(len(special), VOCAB_SIZE, size=PROMPT_LEN).astype(np.int32)
    with torch.no_grad():
        ids = torch.from_numpy(prompt.astype(np.int64))[None, :]
        logits = model(input_ids=ids, use_cache=False).logits[0].to(torch.float32).numpy()
    assert logits.shape == (PROMPT_LEN, VOCAB_SIZE)
    np.savez(out / "reference.npz", prompt_ids=prompt, logits=logits.astype(np.float32))

    meta = {
        "generator": "tests/data/make_tiny_transformers.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "architecture": model_cls.__name__,
        "seed": seed,
        "init_std": INIT_STD,
        "attn_implementation": "eager",
        "dtype": "float32",
        "prompt_len": PROMPT_LEN,
        "max_abs_logit": float(np.abs(logits).max()),
        "tie_word_embeddings": bool(config.tie_word_embeddings),
    }
    if legacy:
        to_legacy_layout(out, chat_template, config.rope_parameters["rope_theta"])
    meta["layout"] = "transformers 4 (legacy)" if legacy else "transformers 5"
    check_reload(out, model_cls, prompt, logits)
    (out / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{name}: {size / 1024:.0f} KiB, max|logit| {meta['max_abs_logit']:.3f}")


def common_config() -> dict[str, Any]:
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-6,
        "initializer_range": INIT_STD,
        "hidden_act": "silu",
        "attn_implementation": "eager",
    }


def main() -> None:
    llama_special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>"]
    llama_special += ["<|end_header_id|>", "<|eot_id|>"]
    llama_cfg = LlamaConfig(
        **common_config(),
        num_hidden_layers=2,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=0,
        eos_token_id=1,
    )
    make_one(
        "tiny_llama",
        LlamaForCausalLM,
        llama_cfg,
        llama_special,
        "<|begin_of_text|>",
        "<|end_of_text|>",
        LLAMA_CHAT_TEMPLATE,
        seed=20240601,
        legacy=True,
    )

    qwen_special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    qwen_cfg = Qwen2Config(
        **common_config(),
        num_hidden_layers=3,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=0,
        eos_token_id=2,
    )
    make_one(
        "tiny_qwen2",
        Qwen2ForCausalLM,
        qwen_cfg,
        qwen_special,
        None,
        "<|im_end|>",
        QWEN_CHAT_TEMPLATE,
        seed=20240602,
        legacy=False,
    )


if __name__ == "__main__":
    main()
