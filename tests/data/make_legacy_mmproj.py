"""Record the mmproj file llama.cpp's legacy tools write for tests/data/tiny_llava_ov.

llama.cpp's current ``convert_hf_to_gguf.py`` cannot convert LLaVA-OneVision,
so the mmproj files of these models on the Hub come from its
``tools/mtmd/legacy-models/``: ``llava_surgery_v2.py -C`` splits the
checkpoint into ``llava.clip`` (the SigLIP tower) and ``llava.projector``
(projector and ``image_newline``), and ``convert_image_encoder_to_gguf.py``
turns them, with a ``SiglipVisionModel`` config.json that carries the
LLaVA settings (pinpoints, ``mm_patch_merge_type``, ``vision_feature_layer``;
the recipe of llama.cpp's docs/multimodal/granitevision.md), into
``mmproj-model-f16.gguf``. This script runs exactly those two scripts from
the llama-cpp-python 0.3.36 sdist (with the sdist's own gguf-py) on a copy
of the tiny checkpoint renamed to the Hub's transformers-4 layout
(``vision_tower.vision_model.*``), then checks that every tensor of the
result is the checkpoint's (the legacy names: ``mlp.fc1`` -> ``ffn_down``,
``mlp.fc2`` -> ``ffn_up``, ``image_newline`` -> ``model.image_newline``).

Writes ``tests/data/tiny_llava_ov/legacy/mmproj-model-f16.gguf`` (the F16
default, what the Hub has; the tiny weights are float16 values, so nothing
is rounded) and ``legacy/legacy.json`` (commands, versions, SHA-256).
The legacy converter was written for transformers 4 (it reaches
``SiglipVisionModel.vision_model``, which transformers 5 no longer has), so
it runs under ``--python``, an interpreter with torch and transformers 4
(recorded with 4.46.3: ``python -m venv --system-site-packages V &&
V/bin/pip install transformers==4.46.3``); this script itself needs numpy and
safetensors:

    python tests/data/make_legacy_mmproj.py --python V/bin/python \\
        --llama-cpp /tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file, save_file

DATA = Path(__file__).resolve().parent
SRC = DATA / "tiny_llava_ov"
OUT = SRC / "legacy"
sys.path.insert(0, str(DATA.parent))
from vision_gguf_writer import SIGLIP_BLOCK, SIGLIP_EMBEDDINGS  # noqa: E402
from vision_interop import LLAMA_CPP_SRC  # noqa: E402

# The legacy converter's names: SigLIP's mlp.fc1 as ffn_down, mlp.fc2 as ffn_up.
LEGACY_BLOCK = {**SIGLIP_BLOCK, "ffn_down": "mlp.fc1", "ffn_up": "mlp.fc2"}


def hub_layout(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers 5 saves ``vision_tower.X``; the Hub's (transformers 4) files say
    ``vision_tower.vision_model.X``, which llava_surgery_v2 cuts at ``vision_model.``."""
    out = {}
    for name, t in tensors.items():
        if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model."):
            name = "vision_tower.vision_model." + name[len("vision_tower.") :]
        out[name] = t
    return out


def vit_config(config: dict) -> dict:
    """The SiglipVisionModel config.json the legacy converter reads (granitevision.md's recipe)."""
    vc = dict(config["vision_config"])
    vc.update(
        architectures=["SiglipVisionModel"],
        model_type="siglip_vision_model",
        image_grid_pinpoints=config["image_grid_pinpoints"],
        mm_patch_merge_type="spatial_unpad",
        vision_feature_layer=config["vision_feature_layer"],
        projection_dim=0,
    )
    return vc


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def expected_tensor(name: str, src: dict[str, np.ndarray]) -> np.ndarray:
    """The checkpoint tensor a legacy GGUF name holds (llama.cpp's legacy naming)."""
    if name == "model.image_newline":
        return src["image_newline"]
    if name.startswith("mm."):
        i, what = name.split(".")[1:]
        return src[f"multi_modal_projector.linear_{1 if i == '0' else 2}.{what}"]
    rest = name[len("v.") :]
    if rest.startswith("blk."):
        _, bid, part, what = rest.split(".")
        return src[f"vision_tower.encoder.layers.{bid}.{LEGACY_BLOCK[part]}.{what}"]
    return src["vision_tower." + SIGLIP_EMBEDDINGS[name]]


def check(gguf_path: Path) -> dict[str, str]:
    """Every tensor of the file equals the checkpoint's; returns the tensor types."""
    src = load_file(str(SRC / "model.safetensors"))
    types = {}
    for t in gguf.GGUFReader(str(gguf_path)).tensors:
        data = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
        want = expected_tensor(t.name, src).astype(np.float32)
        assert np.array_equal(data.reshape(want.shape), want), t.name
        types[t.name] = t.tensor_type.name
    return types


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--llama-cpp",
        type=Path,
        default=LLAMA_CPP_SRC,
        help="llama.cpp source tree (the llama-cpp-python sdist's vendor/llama.cpp)",
    )
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter with torch and transformers 4 for the legacy scripts",
    )
    args = ap.parse_args()
    legacy = args.llama_cpp / "tools" / "mtmd" / "legacy-models"
    gguf_py = args.llama_cpp / "gguf-py"
    env = dict(os.environ, PYTHONPATH=str(gguf_py))
    config = json.loads((SRC / "config.json").read_text())
    pre = json.loads((SRC / "preprocessor_config.json").read_text())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, vit, out = tmp / "model", tmp / "vit", tmp / "out"
        model.mkdir()
        save_file(
            hub_layout(load_file(str(SRC / "model.safetensors"))), str(model / "model.safetensors")
        )
        shutil.copy(SRC / "config.json", model / "config.json")
        surgery = [args.python, str(legacy / "llava_surgery_v2.py"), "-C", "-m", str(model)]
        run(surgery, env, tmp)
        vit.mkdir()
        shutil.copy(model / "llava.clip", vit / "pytorch_model.bin")
        shutil.copy(model / "llava.projector", vit / "llava.projector")
        (vit / "config.json").write_text(json.dumps(vit_config(config), indent=2))
        convert = [
            args.python,
            str(legacy / "convert_image_encoder_to_gguf.py"),
            "-m",
            str(vit),
            "--llava-projector",
            str(vit / "llava.projector"),
            "--output-dir",
            str(out),
            "--clip-model-is-vision",
            "--clip-model-is-siglip",
            "--image-mean",
            *[str(x) for x in pre["image_mean"]],
            "--image-std",
            *[str(x) for x in pre["image_std"]],
        ]
        run(convert, env, tmp)
        OUT.mkdir(exist_ok=True)
        dest = OUT / "mmproj-model-f16.gguf"
        shutil.copy(out / "mmproj-model-f16.gguf", dest)
        vit_cfg = json.loads((vit / "config.json").read_text())
    types = check(dest)
    versions = subprocess.run(
        [
            args.python,
            "-c",
            "import torch, transformers; print(torch.__version__, transformers.__version__)",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    info = {
        "made_by": "tests/data/make_legacy_mmproj.py",
        "llama_cpp": str(args.llama_cpp),
        "commands": [
            "python llava_surgery_v2.py -C -m MODEL",
            "cp MODEL/llava.clip VIT/pytorch_model.bin; cp MODEL/llava.projector VIT/",
            " ".join(["python convert_image_encoder_to_gguf.py", *convert[2:]])
            .replace(str(vit), "VIT")
            .replace(str(out), "OUT"),
        ],
        "vit_config": vit_cfg,
        "versions": {"torch": versions[0], "transformers": versions[1]},
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
        "tensor_types": types,
    }
    (OUT / "legacy.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {dest} ({dest.stat().st_size} bytes), {len(types)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
