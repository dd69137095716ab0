"""The converter's bad inputs: a missing or unknown config, bad tensors, a
truncated file, a missing shard, no tokenizer, an existing or unwritable output
and an interrupt mid-write each end in the project's own exception, with no
output or temporary file left behind. Checkpoints from test_convert's builders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from test_convert import (  # noqa: E402
    leftovers,
    make_model,
    read,
    write_safetensors,
)

from bluelm_cpp.convert import convert_checkpoint, main  # noqa: E402
from bluelm_cpp.convert import writer as writer_mod  # noqa: E402
from bluelm_cpp.errors import InvalidArgumentError, ModelFileError, ModelFormatError  # noqa: E402

# --- errors


@pytest.fixture()
def llama_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    d = tmp_path / "llama"
    return d, make_model(d)


def _expect_error(model_dir: Path, out: Path, exc: type[Exception], match: str, **kw: Any) -> None:
    with pytest.raises(exc, match=match):
        convert_checkpoint(model_dir, out, progress=False, **kw)
    assert not out.exists() or kw.get("_keep")
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_error_missing_config(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    (d / "config.json").unlink()
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "config.json")


def test_error_unknown_architecture(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "MambaForCausalLM.*not supported")


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda t: t.pop("model.layers.1.mlp.up_proj.weight"),
            "missing.*model.layers.1.mlp.up_proj.weight",
        ),
        (
            lambda t: t.update(
                {"model.layers.0.mlp.up_proj.weight": np.zeros((64, 64), np.float32)}
            ),
            r"up_proj.weight.*shape \[64, 64\], expected \[128, 64\]",
        ),
        (
            lambda t: t.update({"model.layers.0.extra.weight": np.zeros(4, np.float32)}),
            "not known.*extra",
        ),
        (
            lambda t: t.update(
                {"model.layers.7.mlp.up_proj.weight": np.zeros((128, 64), np.float32)}
            ),
            "block 7",
        ),
    ],
    ids=["missing-tensor", "wrong-shape", "unknown-tensor", "block-out-of-range"],
)
def test_error_bad_tensors(tmp_path: Path, edit: Any, match: str) -> None:
    d = tmp_path / "m"
    tensors = make_model(d)
    edit(tensors)
    write_safetensors(d / "model.safetensors", tensors)
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, match)


def test_error_truncated_safetensors(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    _expect_error(
        d,
        tmp_path / "o.gguf",
        ModelFormatError,
        "truncated.*model.safetensors|model.safetensors.*truncated",
    )
    f.write_bytes(b"\x05\x00")
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "truncated")


def test_error_missing_shard_and_no_weights(tmp_path: Path) -> None:
    d = tmp_path / "m"
    make_model(d, shards=2)
    (d / "model-00002-of-00002.safetensors").unlink()
    _expect_error(
        d, tmp_path / "o.gguf", ModelFormatError, "model-00002-of-00002.safetensors.*missing"
    )
    for p in d.glob("model*"):
        p.unlink()
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "no weights found")


def test_error_no_tokenizer(llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    d, _ = llama_dir
    (d / "tokenizer.json").unlink()
    _expect_error(d, tmp_path / "o.gguf", ModelFormatError, "no tokenizer")


def test_error_existing_output_and_force(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    out = tmp_path / "o.gguf"
    out.write_bytes(b"keep me")
    with pytest.raises(ModelFileError, match="exists"):
        convert_checkpoint(d, out, progress=False)
    assert out.read_bytes() == b"keep me"
    convert_checkpoint(d, out, force=True, progress=False)
    assert out.read_bytes()[:4] == b"GGUF"
    assert leftovers(tmp_path) == ["o.gguf"]


def test_error_unwritable_output(
    llama_dir: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    d, _ = llama_dir
    with pytest.raises(ModelFileError, match="does not exist"):
        convert_checkpoint(d, tmp_path / "no" / "such" / "o.gguf", progress=False)
    (tmp_path / "adir.gguf").mkdir()
    with pytest.raises(ModelFileError, match="folder"):
        convert_checkpoint(d, tmp_path / "adir.gguf", force=True, progress=False)
    with pytest.raises(InvalidArgumentError, match="q3_k"):
        convert_checkpoint(d, tmp_path / "x.gguf", "q3_k", progress=False)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_interrupt_mid_write_leaves_nothing(
    llama_dir: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exc: type,
) -> None:
    d, _ = llama_dir
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.gguf"
    real = writer_mod._encode
    calls = []

    def flaky(data: np.ndarray, choice: Any) -> np.ndarray:
        calls.append(1)
        if len(calls) == 5:
            seen = [p.name for p in out_dir.iterdir()]
            assert len(seen) == 1 and seen[0].endswith(".tmp")  # the temp file is being written
            raise exc("disk full" if exc is OSError else None)
        return real(data, choice)

    monkeypatch.setattr(writer_mod, "_encode", flaky)
    expected = KeyboardInterrupt if exc is KeyboardInterrupt else ModelFileError
    with pytest.raises(expected):
        convert_checkpoint(d, out, "q8_0", progress=False)
    assert list(out_dir.iterdir()) == []


def test_cli(
    llama_dir: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d, _ = llama_dir
    out = tmp_path / "cli.gguf"
    assert main([str(d), "-o", str(out), "--outtype", "q4_1"]) == 0
    err = capsys.readouterr().err
    assert "Q4_1" in err and "total" in err
    assert read(out)[1]["blk.0.attn_q.weight"].tensor_type == T.Q4_1
    assert main([str(d), "-o", str(out), "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main([str(d), "-o", str(out), "--quiet", "--force"]) == 0
