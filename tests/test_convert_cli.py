"""The converter's command lines: ``python convert/to_gguf.py`` and ``bluelm-cpp convert``.

Both run the same checks here: a conversion, and each bad input of the issue
(missing config.json, unknown architecture, a tensor of the wrong shape, a
truncated safetensors file, an unwritable output path, an existing output
without ``--force``, Ctrl-C) ending in a one-line error, exit status 1 (130 for
Ctrl-C), no traceback and no output or temporary file left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from test_convert import make_model, write_safetensors  # noqa: E402

from bluelm_cpp import cli as bluelm_cli  # noqa: E402
from bluelm_cpp.convert import cli as convert_cli  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TO_GGUF = ROOT / "convert" / "to_gguf.py"

# the two commands, in-process: argv -> exit status
ENTRY_POINTS: dict[str, Callable[[list[str]], int]] = {
    "to_gguf.py": convert_cli.main,
    "bluelm-cpp convert": lambda argv: bluelm_cli.main(["convert", *argv]),
}


def _commands() -> dict[str, list[str]]:
    """The same two commands as a user runs them (a new process each)."""
    cmds = {"to_gguf.py": [sys.executable, str(TO_GGUF)]}
    script = Path(sys.executable).parent / "bluelm-cpp"
    if script.is_file():  # the installed console script
        cmds["bluelm-cpp convert"] = [str(script), "convert"]
    else:
        cmds["bluelm-cpp convert"] = [sys.executable, "-m", "bluelm_cpp.cli", "convert"]
    return cmds


COMMANDS = _commands()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    make_model(d)
    return d


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# --- a good conversion


@pytest.mark.parametrize("entry", list(COMMANDS))
def test_command_converts(model_dir: Path, out_dir: Path, entry: str) -> None:
    out = out_dir / "m.gguf"
    r = subprocess.run(
        [*COMMANDS[entry], str(model_dir), "-o", str(out), "--outtype", "q4_0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "Q4_0" in r.stderr and "total" in r.stderr  # the summary table
    assert files_in(out_dir) == ["m.gguf"]
    reader = GGUFReader(out)
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == T.Q4_0 and types["output.weight"] == T.Q8_0
    # the same command refuses to replace it, then replaces it with --force
    before = out.read_bytes()
    r = subprocess.run(
        [*COMMANDS[entry], str(model_dir), "-o", str(out), "--outtype", "q8_0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "exists" in r.stderr and "--force" in r.stderr
    assert "Traceback" not in r.stderr and out.read_bytes() == before
    r = subprocess.run(
        [*COMMANDS[entry], str(model_dir), "-o", str(out), "--outtype", "q8_0", "--force"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert files_in(out_dir) == ["m.gguf"] and out.read_bytes() != before


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_help_names_the_command(entry: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        ENTRY_POINTS[entry](["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {entry}") and "--outtype" in out and "q4_1" in out


# --- bad input: one line on stderr, exit 1, nothing written


def _missing_config(d: Path) -> None:
    (d / "config.json").unlink()


def _unknown_arch(d: Path) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))


def _wrong_shape(d: Path) -> None:
    tensors = make_model(d)
    tensors["model.layers.1.self_attn.k_proj.weight"] = tensors[
        "model.layers.1.self_attn.q_proj.weight"
    ]
    write_safetensors(d / "model.safetensors", tensors)


def _truncated(d: Path) -> None:
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])


BAD_INPUTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing-config": (_missing_config, r"no config\.json"),
    "unknown-architecture": (_unknown_arch, r"'MambaForCausalLM' is not supported"),
    "wrong-shape": (_wrong_shape, r"k_proj\.weight' has shape \[64, 64\], expected \[32, 64\]"),
    "truncated-safetensors": (_truncated, r"truncated safetensors file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_bad_input(
    model_dir: Path,
    out_dir: Path,
    entry: str,
    case: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    break_it, message = BAD_INPUTS[case]
    break_it(model_dir)
    rc = ENTRY_POINTS[entry]([str(model_dir), "-o", str(out_dir / "m.gguf"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert files_in(out_dir) == []


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.name == "posix" and os.geteuid() != 0:
        d = tmp_path / "readonly"
        d.mkdir()
        d.chmod(0o555)
        return d
    if Path("/proc/self").is_dir():  # root may write anywhere, except in /proc
        return Path("/proc/self")
    pytest.skip("no folder this user cannot write to")


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_unwritable_output(
    model_dir: Path, tmp_path: Path, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _unwritable_folder(tmp_path)
    before = files_in(folder)
    rc = ENTRY_POINTS[entry]([str(model_dir), "-o", str(folder / "m.gguf"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and "not writable" in err, err
    assert files_in(folder) == before
    missing = tmp_path / "no" / "such" / "m.gguf"
    rc = ENTRY_POINTS[entry]([str(model_dir), "-o", str(missing), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "does not exist" in err, err
    assert not (tmp_path / "no").exists()


def test_unwritable_output_caught_at_create(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that passes the access check but refuses the file (e.g. a full
    or read-only file system) is still a clear error."""
    from bluelm_cpp.convert import output_file, writer
    from bluelm_cpp.errors import ModelFileError

    def refuse(*a: Any, **k: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(output_file, "_create_empty", refuse)
    with pytest.raises(ModelFileError, match="cannot create a file.*Read-only"):
        writer.convert_checkpoint(model_dir, tmp_path / "m.gguf", progress=False)
    assert not (tmp_path / "m.gguf").exists()


# --- Ctrl-C

# Runs a command in a child whose encoder sleeps per slice, so SIGINT lands
# while the temporary file is being written.
_SLOW_CHILD = """
import sys, time
from bluelm_cpp.convert import writer
real = writer._encode
def slow(data, choice):
    time.sleep(0.05)
    return real(data, choice)
writer._encode = slow
if sys.argv[1] == "to_gguf.py":
    from bluelm_cpp.convert.cli import main
    sys.exit(main(sys.argv[2:]))
from bluelm_cpp.cli import main
sys.exit(main(["convert", *sys.argv[2:]]))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child needs POSIX signals")
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_ctrl_c_leaves_nothing(model_dir: Path, out_dir: Path, entry: str) -> None:
    out = out_dir / "m.gguf"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CHILD, entry, str(model_dir), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(n.endswith(".tmp") for n in files_in(out_dir)):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the converter never started writing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted; no output written" in err and "Traceback" not in err, err
    assert files_in(out_dir) == []
