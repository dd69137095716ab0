#!/usr/bin/env python3
"""Convert a Hugging Face checkpoint folder to GGUF.

    python convert/to_gguf.py MODEL_DIR -o OUT.gguf --outtype f32|f16|bf16|q8_0|q4_0|q4_1 [--force]

A thin wrapper of :func:`bluelm_cpp.convert.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from bluelm_cpp.convert import main
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bluelm_cpp.convert import main

if __name__ == "__main__":
    sys.exit(main())
