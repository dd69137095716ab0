"""Grid planning: the paper's published choices, and LLaVA-NeXT / InternVL 1.5 against
their own published code (transformers' select_best_resolution; InternVL's
find_closest_aspect_ratio, transcribed below from InternVL 1.5's README)."""

from __future__ import annotations

import numpy as np
import pytest

from bluelm_cpp.errors import InvalidArgumentError
from bluelm_cpp.vision import candidate_grids, plan_grid


# PAPER.md ("Dynamic resolution"): the published choices
@pytest.mark.parametrize(
    "size, method, kwargs, want",
    [
        ((394, 390), "relaxed", {}, (1, 1)),
        ((380, 76), "relaxed", {}, (1, 1)),
        ((380, 393), "relaxed", {}, (1, 1)),
        ((500, 102), "relaxed", {}, (2, 1)),
        ((394, 390), "llava_next", {}, (2, 2)),
        ((380, 76), "internvl", {"max_patches": 6}, (5, 1)),
        ((768, 1536), "relaxed", {"max_side": 4, "max_patches": 16}, (2, 4)),
    ],
)
def test_published_choices(size, method, kwargs, want):
    assert plan_grid(*size, method=method, **kwargs) == want


def test_relaxed_same_area_order_is_documented():
    # same area: more columns first
    assert candidate_grids(3, 9)[:3] == [(3, 3), (3, 2), (2, 3)]


def test_relaxed_never_loses_more_than_alpha_of_the_best_effective_resolution():
    from bluelm_cpp.vision import effective_and_wasted

    rng = np.random.default_rng(0)
    for _ in range(300):
        w, h = (int(x) for x in rng.integers(1, 3000, 2))
        cols, rows = plan_grid(w, h)
        best = max(effective_and_wasted(w, h, c, r, 384)[0] for c, r in candidate_grids(3, 9))
        got = effective_and_wasted(w, h, cols, rows, 384)[0]
        assert got >= (1 - 0.1) * best - 1e-9 * best, (w, h, cols, rows)


def test_llava_next_matches_transformers_select_best_resolution():
    t = pytest.importorskip("transformers.image_processing_utils")
    rng = np.random.default_rng(1)
    grids = candidate_grids(3, 9, order="rows")
    pinpoints = [[384 * r, 384 * c] for c, r in grids]  # [height, width], as transformers
    for _ in range(500):
        w, h = (int(x) for x in rng.integers(1, 2500, 2))
        bh, bw = t.select_best_resolution((h, w), pinpoints)
        assert plan_grid(w, h, method="llava_next") == (bw // 384, bh // 384), (w, h)


def _internvl_reference(width: int, height: int, max_num: int, image_size: int = 384):
    """InternVL 1.5's dynamic_preprocess grid choice (min_num=1), as published."""
    aspect_ratio = width / height
    target_ratios = set(
        (i, j)
        for n in range(1, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if i * j <= max_num and i * j >= 1
    )
    target_ratios = sorted(target_ratios, key=lambda x: x[0] * x[1])
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


@pytest.mark.parametrize("max_num", [6, 9, 12])
def test_internvl_matches_its_published_algorithm(max_num):
    rng = np.random.default_rng(max_num)
    sizes = [tuple(int(x) for x in rng.integers(1, 3000, 2)) for _ in range(400)]
    sizes += [(400, 400), (800, 800), (768, 384), (1000, 500), (384, 1152)]  # ties
    for w, h in sizes:
        assert plan_grid(w, h, method="internvl", max_patches=max_num) == _internvl_reference(
            w, h, max_num
        ), (w, h)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0, "height": 10},
        {"width": 10, "height": -1},
        {"width": 10, "height": 10, "method": "nope"},
        {"width": 10, "height": 10, "max_patches": 0},
        {"width": 10, "height": 10, "max_patches": 65},  # bounded: the search is quadratic
        {"width": 10, "height": 10, "max_side": 10**6},
        {"width": 10, "height": 10, "alpha": 1.5},
        {"width": 10.5, "height": 10},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(InvalidArgumentError):
        plan_grid(**kwargs)
