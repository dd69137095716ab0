"""The tiny BlueLM-V and LLaVA-OneVision models give the same image embeddings
on aarch64 (under qemu: tests/aarch64/run_tests.sh) as on x86 (issue 16).

The x86 side runs first, with the host's installed package:
    python tests/aarch64/test_cross_arch.py --dump x86.npz
then this module, under the aarch64 Python, computes the same arrays and
compares them with that file (BLUELM_X86_EMBEDDINGS=x86.npz). Each model is
converted twice (vision weights F32, and Q8_0 = the int8 encoder) and encodes
the three recorded images of tests/data two ways: `Model.encode_image` (Pillow
preprocessing, encoder, projector, packing: what enters the LLM) and
`VisionModel.encode` on the recorded pixels.

Bounds, those the x86 tests state against PyTorch (tests/test_vision_encoder.py,
docs/ARCHITECTURE.md "The int8 encoder"): F32 within 1e-4 of the largest value;
int8 cosine >= 0.999. Each architecture must also meet them against the
PyTorch recording, so a shared error cannot pass as agreement. Whatever the
kernel table (the portable int8 code or NEON kernels), the bounds hold.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))  # run as a script and by pytest from tests/aarch64
from compare import cosine, rel_err  # noqa: E402

DATA = TESTS / "data"
NAMES = ("tiny_bluelm_v", "tiny_llava_ov")
VISION_TYPES = ("f32", "q8_0")
F32_REL = 1e-4
INT8_COSINE = 0.999
ON_ARM = platform.machine() in ("aarch64", "arm64")


def compute(tmp: Path) -> dict[str, np.ndarray]:
    """Every embedding this module compares, by "model/vision type/input" key."""
    from bluelm_cpp import Model, _core
    from bluelm_cpp.convert.vision import convert_vision_checkpoint

    out: dict[str, np.ndarray] = {"isa": np.array(_core.isa())}
    for name in NAMES:
        ref = np.load(DATA / name / "reference.npz")
        for vt in VISION_TYPES:
            path = tmp / f"{name}_{vt}.gguf"
            convert_vision_checkpoint(
                DATA / name, path, outtype="f32", vision_outtype=vt, progress=False
            )
            with Model(path, n_ctx=256, n_threads=2, kv_type="f32") as m:
                for k in range(3):
                    out[f"{name}/{vt}/image_{k}"] = m.encode_image(ref[f"image_{k}"])
            vm = _core.VisionModel(str(path))
            for k in range(3):
                out[f"{name}/{vt}/pixels_{k}"] = vm.encode(ref[f"pixel_values_{k}"], 2)
    return out


def pytorch_reference(name: str, kind: str, k: int) -> np.ndarray:
    ref = np.load(DATA / name / "reference.npz")
    if kind == "image" or name == "tiny_bluelm_v":
        return ref[f"embeddings_{k}"]
    return ref[f"projector_{k}"]  # LLaVA-OV's per-patch projector output (before packing)


@pytest.fixture(scope="module")
def x86() -> dict[str, np.ndarray]:
    path = os.environ.get("BLUELM_X86_EMBEDDINGS")
    if not path or not Path(path).is_file():
        msg = "BLUELM_X86_EMBEDDINGS (from test_cross_arch.py --dump on x86) is not set"
        if os.environ.get("BLUELM_REQUIRE_CROSS_ARCH") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return dict(np.load(path))


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return compute(tmp_path_factory.mktemp("cross_arch"))


@pytest.mark.skipif(not ON_ARM, reason="compares aarch64 with x86: tests/aarch64/run_tests.sh")
@pytest.mark.parametrize("vt", VISION_TYPES)
@pytest.mark.parametrize("name", NAMES)
def test_same_embeddings_as_x86(x86: dict, arm: dict, name: str, vt: str) -> None:
    worst = []
    for kind in ("image", "pixels"):
        for k in range(3):
            key = f"{name}/{vt}/{kind}_{k}"
            a, x = arm[key], x86[key]
            want = pytorch_reference(name, kind, k).reshape(a.shape)
            assert a.shape == x.shape, key
            if vt == "f32":
                pair = (rel_err(a, x), rel_err(a, want), rel_err(x, want))
                assert max(pair) <= F32_REL, (key, pair)
            else:
                pair = (cosine(a, x), cosine(a, want), cosine(x, want))
                assert min(pair) >= INT8_COSINE, (key, pair)
            worst.append((key, rel_err(a, x)))
    key, err = max(worst, key=lambda kv: kv[1])
    print(
        f"{name} {vt}: aarch64 ({arm['isa']}) vs x86 ({x86['isa']}): "
        f"max |diff| / max |x86| = {err:.3g} ({key})"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--dump":
        sys.exit("usage: test_cross_arch.py --dump OUT.npz")
    with tempfile.TemporaryDirectory() as td:
        arrays = compute(Path(td))
    np.savez(sys.argv[2], **arrays)
    print(f"x86 embeddings ({arrays['isa']}): {len(arrays) - 1} arrays -> {sys.argv[2]}")
