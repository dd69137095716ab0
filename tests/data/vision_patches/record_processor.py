"""Record transformers' LLaVA-OneVision image-processor pixels for CI.

For each (width, height) in ``SIZES`` a synthetic image (``synthetic_image``,
numpy only, so the tests rebuild it bit for bit) goes through
``LlavaOnevisionImageProcessor`` -- the PIL backend, which is what
``AutoImageProcessor`` gives without torchvision -- with rescaling and
normalisation off, so the output is the resampled 0..255 pixels. Stored per
size: the patch count, the chosen canvas, every patch's pixel sum, and every
16th row and column of every patch (uint8). The tests compare
``bluelm_cpp.vision.llava_onevision_patches_uint8`` against these.

    python tests/data/vision_patches/record_processor.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STRIDE = 16
SIZES = [
    (394, 390), (380, 76), (380, 393), (500, 102), (768, 1536), (384, 384), (383, 385),
    (1152, 384), (640, 480), (1024, 768), (333, 777), (1536, 768), (100, 2000), (2000, 100),
    (57, 31), (800, 600), (1280, 720), (720, 1280), (20, 900), (1, 1), (5, 3), (2500, 1800),
    (1000, 999), (777, 2222),
]  # fmt: skip


def synthetic_image(width: int, height: int, seed: int) -> np.ndarray:
    """Gradients, stripes and noise (uint8 HxWx3): every resampling tap matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [
            127 + 100 * np.sin(x / 3.0 + seed),
            255 * (x + y) / (width + height),
            np.where((x // 7 + y // 5) % 2 == 0, 230.0, 25.0),
        ],
        axis=-1,
    )
    img += rng.normal(0, 25, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    import transformers
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    proc = LlavaOnevisionImageProcessorPil(do_rescale=False, do_normalize=False)
    cases = []
    arrays = {}
    for i, (w, h) in enumerate(SIZES):
        img = synthetic_image(w, h, i)
        # channels_last: tiny images (1x1, 5x3) are ambiguous otherwise
        out = proc(img, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
        px = np.rint(out).astype(np.uint8).transpose(0, 2, 3, 1)  # [N, S, S, 3]
        if not np.array_equal(px.astype(np.float32).transpose(0, 3, 1, 2), out):
            raise RuntimeError("processor output is not whole numbers")
        arrays[f"sub_{i}"] = px[:, ::STRIDE, ::STRIDE]
        cases.append(
            {
                "width": w,
                "height": h,
                "seed": i,
                "n_patches": int(px.shape[0]),
                "patch_sums": [int(p.astype(np.int64).sum()) for p in px],
            }
        )
    np.savez_compressed(HERE / "llava_ov_processor.npz", **arrays)
    meta = {
        "generator": "tests/data/vision_patches/record_processor.py",
        "processor": "LlavaOnevisionImageProcessorPil (default pinpoints, 384, bicubic)",
        "transformers": transformers.__version__,
        "pillow": __import__("PIL").__version__,
        "stride": STRIDE,
        "cases": cases,
    }
    (HERE / "llava_ov_processor.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(cases)} sizes, {sum(c['n_patches'] for c in cases)} patches")


if __name__ == "__main__":
    main()
