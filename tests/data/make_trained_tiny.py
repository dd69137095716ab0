"""Train tiny LLaMA and Qwen2 models on a small text corpus; record transformers' outputs.

Random-weight models have near-tied logits, so their top-1 prediction flips
under any quantisation noise and a top-1 agreement bar says little. A model
trained for a few hundred steps predicts decisively where the text is
predictable, as a real model does, so the converter's Q8_0/Q4_0 output can be
held to the issue's 99% / 95% top-1 agreement with transformers.

Writes ``tests/data/trained_llama/`` (LlamaForCausalLM, untied head),
``tests/data/trained_qwen2/`` (Qwen2ForCausalLM, tied embeddings, q/k/v
biases) and ``tests/data/trained_llama_k/`` (LlamaForCausalLM with rows of 256
and 512, so the K-quant outtypes get true K-quant blocks, not their 32-block
fallbacks), each a ``save_pretrained`` folder (float16 safetensors, byte-level BPE
``tokenizer.json`` of 512 tokens, Qwen2-style for Qwen2, chat template) with

* ``reference.npz``: ``prompt_ids`` (256 tokens of the training text, where the
  model is decisive),
  transformers' float32 ``logits`` at every position, and ``greedy_prompt`` /
  ``greedy_ids``: 32 tokens greedy decoding continues the prompt with;
* ``reference.json``: versions, settings, training and evaluation loss.

The corpus is ``corpus.txt`` (kept in the repo, so the data does not depend on
the Python version): topics of the Python reference manual from the standard
library's ``pydoc_data.topics`` (PSF licence); it is written from there only
when missing. Deterministic on one machine (fixed seeds, one thread, CPU);
about 80 s of CPU time per model.

    python tests/data/make_trained_tiny.py [trained_llama] [trained_qwen2] [trained_llama_k]
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

DATA_DIR = Path(__file__).resolve().parent
CORPUS = DATA_DIR / "corpus.txt"
CORPUS_TOPICS = [
    "for", "function", "if", "lambda", "return", "try", "while", "with", "truth", "booleans",
    "del", "pass", "break", "continue", "raise", "global", "assert", "yield", "class",
    "exceptions",
]  # fmt: skip
VOCAB_SIZE = 512
HIDDEN = 128
N_FF = 352  # a multiple of 32, so every matrix can be quantised
SEQ_LEN = 256  # as long as the evaluated text: RoPE positions past it are untrained
BATCH = 4
STEPS = 800
LR = 3e-3
EVAL_LEN = 256
EVAL_START = 1000  # token offset of the evaluated text in the corpus
GREEDY_PROMPT = 48
GREEDY_NEW = 32

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def corpus_text() -> str:
    """The training text; written from ``pydoc_data.topics`` when ``corpus.txt`` is missing."""
    if not CORPUS.is_file():
        from pydoc_data.topics import topics

        CORPUS.write_text("\n".join(topics[t].strip() + "\n" for t in CORPUS_TOPICS))
    return CORPUS.read_text()


def build_tokenizer(text: str, special: list[str], qwen2: bool) -> Tokenizer:
    """A byte-level BPE; for Qwen2 built as Qwen2's is (NFC, Qwen2's split regex),
    which is also what transformers' Qwen2Tokenizer imposes on any tokenizer.json."""
    tok = Tokenizer(models.BPE())
    if qwen2:
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text.split("\n"), trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"tokenizer vocab {tok.get_vocab_size()} != {VOCAB_SIZE}")
    return tok


def train(model: torch.nn.Module, ids: np.ndarray, seed: int) -> list[float]:
    """AdamW on random windows of ``ids``; returns the loss every 100 steps."""
    gen = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(ids.astype(np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS)
    losses = []
    model.train()
    for step in range(STEPS):
        starts = torch.randint(0, len(data) - SEQ_LEN - 1, (BATCH,), generator=gen)
        batch = torch.stack([data[s : s + SEQ_LEN] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 99 or step == STEPS - 1:
            losses.append(round(float(loss), 4))
    return losses


def make_one(
    name: str,
    model_cls: type,
    config: Any,
    special: list[str],
    bos: str | None,
    eos: str,
    seed: int,
) -> None:
    out = DATA_DIR / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    text = corpus_text()
    eos_id = special.index(eos)
    tok = build_tokenizer(text, special, qwen2=model_cls is Qwen2ForCausalLM)
    train_ids = np.array(tok.encode(text).ids, dtype=np.int32)

    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32)
    t0 = time.perf_counter()
    losses = train(model, train_ids, seed)
    seconds = time.perf_counter() - t0
    # stored as float16 (half the bytes); the reference is computed from these values
    model = model.eval().to(torch.float16)
    model.save_pretrained(out, safe_serialization=True)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,
        unk_token=None,
        model_max_length=config.max_position_embeddings,
    )
    fast.chat_template = QWEN_CHAT_TEMPLATE
    fast.save_pretrained(out)

    # a fresh model from the saved files gives the reference (what users convert)
    again = model_cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    again = again.eval()
    prompt = train_ids[EVAL_START : EVAL_START + EVAL_LEN]
    with torch.no_grad():
        ids = torch.from_numpy(prompt.astype(np.int64))[None, :]
        logits = again(input_ids=ids, use_cache=False).logits[0].numpy().astype(np.float32)
        eval_loss = float(
            torch.nn.functional.cross_entropy(torch.from_numpy(logits[:-1]), ids[0, 1:])
        )
        # plain argmax steps (no end-of-text handling): what a greedy runtime does
        seq = ids[:, :GREEDY_PROMPT]
        for _ in range(GREEDY_NEW):
            nxt = again(input_ids=seq, use_cache=False).logits[0, -1].argmax()
            seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    greedy = seq[0, GREEDY_PROMPT:].numpy().astype(np.int32)
    if eos_id in greedy.tolist():
        raise RuntimeError(f"{name}: greedy decoding reached {eos}; runtimes would stop there")
    np.savez(
        out / "reference.npz",
        prompt_ids=prompt,
        logits=logits,
        greedy_prompt=prompt[:GREEDY_PROMPT],
        greedy_ids=greedy,
    )
    top2 = np.sort(logits, axis=-1)[:, -2:]
    meta = {
        "generator": "tests/data/make_trained_tiny.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "architecture": model_cls.__name__,
        "seed": seed,
        "steps": STEPS,
        "batch": BATCH,
        "seq_len": SEQ_LEN,
        "lr": LR,
        "train_seconds": round(seconds, 1),
        "train_loss_every_100_steps": losses,
        "eval_loss": round(eval_loss, 4),
        "eval_start": EVAL_START,
        "weights": "float16",
        "attn_implementation": "eager",
        "eval_positions": EVAL_LEN,
        "max_abs_logit": float(np.abs(logits).max()),
        "median_top1_top2_margin": float(np.median(top2[:, 1] - top2[:, 0])),
        "tie_word_embeddings": bool(config.tie_word_embeddings),
    }
    (out / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(
        f"{name}: {size / 1024:.0f} KiB, {seconds:.0f} s, loss {losses}, "
        f"eval loss {eval_loss:.3f}, "
        f"median margin {meta['median_top1_top2_margin']:.2f}"
    )


def common_config(hidden: int = HIDDEN, n_ff: int = N_FF) -> dict[str, Any]:
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": hidden,
        "intermediate_size": n_ff,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "attn_implementation": "eager",
    }


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    llama_special = ["<|begin_of_text|>", "<|end_of_text|>"]
    llama_cfg = LlamaConfig(
        **common_config(),
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
    )
    if not names or "trained_llama" in names:
        make_one(
            "trained_llama",
            LlamaForCausalLM,
            llama_cfg,
            llama_special,
            "<|begin_of_text|>",
            "<|end_of_text|>",
            seed=7001,
        )
    if not names or "trained_llama_k" in names:
        make_one(
            "trained_llama_k",
            LlamaForCausalLM,
            LlamaConfig(
                **common_config(hidden=256, n_ff=512),
                rope_theta=10000.0,
                tie_word_embeddings=False,
                bos_token_id=0,
                eos_token_id=1,
            ),
            llama_special,
            "<|begin_of_text|>",
            "<|end_of_text|>",
            seed=7003,
        )
    qwen_special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    qwen_cfg = Qwen2Config(
        **common_config(),
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=0,
        eos_token_id=2,
    )
    if not names or "trained_qwen2" in names:
        make_one(
            "trained_qwen2",
            Qwen2ForCausalLM,
            qwen_cfg,
            qwen_special,
            None,
            "<|im_end|>",
            seed=7002,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
