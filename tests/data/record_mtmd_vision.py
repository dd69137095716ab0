"""Record what llama.cpp's mtmd computes on the vision files of tests/data/tiny_llava_ov.

Both directions of mmproj interop (docs/vision_format.md, "llama.cpp interop"):

* our mmproj files (``convert_vision_checkpoint``, F32 and Q8_0) run by
  llama.cpp: its clip encoder on the recorded ``pixel_values_k`` (through
  ``mtmd_embed.cpp``, built here against libmtmd) and ``llama-mtmd-cli`` on a
  70x70 image, its embeddings dumped with ``MTMD_DEBUG_EMBEDDINGS``;
* llama.cpp's legacy file (``legacy/mmproj-model-f16.gguf``, from
  make_legacy_mmproj.py) run by llama.cpp, as written and without its
  ``clip.vision.feature_layer`` key (llama.cpp then runs block_count - 1
  layers; our reader must do the same);
* our BlueLM-V mmproj (projector ``mlp_downsample``): llama.cpp's refusal.

Writes ``tests/data/tiny_llava_ov/mtmd/``: ``mtmd_embeddings.npz`` (float32
``[10, 25, 64]`` per file: the three images' patches in order; ``cli_image``
u8 ``[70, 70, 3]`` and ``cli_<type>`` ``[25, 64]``) and ``mtmd.json`` (the
keys llama.cpp's loader consults and a SHA-256 per tensor of each file we
wrote, so the tests know the converter still writes what llama.cpp read;
cosines; the refusal). Needs the package installed (the converter), the
llama-cpp-python 0.3.36 sdist and its build with ``llama-mtmd-cli`` and
``libmtmd``, and g++:

    python tests/data/record_mtmd_vision.py \\
        --llama-cpp /tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp --build /tmp/llbuild
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent
SRC = DATA / "tiny_llava_ov"
OUT = SRC / "mtmd"
sys.path.insert(0, str(DATA.parent))
from vision_gguf_writer import rewrite_gguf  # noqa: E402
from vision_interop import LLAMA_CPP_SRC, consulted_keys, cos, tensor_hashes  # noqa: E402

from bluelm_cpp import _core  # noqa: E402
from bluelm_cpp.convert.vision import convert_vision_checkpoint  # noqa: E402

CLI_IMAGE_SEED = 7


def build_helper(src: Path, build: Path, dest: Path) -> None:
    cmd = [
        "g++",
        "-std=c++17",
        "-O2",
        "-Wno-unused-function",
        str(DATA / "mtmd_embed.cpp"),
        f"-I{src / 'tools' / 'mtmd'}",
        f"-I{src / 'ggml' / 'include'}",
        f"-I{src / 'include'}",
        f"-L{build / 'bin'}",
        "-lmtmd",
        "-lggml",
        "-lggml-base",
        f"-Wl,-rpath,{build / 'bin'}",
        "-o",
        str(dest),
    ]
    subprocess.run(cmd, check=True)


def clip_embed(helper: Path, mmproj: Path, pixels: np.ndarray, tmp: Path) -> np.ndarray:
    """llama.cpp's projector output ``[N, T, D]`` for ``pixels`` ``[N, 3, S, S]``."""
    (tmp / "pixels.f32").write_bytes(np.ascontiguousarray(pixels, np.float32).tobytes())
    r = subprocess.run(
        [
            str(helper),
            str(mmproj),
            str(tmp / "pixels.f32"),
            str(len(pixels)),
            str(pixels.shape[-1]),
            str(tmp / "out.f32"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    t, d = map(int, re.fullmatch(r"tokens (\d+) dim (\d+)\s*", r.stdout).groups())  # type: ignore[union-attr]
    return np.fromfile(tmp / "out.f32", np.float32).reshape(len(pixels), t, d)


def refusal(helper: Path, mmproj: Path, tmp: Path) -> str:
    """llama.cpp's error line for a file it does not load (exit status 2)."""
    (tmp / "one.f32").write_bytes(np.zeros(3 * 70 * 70, np.float32).tobytes())
    cmd = [str(helper), str(mmproj), str(tmp / "one.f32"), "1", "70", str(tmp / "o.f32")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-2000:]
    line = next(ln for ln in r.stderr.splitlines() if "failed to load" in ln)
    return line.replace(str(tmp) + os.sep, "").strip()


def mtmd_cli(build: Path, llm: Path, mmproj: Path, image: Path, tmp: Path) -> tuple[int, Any]:
    """llama-mtmd-cli on one image: (exit status, dumped embeddings or None)."""
    dump = tmp / "cli_dump.bin"
    dump.unlink(missing_ok=True)
    cmd = [
        str(build / "bin" / "llama-mtmd-cli"),
        "-m",
        str(llm),
        "--mmproj",
        str(mmproj),
        "--image",
        str(image),
        "-p",
        "What is in the image?",
        "-n",
        "4",
        "--temp",
        "0",
        "-t",
        "1",
        "-c",
        "512",
        "--chat-template",
        "chatml",
    ]
    env = dict(os.environ, MTMD_DEBUG_EMBEDDINGS=str(dump))
    r = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    if not dump.exists():
        return r.returncode, None
    n, d = np.fromfile(dump, np.int32, 2)
    return r.returncode, np.fromfile(dump, np.float32, offset=8).reshape(n, d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", type=Path, default=LLAMA_CPP_SRC, help="llama.cpp sources")
    ap.add_argument("--build", type=Path, default=Path("/tmp/llbuild"), help="llama.cpp build dir")
    args = ap.parse_args()
    from PIL import Image

    z = np.load(SRC / "reference.npz")
    pixels = np.concatenate([z[f"pixel_values_{k}"] for k in range(3)]).astype(np.float32)
    want = np.concatenate([z[f"projector_{k}"] for k in range(3)])
    legacy = SRC / "legacy" / "mmproj-model-f16.gguf"
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {
        "made_by": "tests/data/record_mtmd_vision.py",
        "llama_cpp": str(args.llama_cpp),
        "pixels": "pixel_values_0, _1, _2 of tiny_llava_ov/reference.npz, concatenated",
        "files": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        helper = tmp / "mtmd_embed"
        build_helper(args.llama_cpp, args.build, helper)
        img = np.random.default_rng(CLI_IMAGE_SEED).integers(0, 256, (70, 70, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp / "image.png")
        arrays["cli_image"] = img
        mean, std = (
            np.asarray(json.loads((SRC / "preprocessor_config.json").read_text())[k], np.float32)
            for k in ("image_mean", "image_std")
        )
        cli_pixels = ((img / np.float32(255) - mean) / std).astype(np.float32).transpose(2, 0, 1)
        for vt in ("f32", "q8_0"):
            llm, mm = tmp / f"llm-{vt}.gguf", tmp / f"mmproj-{vt}.gguf"
            convert_vision_checkpoint(SRC, llm, "f32", vt, mmproj=mm, progress=False)
            got = clip_embed(helper, mm, pixels, tmp)
            ours = _core.VisionModel(str(mm)).encode(pixels)
            arrays[vt] = got
            rc, cli = mtmd_cli(args.build, llm, mm, tmp / "image.png", tmp)
            assert rc == 0 and cli is not None, f"llama-mtmd-cli failed on {mm.name}"
            arrays[f"cli_{vt}"] = cli
            ours_cli = _core.VisionModel(str(mm)).encode(cli_pixels[None].copy())[0]
            info["files"][vt] = {
                "keys": consulted_keys(mm),
                "tensors": tensor_hashes(mm),
                "cos_llamacpp_ours": cos(got, ours),
                "cos_llamacpp_transformers": cos(got, want),
                "cos_ours_transformers": cos(ours, want),
                "cos_mtmd_cli_ours": cos(cli, ours_cli),
            }
            if vt == "f32":  # what llama.cpp did before the converter wrote feature_layer
                bare = tmp / "no-feature-layer.gguf"
                rewrite_gguf(mm, bare, drop_keys=["clip.vision.feature_layer"])
                info["files"][vt]["cos_llamacpp_transformers_without_feature_layer"] = cos(
                    clip_embed(helper, bare, pixels, tmp), want
                )
        for name, path in (("legacy_f16", legacy), ("legacy_f16_no_feature_layer", None)):
            if path is None:
                path = tmp / "legacy-no-fl.gguf"
                rewrite_gguf(legacy, path, drop_keys=["clip.vision.feature_layer"])
            got = clip_embed(helper, path, pixels, tmp)
            ours = _core.VisionModel(str(path)).encode(pixels)
            arrays[name] = got
            info["files"][name] = {
                "keys": consulted_keys(path),
                "cos_llamacpp_ours": cos(got, ours),
                "cos_llamacpp_transformers": cos(got, want),
                "cos_ours_transformers": cos(ours, want),
            }
        info["files"]["legacy_f16"]["sha256"] = hashlib.sha256(legacy.read_bytes()).hexdigest()
        bl_llm, bl_mm = tmp / "bluelm-llm.gguf", tmp / "bluelm-mmproj.gguf"
        convert_vision_checkpoint(
            DATA / "tiny_bluelm_v", bl_llm, "f32", "f32", mmproj=bl_mm, progress=False
        )
        rc, dumped = mtmd_cli(args.build, bl_llm, bl_mm, tmp / "image.png", tmp)
        info["mlp_downsample"] = {
            "clip_init": refusal(helper, bl_mm, tmp),
            "llama_mtmd_cli_exit_status": rc,
            "llama_mtmd_cli_encoded": dumped is not None,
        }
    OUT.mkdir(exist_ok=True)
    np.savez_compressed(OUT / "mtmd_embeddings.npz", **arrays)
    (OUT / "mtmd.json").write_text(json.dumps(info, indent=1) + "\n")
    for name, f in info["files"].items():
        print(name, {k: v for k, v in f.items() if k.startswith("cos")}, file=sys.stderr)
    print(info["mlp_downsample"], file=sys.stderr)


if __name__ == "__main__":
    main()
