"""Bad input for the decoder archs: each error names the key or tensor at fault,
and nothing runs or converts as another arch.

Converter cases edit a copy of a tiny folder of tests/data (make_tiny_archs.py);
runtime cases rewrite this converter's GGUF of one with gguf-py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from bluelm_cpp.convert import convert_checkpoint  # noqa: E402
from bluelm_cpp.errors import ModelFormatError  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def _folder(
    tmp_path: Path, name: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    d = tmp_path / name
    shutil.copytree(DATA / f"tiny_{name}", d, ignore=shutil.ignore_patterns("*.gguf", "*.npz"))
    if edit is not None:
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
    return d


def _convert_error(d: Path, tmp_path: Path, match: str) -> None:
    out = tmp_path / "out.gguf"
    with pytest.raises(ModelFormatError, match=match):
        convert_checkpoint(d, out, "f32", progress=False)
    assert not out.exists() and not list(tmp_path.glob(".out.gguf*"))


@pytest.mark.parametrize(
    "name,edit,match",
    [
        (
            "qwen3",
            lambda c: c.update(architectures=["MambaForCausalLM"]),
            r"architectures\[0\] 'MambaForCausalLM' is not supported",
        ),
        (
            "qwen3",
            lambda c: c.update(intermediate_size=96),
            r"down_proj.weight' has shape \[64, 128\], expected \[64, 96\].*intermediate_size",
        ),
        (
            "qwen3",
            lambda c: c.update(head_dim=16),
            r"k_norm.weight' has shape \[32\], expected \[16\] from config.json \(head_dim\)",
        ),
        (
            "gemma3",
            lambda c: c.update(num_key_value_heads=1),
            r"k_proj.weight'.*num_key_value_heads \* head_dim",
        ),
        (
            "mistral",
            lambda c: c.update(rope_scaling={"type": "yarn", "factor": 4.0}),
            r"rope_scaling type 'yarn' is not supported by MistralForCausalLM",
        ),
        (
            "bluelm_2k",
            lambda c: c.update(rope_scaling={"type": "dynamic", "factor": 2.0}),
            r"rope_scaling type 'dynamic' is not supported by BlueLMForCausalLM",
        ),
        (
            "bluelm_32k",
            lambda c: c["rope_scaling"].pop("power"),
            r"'ntkmixed' needs a positive 'power'",
        ),
        (
            "phi3",
            lambda c: c["rope_parameters"].update(long_factor=[1.0, 2.0]),
            r"long_factor must be 4 numbers",
        ),
        ("mistral", lambda c: c.update(hidden_act="gelu"), r"hidden_act 'gelu' is not supported"),
    ],
    ids=[
        "unknown-arch",
        "ffn-size",
        "head-dim",
        "kv-heads",
        "rope-yarn",
        "rope-dynamic",
        "ntkmixed-no-power",
        "longrope-factors",
        "activation",
    ],
)
def test_converter_names_the_key(tmp_path: Path, name: str, edit: Any, match: str) -> None:
    _convert_error(_folder(tmp_path, name, edit), tmp_path, match)


@pytest.mark.parametrize(
    "name,label,match",
    [
        ("qwen3", "Qwen2ForCausalLM", r"not known for Qwen2ForCausalLM.*q_norm"),
        ("gemma3", "Gemma2ForCausalLM", r"rope_scaling type 'linear' is not supported by Gemma2"),
        ("gemma2", "Gemma3ForCausalLM", r"missing .* for Gemma3ForCausalLM.*q_norm"),
        ("phi3", "LlamaForCausalLM", r"'longrope' is not supported by LlamaForCausalLM"),
        ("bluelm_2k", "LlamaForCausalLM", r"not known for LlamaForCausalLM.*embed_layer_norm"),
        ("gemma2", "LlamaForCausalLM", r"'gelu_pytorch_tanh' is not supported by LlamaForCausalLM"),
    ],
)
def test_never_converted_as_another_arch(tmp_path: Path, name: str, label: str, match: str) -> None:
    d = _folder(tmp_path, name, lambda c: c.update(architectures=[label]))
    _convert_error(d, tmp_path, match)


def test_bluelm_stable_embedding_must_agree(tmp_path: Path) -> None:
    d = _folder(tmp_path, "bluelm_2k", lambda c: c.update(use_stable_embedding=False))
    _convert_error(d, tmp_path, "use_stable_embedding is false, but the checkpoint has")


# --- the runtime -----------------------------------------------------------------


def _rewrite(
    src: Path,
    dst: Path,
    *,
    arch: str | None = None,
    keys: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """A copy of GGUF ``src`` with the arch renamed, keys set or tensors added."""
    r = gguf.GGUFReader(src)
    old = r.fields["general.architecture"].contents()
    new = arch or old
    w = gguf.GGUFWriter(dst, new)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        name = f.name.replace(old + ".", new + ".", 1)
        if name in drop:
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), f.types[0], sub_type=sub)
    for k, v in (keys or {}).items():
        name = k.format(arch=new)
        if isinstance(v, str):
            w.add_string(name, v)
        else:
            w.add_uint32(name, v)
    for t in r.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    for n, a in (extra or {}).items():
        w.add_tensor(n, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@pytest.fixture(scope="module")
def qwen3_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("err") / "qwen3.gguf"
    convert_checkpoint(DATA / "tiny_qwen3", out, "f32", progress=False)
    return out


def _load_error(path: Path, match: str) -> None:
    from bluelm_cpp import _core

    with pytest.raises(ModelFormatError, match=match):
        _core.LlamaModel(str(path))


def test_runtime_unknown_arch(qwen3_gguf: Path, tmp_path: Path) -> None:
    _load_error(
        _rewrite(qwen3_gguf, tmp_path / "a.gguf", arch="mamba"),
        r"general.architecture 'mamba' is not supported \(supported: llama, qwen2, qwen3",
    )


def test_runtime_sizes_disagree(qwen3_gguf: Path, tmp_path: Path) -> None:
    bad = _rewrite(
        qwen3_gguf,
        tmp_path / "b.gguf",
        keys={"{arch}.feed_forward_length": 96},
        drop=("qwen3.feed_forward_length",),
    )
    _load_error(
        bad,
        r"ffn_gate.weight' has shape \[64, 128\], expected \[64, 96\] "
        r"\(from qwen3.feed_forward_length, qwen3.embedding_length\)",
    )


def test_runtime_unknown_rope_scaling(qwen3_gguf: Path, tmp_path: Path) -> None:
    bad = _rewrite(qwen3_gguf, tmp_path / "c.gguf", keys={"{arch}.rope.scaling.type": "yarn"})
    _load_error(bad, r"metadata key 'qwen3.rope.scaling.type' = 'yarn' is not supported")


def test_runtime_never_runs_as_another_arch(qwen3_gguf: Path, tmp_path: Path) -> None:
    # qwen3 relabelled as llama: its Q/K norms would be skipped silently
    _load_error(
        _rewrite(qwen3_gguf, tmp_path / "d.gguf", arch="llama"),
        r"tensor 'blk.0.attn_q_norm.weight' is not part of a 'llama' decoder",
    )
    extra = {"token_embd_norm.weight": np.ones(64, np.float32)}
    _load_error(
        _rewrite(qwen3_gguf, tmp_path / "e.gguf", extra=extra),
        r"tensor 'token_embd_norm.weight' is not part of a 'qwen3' decoder",
    )
