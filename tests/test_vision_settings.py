"""Vision settings read back from converted files drive preprocessing to exactly
the recorded model inputs (pixels and the number of image tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bluelm_cpp.convert.vision import convert_vision_checkpoint
from bluelm_cpp.errors import ModelFormatError
from bluelm_cpp.vision.settings import VisionSettings, image_token_count, preprocess_image

DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("name", ["tiny_bluelm_v", "tiny_llava_ov"])
def test_file_settings_reproduce_recorded_inputs(tmp_path, name):
    core = pytest.importorskip("bluelm_cpp._core")
    out = tmp_path / "m.gguf"
    convert_vision_checkpoint(DATA / name, out, "f32", "q8_0", progress=False)
    s = VisionSettings.from_metadata(core.GGUFFile(str(out)).metadata)
    z = np.load(DATA / name / "reference.npz")
    for k in range(3):
        pixels, layout = preprocess_image(z[f"image_{k}"], s)
        assert np.abs(pixels - z[f"pixel_values_{k}"]).max() <= 1e-5
        n = image_token_count(layout, s)
        assert n == int((z[f"input_ids_{k}"] == s.image_token_id).sum())
        emb = z[f"embeddings_{k}"]
        assert n == emb.shape[0] * (emb.shape[1] if emb.ndim == 3 else 1)


def test_missing_or_bad_keys():
    with pytest.raises(ModelFormatError, match="no vision encoder"):
        VisionSettings.from_metadata({"general.architecture": "llama"})
    base = {"clip.has_vision_encoder": True, "clip.projector_type": "mlp"}
    with pytest.raises(ModelFormatError, match="image_size"):
        VisionSettings.from_metadata(base)
    base.update({"clip.vision.image_size": 70, "clip.vision.patch_size": 14})
    with pytest.raises(ModelFormatError, match="odd length"):
        VisionSettings.from_metadata({**base, "clip.vision.image_grid_pinpoints": [70]})
    with pytest.raises(ModelFormatError, match="multiples"):
        VisionSettings.from_metadata({**base, "clip.vision.image_grid_pinpoints": [70, 71]})
    with pytest.raises(ModelFormatError, match="projector"):
        VisionSettings.from_metadata({**base, "clip.projector_type": "resampler"})
    s = VisionSettings.from_metadata(base)
    assert (s.grid_method, s.tokens_per_patch) == ("relaxed", 25)
