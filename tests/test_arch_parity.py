"""Every supported decoder arch against transformers and llama.cpp, on tiny models.

``tests/data/make_tiny_archs.py`` built ``tests/data/tiny_<name>/`` with
transformers (BlueLM: vivo's code as remote code) and recorded transformers'
F32 logits over a prompt longer than the sliding window, its 16 greedy tokens
with the logits of each step, its tokenizer's ids and chat renderings, and
llama.cpp's own conversion of each folder (``llamacpp.f32.gguf``). Here each
folder is converted by this project's converter too, and both files run with
an F32 KV cache; nothing here needs torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from compare import rel_err

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
import make_tiny_archs  # noqa: E402  (the recorder's llama.cpp greedy loop, for the live check)

NAMES = [
    "llama",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3",
    "phi3",
    "mistral",
    "bluelm_2k",
    "bluelm_32k",
]
LLAMACPP = [n for n in NAMES if not n.startswith("bluelm")]  # llama.cpp has no BlueLM class
RTOL = 1e-4  # max|ours - transformers| / max|logit|


def _ref(name: str) -> Any:
    return np.load(DATA / f"tiny_{name}" / "arch_reference.npz")


def _meta(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"tiny_{name}" / "arch_reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """This converter's F32 file of a folder, made once per module."""
    from bluelm_cpp.convert import convert_checkpoint

    out_dir = tmp_path_factory.mktemp("arch_gguf")

    @cache
    def get(name: str) -> Path:
        out = out_dir / f"{name}.f32.gguf"
        convert_checkpoint(DATA / f"tiny_{name}", out, outtype="f32", progress=False)
        return out

    return get


def _file(ours: Any, name: str, which: str) -> Path:
    return ours(name) if which == "ours" else DATA / f"tiny_{name}" / "llamacpp.f32.gguf"


CASES = [(n, w) for n in NAMES for w in ("ours", "llamacpp") if w == "ours" or n in LLAMACPP]


@pytest.mark.parametrize("n_batch", [64, 7])
@pytest.mark.parametrize("name,which", CASES)
def test_logits_match_transformers(ours: Any, name: str, which: str, n_batch: int) -> None:
    from bluelm_cpp import Model

    ref = _ref(name)
    ids = [int(t) for t in ref["prompt_ids"]]
    window = _meta(name)["sliding_window"]
    assert window is None or len(ids) > window
    m = Model(str(_file(ours, name, which)), kv_type="f32", n_batch=n_batch, n_ctx=256)
    got = np.asarray(m.eval_logits(ids, all_positions=True), dtype=np.float32)
    want = ref["logits"]
    got = got[:, : want.shape[1]]  # llama.cpp drops gemma3's rows past the tokenizer (none here)
    assert got.shape == want.shape
    err = rel_err(got, want)
    print(f"{name} {which} n_batch={n_batch}: rel err {err:.2e}")
    assert err <= RTOL


@pytest.mark.parametrize("name,which", CASES)
def test_greedy_matches_transformers(ours: Any, name: str, which: str) -> None:
    """16 greedy steps through the decode path (one token at a time, KV cache):
    the same tokens, and each step's logits within the bar."""
    from bluelm_cpp import _core

    ref = _ref(name)
    model = _core.LlamaModel(str(_file(ours, name, which)))
    ctx = _core.Context(model, 256, 64, 2, kv_type="f32")
    ctx.eval([int(t) for t in ref["prompt_ids"]])
    tokens = []
    for step, want in enumerate(ref["greedy_logits"]):
        got = np.asarray(ctx.logits(), dtype=np.float32)[: want.shape[0]]
        assert rel_err(got, want) <= RTOL, f"{name} {which}: step {step}"
        tokens.append(int(got.argmax()))
        ctx.eval([int(ref["greedy"][step])])
    assert tokens == ref["greedy"].tolist()


def _want_ids(case: dict[str, Any]) -> list[int]:
    """The reference ids: sentencepiece's (llama.cpp's rule) for a SentencePiece model,
    else transformers'. Where transformers' converted SentencePiece tokenizer departs
    from sentencepiece itself (legacy=False drops the space before text that follows
    a special token or starts with spaces), this runtime follows sentencepiece and
    llama.cpp, as docs/convert.md says."""
    return case["spm_ids"] if "spm_ids" in case else case["ids"]


@pytest.mark.parametrize("name,which", CASES)
def test_tokenizer_matches_reference(ours: Any, name: str, which: str) -> None:
    """Ids of the test texts: transformers' tokenizer, and sentencepiece's for
    SentencePiece models (BlueLM's tokenizer class is remote code: sentencepiece only),
    from this converter's file and from llama.cpp's (gpt2, llama and gemma vocabularies)."""
    from bluelm_cpp import Model

    m = Model(str(_file(ours, name, which)), kv_type="f32", n_ctx=64)
    departs = 0
    for case in _meta(name)["tokenizer_cases"]:
        got = m.tokenize(case["text"], add_special=False)
        assert got == _want_ids(case), case["text"]
        if "ids" in case and case["ids"] != got:
            assert "spm_ids" in case  # only where transformers departs from sentencepiece
            departs += 1
        assert m.detokenize(got) == case["text"], case["text"]
    print(f"{name}: transformers departs from sentencepiece on {departs} text(s)")


def _chat_model(tmp_path: Path, name: str, template: str) -> Any:
    """The folder converted with ``template`` as its chat template."""
    from bluelm_cpp import Model
    from bluelm_cpp.convert import convert_checkpoint

    d = tmp_path / name
    shutil.copytree(DATA / f"tiny_{name}", d, ignore=shutil.ignore_patterns("*.gguf", "*.npz"))
    cfg_path = d / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    (d / "chat_template.jinja").write_text(template, encoding="utf-8")
    out = tmp_path / f"{name}.gguf"
    convert_checkpoint(d, out, outtype="f32", progress=False)
    return Model(str(out), kv_type="f32", n_ctx=64)


@pytest.mark.parametrize("name", NAMES)
def test_chat_template_renders_as_transformers(tmp_path: Path, name: str) -> None:
    """Model.chat's prompt: transformers' apply_chat_template text, its ids (BOS added
    as llama.cpp does when the template has none and the tokenizer asks for it)."""
    meta = _meta(name)
    template = meta.get("chat_template")
    if template is None:  # the folder's own
        template = (DATA / f"tiny_{name}" / "chat_template.jinja").read_text(encoding="utf-8")
    m = _chat_model(tmp_path, name, template)
    tok = m.tokenizer
    for i, case in enumerate(meta["chat_cases"]):
        text = m.format_chat(
            case["messages"],
            add_generation_prompt=case["gen"],
            tools=case.get("tools"),
            **case["kwargs"],
        )
        assert text == case["text"], f"{name} case {i}"
        ids = (
            m._chat_tokens(case["messages"], tools=case.get("tools"), **case["kwargs"])
            if case["gen"]
            else tok.encode(text, add_special=False, parse_special=True)
        )
        want = _want_ids(case)
        if tok.add_bos and (not want or want[0] != tok.bos_id) and case["gen"]:
            want = [tok.bos_id, *want]
        assert ids == want, f"{name} case {i}"


@pytest.mark.parametrize("name", LLAMACPP)
def test_llamacpp_greedy_on_our_conversion(ours: Any, name: str) -> None:
    """llama.cpp runs this converter's file to the same greedy tokens as this runtime
    (live with llama-cpp-python, else its recording for the same file bytes)."""
    from bluelm_cpp import _core

    path = ours(name)
    rec_path = DATA / f"tiny_{name}" / "llamacpp_greedy.json"
    if importlib.util.find_spec("llama_cpp") is None:
        if not rec_path.is_file():
            pytest.skip("no llama-cpp-python and no recording")
        rec = json.loads(rec_path.read_text())
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["gguf_sha256"], (
            "the converter's output changed since the recording: rerun "
            "make_tiny_archs.py --llamacpp-greedy"
        )
        prompt, theirs, margins = rec["prompt_ids"], rec["tokens"], rec["top2_margin"]
    else:
        prompt = make_tiny_archs.llamacpp_prompt(name)
        theirs, margins = make_tiny_archs.llamacpp_greedy(path, prompt)
    model = _core.LlamaModel(str(path))
    ctx = _core.Context(model, 256, 64, 2, kv_type="f32")
    ctx.eval(prompt)
    mine = []
    for _ in range(16):
        mine.append(int(np.asarray(ctx.logits()).argmax()))
        ctx.eval([mine[-1]])
    first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
    # llama.cpp's GELU is an F16 table: a near tie may fall the other way
    assert first is None or margins[first] < 1e-3, f"{name}: {mine} vs llama.cpp {theirs}"


def test_bluelm_chat(ours: Any) -> None:
    """BlueLM's checkpoints carry no chat template: the converter writes vivo's
    [|Human|]:...[|AI|]: format, and Model.chat answers through it."""
    from bluelm_cpp import Model
    from bluelm_cpp.convert.decoders import BLUELM_CHAT_TEMPLATE

    m = Model(str(ours("bluelm_32k")), kv_type="f32", n_ctx=128)
    assert m.metadata["tokenizer.chat_template"] == BLUELM_CHAT_TEMPLATE
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    assert m.format_chat(msgs) == "<s>[|Human|]:What is the capital of France?[|AI|]:"
    out = m.chat(msgs, max_tokens=4, temperature=0)
    assert isinstance(out, str)
    assert m.last_stats["n_prefilled"] + m.last_stats["n_reused"] == len(m._chat_tokens(msgs))
