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
* ``llamacpp_greedy.json`` (needs llama-cpp-python; ``--llamacpp-greedy`` redoes only this):
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
import importlib.util
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_archs_bluelm import BLUELM_REPO, build_bluelm  # noqa: E402
from tiny_archs_common import (  # noqa: E402
    DATA,
    GEMMA3_TEMPLATE,
    LLAMA_CPP,
    N_GREEDY,
    PROMPT_LEN,
    SEEDS,
    TEMPLATES,
    VOCAB,
    WINDOW,
    bpe_tokenizer,
    chat_cases,
    common,
    randomise,
    spm_model,
    tokenizer_cases,
)


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
        help="only (re)record llama.cpp's greedy tokens on our conversions (done after every "
        "recording when llama-cpp-python is installed)",
    )
    args = ap.parse_args()
    have_llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    for name in args.only:
        if not args.llamacpp_greedy:
            record(name)
        if name.startswith("bluelm"):
            continue  # llama.cpp has no BlueLM class
        if have_llama_cpp:
            record_llamacpp_greedy(name)
        else:
            print(f"tiny_{name}: no llama-cpp-python, llamacpp_greedy.json not recorded")


if __name__ == "__main__":
    main()
