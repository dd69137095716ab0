"""Parity with Hugging Face transformers on tiny random-weight checkpoints.

``tests/data/make_tiny_transformers.py`` wrote the checkpoints and
transformers' float32 logits; here each is converted to an F32 GGUF and run with
an F32 KV cache. The 200-token prompt spans more than one prefill chunk for
every ``n_batch`` tried.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"
MODELS = ["tiny_llama", "tiny_qwen2"]
N_BATCHES = [128, 64, 7]

# max|ours - transformers| must stay within this fraction of max|logit|
RTOL = 1e-4

# strings for the tokenizer check against the tokenizers library
TOKENIZER_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  two  spaces\n\nand\ttabs ",
    "I'm here, you're there, don't",
    "Numbers 12345 and 3.14",
    "Привет, мир! 你好 🙂",
    "def f(x):\n    return x * 2\n",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from bluelm_cpp.convert import convert_checkpoint

    out_dir = tmp_path_factory.mktemp("tiny_gguf")
    paths = {}
    for name in MODELS:
        out = out_dir / f"{name}.f32.gguf"
        convert_checkpoint(DATA_DIR / name, out, outtype="f32", progress=False)
        paths[name] = out
    return paths


@pytest.mark.parametrize("n_batch", N_BATCHES)
@pytest.mark.parametrize("name", MODELS)
def test_logits_match_transformers(converted: dict[str, Path], name: str, n_batch: int) -> None:
    from bluelm_cpp import Model

    ref = np.load(DATA_DIR / name / "reference.npz")
    ids = [int(t) for t in ref["prompt_ids"]]
    want = ref["logits"].astype(np.float32)
    assert len(ids) > 128

    m = Model(str(converted[name]), kv_type="f32", n_batch=n_batch)
    got = np.asarray(m.eval_logits(ids, all_positions=True), dtype=np.float32)
    assert got.shape == want.shape

    scale = float(np.abs(want).max())
    diff = np.abs(got - want)
    pos = int(diff.max(axis=1).argmax())
    print(
        f"{name} n_batch={n_batch}: max|diff| {diff.max():.3g} (pos {pos}), max|logit| {scale:.3g}"
    )
    assert float(diff.max()) <= RTOL * scale, (
        f"{name} n_batch={n_batch}: max|diff| {diff.max():.3g} at position {pos} "
        f"> {RTOL} * {scale:.3g}"
    )


@pytest.mark.parametrize("name", MODELS)
def test_tokenizer_matches_tokenizers_library(converted: dict[str, Path], name: str) -> None:
    from tokenizers import Tokenizer

    from bluelm_cpp import Model

    hf = Tokenizer.from_file(str(DATA_DIR / name / "tokenizer.json"))
    m = Model(str(converted[name]), kv_type="f32")
    for text in TOKENIZER_TEXTS:
        want = hf.encode(text, add_special_tokens=False).ids
        assert list(m.tokenize(text, add_special=False)) == want, text
        assert m.detokenize(want) == text, text
