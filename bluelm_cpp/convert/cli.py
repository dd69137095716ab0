"""Command line of the converter (``convert/to_gguf.py`` and ``bluelm-cpp convert``).

Example:
    >>> from bluelm_cpp.convert.cli import main
    >>> main(["model_dir", "-o", "model.gguf", "--outtype", "q8_0"])   # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import BlueLMError, InvalidArgumentError
from .quantize_policy import OUTTYPES


def build_parser(prog: str = "to_gguf.py") -> argparse.ArgumentParser:
    """The argument parser (reusable as a ``convert`` subcommand)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Convert a Hugging Face checkpoint (LLaMA, Qwen2, BlueLM) to GGUF.",
    )
    p.add_argument("model_dir", help="folder with config.json, weights and tokenizer files")
    p.add_argument("-o", "--output", required=True, help="GGUF file to write")
    p.add_argument(
        "--outtype",
        default="f16",
        choices=list(OUTTYPES),
        help="type of the weight matrices (default f16); norms and biases stay f32",
    )
    p.add_argument(
        "--mmproj",
        metavar="OUT",
        help="vision models: write the vision tower to this separate mmproj GGUF "
        "(default: into the output file)",
    )
    p.add_argument(
        "--vision-outtype",
        default="q8_0",
        choices=["f32", "f16", "q8_0"],
        help="vision models: type of the encoder/projector matrices (default q8_0)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "to_gguf.py") -> int:
    """Run the converter; returns the exit status (0 ok, 1 error, 130 interrupted).

    Example:
        >>> main(["tests/data/tiny_llama", "-o", "t.gguf", "--force"])  # doctest: +SKIP
        0
    """
    args = build_parser(prog).parse_args(argv)
    from .vision import convert_vision_checkpoint
    from .vision_hparams import is_vision_checkpoint
    from .writer import convert_checkpoint

    try:
        if is_vision_checkpoint(args.model_dir):
            convert_vision_checkpoint(
                args.model_dir,
                args.output,
                args.outtype,
                args.vision_outtype,
                mmproj=args.mmproj,
                force=args.force,
                progress=not args.quiet,
            )
            return 0
        if args.mmproj:
            raise InvalidArgumentError("--mmproj is only for vision checkpoints")
        convert_checkpoint(
            args.model_dir, args.output, args.outtype, force=args.force, progress=not args.quiet
        )
    except BlueLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; no output written", file=sys.stderr)
        return 130
    return 0
