"""Error measures the tests state their bounds in."""

from __future__ import annotations

import numpy as np


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def cosine(got: np.ndarray, ref: np.ndarray) -> float:
    """Cosine similarity of the two arrays, flattened, in float64."""
    a64, r64 = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    return float(a64 @ r64 / np.linalg.norm(a64) / np.linalg.norm(r64))
