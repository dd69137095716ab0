"""The command line's sampling: `run` is deterministic out of the box (the
README's first command), and `run`/`chat` take the sampling defaults a GGUF
file carries (llama.cpp's general.sampling.* keys, written here by gguf-py's
own gguf_new_metadata script)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gguf
import pytest
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

import bluelm_cpp
from bluelm_cpp.cli import build_parser

DATA = Path(__file__).parent / "data"
QUESTION = "Which city is the capital of France?"


def test_readme_first_command_is_deterministic(smollm2: bluelm_cpp.Model) -> None:
    cmd = [sys.executable, "-m", "bluelm_cpp.cli", "run", QUESTION, "-n", "24", "-t", "2"]
    runs = [subprocess.run(cmd, capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    want = smollm2.chat([{"role": "user", "content": QUESTION}], 24, temperature=0)
    assert runs[0].stdout == runs[1].stdout == want + "\n"
    assert "Paris" in want  # what the README says it answers


@pytest.fixture(scope="module")
def tiny_with_sampling(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bluelm_cpp.convert.writer import convert_checkpoint

    d = tmp_path_factory.mktemp("sampling")
    plain = d / "tiny.gguf"
    convert_checkpoint(DATA / "tiny_llama", plain, "f32", progress=False)
    out = d / "tiny_sampling.gguf"
    reader = gguf.GGUFReader(str(plain))
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(str(out), arch=arch, endianess=reader.endianess)
    f32 = gguf.GGUFValueType.FLOAT32
    new = {
        "general.sampling.temp": MetadataDetails(f32, 0.6),
        "general.sampling.top_k": MetadataDetails(gguf.GGUFValueType.INT32, 20),
        "general.sampling.top_p": MetadataDetails(f32, 0.8),
        "general.sampling.penalty_repeat": MetadataDetails(f32, 1.1),
    }
    copy_with_new_metadata(reader, writer, new, [])
    return out


def test_model_file_sampling_defaults(tiny_with_sampling: Path) -> None:
    with bluelm_cpp.Model(tiny_with_sampling, n_ctx=64, n_threads=1) as m:
        d = m.sampling_defaults
        assert (d.temperature, d.top_k, d.top_p, d.repeat_penalty) == (0.6, 20, 0.8, 1.1)
        assert d.min_p == bluelm_cpp.SamplingParams().min_p  # not in the file: the library's
        from bluelm_cpp.cli import _sampling

        ns = build_parser().parse_args(["run", "x", "--top-k", "5", "--seed", "3"])
        got = _sampling(ns, m, greedy=True)
        # the file's temperature wins over run's greedy default; options win over both
        assert (got.temperature, got.top_k, got.top_p, got.seed) == (0.6, 5, 0.8, 3)


def test_cli_options_are_the_sampling_fields() -> None:
    ns = build_parser().parse_args(["chat", "--temperature", "0.3", "--repeat-last-n", "8"])
    fields = {name for name, _d, _h in bluelm_cpp.SamplingParams.fields()} - {"logit_bias"}
    assert fields <= set(vars(ns)) and ns.temperature == 0.3 and ns.repeat_last_n == 8
