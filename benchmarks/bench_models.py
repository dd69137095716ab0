#!/usr/bin/env python3
"""Model files for bench_llm.py, made on demand and cached (default /tmp/bluelm-bench).

- ``smollm2-q4_1``: the SmolLM2-135M-Instruct Q4_1 file shipped with the test data.
- ``smollm2-q4_0`` / ``smollm2-q8_0``: made from it by llama.cpp's own ``llama-quantize
  --allow-requantize --pure --token-embedding-type q8_0`` (dequantise Q4_1 -> requantise every
  layer matrix; the tied embedding stays Q8_0 as in the shipped file). The blocks are therefore
  exactly the ones llama.cpp makes; give the tool with ``--llama-quantize PATH``.
- ``smollm2-f16``: the same Q4_1 file dequantised to F16 by ``llama-quantize --allow-requantize
  --pure`` (every tensor F16, the embedding too): bench_speculative.py's draft-model target,
  with ``smollm2-q4_0`` as its draft.
- ``bluelm3b-q4_0``: the BlueLM-3B decoder shape of PAPER.md (hidden 2560, 28 layers, 20 heads of
  128, no GQA, FFN 6912, vocab 100096; 2.7B parameters) with random Q4_0 weights, written
  tensor by tensor straight in Q4_0 through gguf-py (no F16 file on the way; ~1.4 GiB). Every
  matrix, the output included, is Q4_0 (llama-quantize would make the output Q6_K, which this
  runtime does not read). A byte-level GPT-2 vocabulary of placeholder tokens lets llama.cpp
  load it.
- ``qwen3-1.7b-q4_0``: Qwen3-1.7B's shape (arch ``qwen3``: hidden 2048, 28 layers, 16 heads of
  128, 8 KV heads, FFN 6144, vocab 151936, per-head Q/K RMSNorm, tied embedding).
- ``gemma3-1b-q4_0``: Gemma-3-1B's shape (arch ``gemma3``: hidden 1152, 26 layers, 4 heads of
  256, 1 KV head, FFN 6912 GELU-gated, vocab 262144, Q/K norms, pre and post norms, 5 of 6
  layers in a 512-token sliding window, RoPE bases 1e6 and 1e4, tied embedding).
  Both random Q4_0, their tied embedding Q8_0 (the output head; this converter's policy).
- ``smollm2-q4_k_m`` / ``smollm2-q5_k_m``: llama-quantize's Q4_K_M / Q5_K_M mixes made from the
  shipped Q4_1 (``llama-quantize --allow-requantize``; rows of 576 fall back to Q5_0/Q5_1 and
  Q8_0 as the tool does). Without ``--llama-quantize`` this project's requantiser writes them
  (``bluelm_cpp.convert.requantize_gguf``: the same bytes, tests/test_kquant_fidelity.py).
- ``llama1b-q4_k_m``: Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads of 64, 8 KV heads,
  FFN 8192, vocab 128256, tied embedding) with random weights in llama-quantize's Q4_K_M
  per-tensor choice (``quantize_policy.choose_type``: Q4_K, and Q6_K for the tied embedding
  and the attn_v / ffn_down layers the mix bumps): true Q4_K + Q6_K.
- ``llama1b-q5_k_m`` / ``llama1b-q3_k_m`` / ``llama1b-q2_k`` / ``llama1b-iq4_xs``: llama-quantize's
  Q5_K_M, Q3_K_M, Q2_K and IQ4_XS mixes of that file (``llama-quantize --allow-requantize``; needs
  ``--llama-quantize``): Q5_K + Q6_K, Q3_K + Q4_K (+ Q5_K, Q6_K), Q2_K + Q3_K (+ Q4_K, Q6_K),
  IQ4_XS + Q5_K (+ Q6_K), with the tool's own per-tensor choices.

Usage:
    python benchmarks/bench_models.py bluelm3b-q4_0 [--cache DIR] [--llama-quantize PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np

DEFAULT_CACHE = os.environ.get("BLUELM_BENCH_CACHE", "/tmp/bluelm-bench")
NAMES = (
    "smollm2-q4_1",
    "smollm2-q4_0",
    "smollm2-q8_0",
    "smollm2-f16",
    "bluelm3b-q4_0",
    "qwen3-1.7b-q4_0",
    "gemma3-1b-q4_0",
    "smollm2-q4_k_m",
    "smollm2-q5_k_m",
    "llama1b-q4_k_m",
    "llama1b-q5_k_m",
    "llama1b-q3_k_m",
    "llama1b-q2_k",
    "llama1b-iq4_xs",
)
# Made from llama1b-q4_k_m by llama-quantize --allow-requantize (its mixes, its choices).
LLAMA_1B_REQUANTIZED = ("llama1b-q5_k_m", "llama1b-q3_k_m", "llama1b-q2_k", "llama1b-iq4_xs")

# PAPER.md: the BlueLM-3B language model treated as a LLaMA-family decoder.
BLUELM3B = {
    "arch": "llama",
    "n_embd": 2560,
    "n_layer": 28,
    "n_head": 20,
    "n_head_kv": 20,
    "n_ff": 6912,
    "n_vocab": 100096,
    "n_ctx_train": 4096,
}
QWEN3_1_7B = {
    "arch": "qwen3",
    "n_embd": 2048,
    "n_layer": 28,
    "n_head": 16,
    "n_head_kv": 8,
    "head_dim": 128,
    "n_ff": 6144,
    "n_vocab": 151936,
    "n_ctx_train": 40960,
    "rope_base": 1e6,
    "tied": True,
}
GEMMA3_1B = {
    "arch": "gemma3",
    "n_embd": 1152,
    "n_layer": 26,
    "n_head": 4,
    "n_head_kv": 1,
    "head_dim": 256,
    "n_ff": 6912,
    "n_vocab": 262144,
    "n_ctx_train": 32768,
    "rope_base": 1e6,
    "rope_base_swa": 1e4,
    "n_swa": 512,
    "tied": True,
}
LLAMA_1B = {
    "arch": "llama",
    "n_embd": 2048,
    "n_layer": 16,
    "n_head": 32,
    "n_head_kv": 8,
    "n_ff": 8192,
    "n_vocab": 128256,
    "n_ctx_train": 131072,
    "rope_base": 500000.0,
    "tied": True,
    "mix": "q4_k_m",
}
RANDOM = {
    "bluelm3b-q4_0": BLUELM3B,
    "qwen3-1.7b-q4_0": QWEN3_1_7B,
    "gemma3-1b-q4_0": GEMMA3_1B,
    "llama1b-q4_k_m": LLAMA_1B,
}
# Random blocks: every byte random except the fp16 scales, set so that a weight has a
# standard deviation of about 1/sqrt(cols) (activations stay of order one through the
# layers): (byte offset, scale times sqrt(cols)) per type. Q4_0: (q - 8) * d, std ~4.6 d;
# Q8_0: std ~73.9 d; Q4_K: d * sc * q - dmin * mn, std ~200 d, dmin = 7.5 d centres it;
# Q6_K: d * sc * (q - 32), std ~1370 d.
_SCALES = {
    "Q4_0": ((0, 1 / 4.6),),
    "Q8_0": ((0, 1 / 73.9),),
    "Q4_K": ((0, 1 / 200.0), (2, 7.5 / 200.0)),
    "Q6_K": ((208, 1 / 1370.0),),
}


def _smollm2_q4_1() -> str:
    from bluelm_cpp.default_model import default_model_path

    return os.fspath(default_model_path())


def _make_file(out: str, write: Callable[[str], None]) -> str:
    """``write(tmp)`` then rename to ``out``: no half-written file under the final name."""
    tmp = out + ".tmp"
    try:
        write(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, out)
    return out


def _llama_quantize(llama_quantize: str, args: list[str]) -> None:
    subprocess.run([llama_quantize, "--allow-requantize", *args], check=True, capture_output=True)


def _requantize(name: str, cache: str, llama_quantize: str | None) -> str:
    qtype = name.split("-")[1]
    out = os.path.join(cache, f"smollm2-135m-{qtype}.gguf")
    if os.path.exists(out):
        return out
    mix = qtype.endswith("_k_m")
    if mix and not llama_quantize:
        from bluelm_cpp.convert import requantize_gguf

        requantize_gguf(_smollm2_q4_1(), out, qtype)
        return out
    if not llama_quantize:
        raise FileNotFoundError(
            f"{name} is not in {cache}: pass --llama-quantize PATH (llama.cpp's tool) to make it"
        )
    # A mix keeps llama-quantize's per-tensor choices; F16 keeps every tensor F16;
    # the other quantised files are pure with a Q8_0 embedding.
    if mix:
        flags = []
    elif qtype == "f16":
        flags = ["--pure"]
    else:
        flags = ["--pure", "--token-embedding-type", "q8_0"]
    tool, src = llama_quantize, _smollm2_q4_1()
    return _make_file(out, lambda tmp: _llama_quantize(tool, [*flags, src, tmp, qtype, "2"]))


def _requantize_1b(out: str, qtype: str, cache: str, llama_quantize: str | None) -> str:
    if os.path.exists(out):
        return out
    if not llama_quantize:
        raise FileNotFoundError(
            f"{out} is not there: pass --llama-quantize PATH (llama.cpp's tool) to make it"
        )
    tool, src = llama_quantize, model_path("llama1b-q4_k_m", cache, llama_quantize)
    return _make_file(out, lambda tmp: _llama_quantize(tool, [src, tmp, qtype.upper(), "2"]))


def _byte_tokens() -> list[str]:
    # GPT-2's byte-to-unicode map: llama.cpp's BPE vocab needs a token for every byte.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
    bs += list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _mix_type(c: dict, name: str, rows: int, cols: int) -> object:
    """The type llama-quantize's mix ``c["mix"]`` gives a matrix (this converter's policy)."""
    from bluelm_cpp.convert.quantize_policy import ModelShape, choose_type

    shape = ModelShape(c["n_layer"], c["n_head"], c["n_head_kv"], c["arch"])
    return choose_type(name, (rows, cols), c["mix"], c.get("tied", False), shape).qtype


def _write_random(path: str, c: dict, seed: int = 0) -> None:
    """A random decoder of shape ``c`` that llama.cpp and this runtime both load: Q4_0
    (tied embedding Q8_0), or the per-tensor types of the mix ``c["mix"]``."""
    import gguf

    arch = c["arch"]
    d, ff, nv, nl = c["n_embd"], c["n_ff"], c["n_vocab"], c["n_layer"]
    hd = c.get("head_dim", d // c["n_head"])
    q_dim, kv_dim = c["n_head"] * hd, c["n_head_kv"] * hd
    tied = c.get("tied", False)
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"{arch} shape, random Q4_0 weights (benchmark only)")
    w.add_block_count(nl)
    w.add_context_length(c["n_ctx_train"])
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(c["n_head"])
    w.add_head_count_kv(c["n_head_kv"])
    if "head_dim" in c:
        w.add_key_length(hd)
        w.add_value_length(hd)
    w.add_rope_freq_base(c.get("rope_base", 10000.0))
    w.add_layer_norm_rms_eps(1e-6 if arch != "llama" else 1e-5)
    if "n_swa" in c:
        w.add_sliding_window(c["n_swa"])
        w.add_rope_freq_base_swa(c["rope_base_swa"])
    mix = c.get("mix")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M if mix else gguf.LlamaFileType.MOSTLY_Q4_0)
    tokens = _byte_tokens() + ["ĠĠ"]
    tokens += [f"<tok{i}>" for i in range(len(tokens), nv - 1)] + ["<|endoftext|>"]
    types = [gguf.TokenType.NORMAL] * (nv - 1) + [gguf.TokenType.CONTROL]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ Ġ"])
    w.add_bos_token_id(nv - 1)
    w.add_eos_token_id(nv - 1)

    q4, q8 = gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q8_0
    # (name, rows, cols, type) of every matrix, and the F32 norm vectors (name, length).
    emb_type = q8 if tied else q4  # a tied embedding is the output head: Q8_0
    mats: list[tuple[str, int, int, object]] = [("token_embd.weight", nv, d, emb_type)]
    norms: list[tuple[str, int]] = []
    for i in range(nl):
        p = f"blk.{i}."
        norms += [(p + "attn_norm.weight", d), (p + "ffn_norm.weight", d)]
        if arch in ("qwen3", "gemma3"):
            norms += [(p + "attn_q_norm.weight", hd), (p + "attn_k_norm.weight", hd)]
        if arch == "gemma3":
            norms += [(p + "post_attention_norm.weight", d), (p + "post_ffw_norm.weight", d)]
        mats += [(p + "attn_q.weight", q_dim, d, q4), (p + "attn_k.weight", kv_dim, d, q4)]
        mats += [(p + "attn_v.weight", kv_dim, d, q4), (p + "attn_output.weight", d, q_dim, q4)]
        mats += [(p + "ffn_gate.weight", ff, d, q4), (p + "ffn_up.weight", ff, d, q4)]
        mats += [(p + "ffn_down.weight", d, ff, q4)]
    norms.append(("output_norm.weight", d))
    if not tied:
        mats.append(("output.weight", nv, d, q4))

    if mix:
        mats = [(n, r, k, _mix_type(c, n, r, k)) for n, r, k, _ in mats]
    for name, rows, cols, qt in mats:
        block, bb = gguf.GGML_QUANT_SIZES[qt]
        nbytes = rows * (cols // block) * bb
        w.add_tensor_info(name, (rows, cols // block * bb), np.dtype(np.uint8), nbytes, qt)
    for name, n in norms:
        w.add_tensor_info(name, (n,), np.dtype(np.float32), n * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    rng = np.random.default_rng(seed)
    for _name, rows, cols, qt in mats:
        block, bb = gguf.GGML_QUANT_SIZES[qt]
        nb = cols // block
        blocks = np.empty((rows, nb, bb), dtype=np.uint8)
        for r0 in range(0, rows, 4096):  # bounded temporaries
            r1 = min(rows, r0 + 4096)
            blocks[r0:r1] = rng.integers(0, 256, (r1 - r0, nb, bb), dtype=np.uint8)
        for off, k in _SCALES[qt.name]:
            d_val = np.float16(k / np.sqrt(cols))
            blocks[:, :, off : off + 2] = np.frombuffer(d_val.tobytes(), dtype=np.uint8)
        w.write_tensor_data(blocks.reshape(rows, nb * bb))
        del blocks
    for _, n in norms:
        w.write_tensor_data(np.ones(n, dtype=np.float32))
    w.close()


def model_path(name: str, cache: str = DEFAULT_CACHE, llama_quantize: str | None = None) -> str:
    """Path of a benchmark model, made and cached first when needed.

    Example:
        >>> model_path("bluelm3b-q4_0")  # doctest: +SKIP
        '/tmp/bluelm-bench/bluelm3b-shape-q4_0.gguf'
    """
    if name not in NAMES:
        if os.path.exists(name):
            return os.path.abspath(name)
        raise ValueError(f"unknown model {name!r}: give a GGUF path or one of {NAMES}")
    if name == "smollm2-q4_1":
        return _smollm2_q4_1()
    os.makedirs(cache, exist_ok=True)
    if name.startswith("smollm2-"):
        return _requantize(name, cache, llama_quantize)
    qtype = name.rsplit("-", 1)[1]
    out = os.path.join(cache, f"{name.removesuffix('-' + qtype)}-shape-{qtype}.gguf")
    if name in LLAMA_1B_REQUANTIZED:
        return _requantize_1b(out, qtype, cache, llama_quantize)
    if name == "bluelm3b-q4_0":
        out = os.path.join(cache, "bluelm3b-shape-q4_0.gguf")  # the name earlier logs used
    if not os.path.exists(out):
        _make_file(out, lambda tmp: _write_random(tmp, RANDOM[name]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+", choices=NAMES)
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--llama-quantize", default=None)
    args = ap.parse_args(argv)
    for n in args.names:
        print(n, model_path(n, args.cache, args.llama_quantize))
    return 0


if __name__ == "__main__":
    sys.exit(main())
