"""Fuzzing of the image path with hypothesis (the CI slice; the 200,000-run
campaign is tests/fuzz/vision/campaign.py): plan_grid on any size 1..100000 per
side, load_image (and patch cutting) on random bytes, mutated seed images and
PNG headers claiming any size. Only results inside the limits or the project's
errors are allowed (checks in tests/fuzz/vision/vision_fuzz.py)."""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("PIL")
pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = Path(__file__).resolve().parent / "fuzz" / "vision"
sys.path.insert(0, str(FUZZ))
import vision_fuzz as vf  # noqa: E402

from bluelm_cpp.errors import ImageError  # noqa: E402
from bluelm_cpp.vision import METHODS, bluelm_v_patches_uint8, load_image  # noqa: E402

SIDE = st.integers(1, 100000)


@pytest.fixture(autouse=True)
def _quiet_pillow():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on the corrupt inputs it survives
        yield


@settings(max_examples=400, deadline=None)
@given(
    w=SIDE,
    h=SIDE,
    method=st.sampled_from(METHODS),
    max_side=st.one_of(st.none(), st.integers(1, 6)),
    max_patches=st.integers(1, 16),
    alpha=st.sampled_from([0.0, 0.1, 0.5, 0.99]),
)
def test_plan_grid_any_size(
    w: int, h: int, method: str, max_side: int | None, max_patches: int, alpha: float
) -> None:
    assert vf.check_plan_grid(w, h, method, max_side, max_patches, alpha) is not None


@settings(max_examples=150, deadline=None)
@given(w=SIDE, h=SIDE)
def test_png_header_claiming_any_size(w: int, h: int) -> None:
    vf.check_forged(w, h)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600))
def test_load_random_bytes(data: bytes) -> None:
    vf.check_load(data)


SEEDS = vf.seed_inputs()


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(SEEDS) - 1), rnd=st.randoms(use_true_random=False))
def test_load_mutated_seed_images(which: int, rnd: random.Random) -> None:
    vf.check_load(vf.mutate(SEEDS[which], rnd))


def test_seed_images_all_load() -> None:
    sizes = [vf.check_load(d) for d in SEEDS]
    assert all(s is not None for s in sizes)


REGRESSIONS = sorted((FUZZ / "regressions").glob("*.*"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_regression_inputs(path: Path) -> None:
    data = path.read_bytes()
    vf.check_load(data)
    if path.name == "tiff_float_offset.tiff":
        # campaign find: Pillow's TIFF decoder raised TypeError through load_image
        with pytest.raises(ImageError, match="cannot decode image: TypeError"):
            load_image(data)
        return
    img = load_image(data)
    # exif_bad_tiff_header.jpg (campaign find): the loaded image failed to load
    # again, and so to cut into patches, because its corrupt EXIF was re-parsed.
    assert load_image(img).size == img.size
    assert bluelm_v_patches_uint8(img, patch_side=vf.PATCH)[0].shape[0] >= 1
