"""Hugging Face / PyTorch checkpoint -> GGUF converter (text decoder).

Reads ``config.json``, the weights (safetensors, single or sharded, without
torch; ``pytorch_model.bin`` through torch) and the tokenizer, and writes a
GGUF with llama.cpp's key and tensor names through gguf-py's ``GGUFWriter``.
Supported: ``LlamaForCausalLM`` and ``BlueLMForCausalLM`` (arch ``llama``),
``Qwen2ForCausalLM`` (arch ``qwen2``). The per-tensor type policy is in
:mod:`bluelm_cpp.convert.quantize_policy`.

Example:
    >>> from bluelm_cpp.convert import convert_checkpoint
    >>> summary = convert_checkpoint("SmolLM2-135M-Instruct", "smol.gguf",
    ...                              outtype="q4_0")                # doctest: +SKIP
    >>> print(summary.table())                                      # doctest: +SKIP

From the shell: ``python convert/to_gguf.py MODEL_DIR -o OUT.gguf --outtype q8_0``.
A GGUF re-encoded at another outtype (llama-quantize's mixes included):
``requantize_gguf("in.gguf", "out.gguf", "q4_k_m")``.
"""

from __future__ import annotations

from .architectures import Architecture, TensorRule, register, supported_architectures
from .cli import main
from .quantize_policy import OUTTYPES
from .requantize import requantize_gguf
from .writer import ConvertSummary, TensorRecord, convert_checkpoint

__all__ = [
    "Architecture",
    "ConvertSummary",
    "OUTTYPES",
    "TensorRecord",
    "TensorRule",
    "convert_checkpoint",
    "main",
    "register",
    "requantize_gguf",
    "supported_architectures",
]
