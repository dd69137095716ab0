"""The read-bandwidth probes the benchmarks use as their roofline (_core.ReadProbe,
_core.read_bandwidth) and as decode's ceiling on a model's own pages (_core.WeightsProbe):
bad arguments raise InvalidArgumentError, and a sweep reports a finite positive figure."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bluelm_cpp import _core
from bluelm_cpp.errors import InvalidArgumentError


def test_probe_sweeps_report_bytes_per_second() -> None:
    probe = _core.ReadProbe(8 << 20, 2)
    for bps in (probe.best_of(1), probe.best_of(3), _core.read_bandwidth(8 << 20, 2, 2)):
        assert math.isfinite(bps) and bps > 1e8  # any machine reads 8 MiB faster than 100 MB/s


@pytest.mark.parametrize(
    ("bytes_", "threads", "match"),
    [(1000, 1, "at least 1 MiB"), (8 << 20, 0, "n_threads"), (8 << 20, 257, "n_threads")],
)
def test_probe_rejects_bad_arguments(bytes_: int, threads: int, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        _core.ReadProbe(bytes_, threads)


def test_probe_rejects_zero_passes() -> None:
    with pytest.raises(InvalidArgumentError, match="passes"):
        _core.ReadProbe(8 << 20, 1).best_of(0)


def test_weights_probe_reads_every_matrix_of_a_token(smollm2_file: Path) -> None:
    """WeightsProbe (bench_llm.py's ceiling of decode on the model's own pages) sweeps exactly
    the bytes a token's decode reads, as the model counts them."""
    model = _core.LlamaModel(str(smollm2_file))
    probe = _core.WeightsProbe(model, 2)
    assert probe.bytes == model.weight_bytes_per_token
    bps = probe.best_of(2)
    assert math.isfinite(bps) and bps > 1e8
    with pytest.raises(InvalidArgumentError, match="n_threads"):
        _core.WeightsProbe(model, 0)
    with pytest.raises(InvalidArgumentError, match="passes"):
        probe.best_of(0)
