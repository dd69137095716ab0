"""An OpenAI-compatible server for one model: ``python -m bluelm_cpp.server
--model PATH`` or ``bluelm-cpp serve --model PATH`` (``pip install
'bluelm-cpp[server]'`` for FastAPI, uvicorn and sse-starlette).

Example:
    $ bluelm-cpp serve --model model.gguf --port 8000 --api-key secret
    >>> from openai import OpenAI  # doctest: +SKIP
    >>> c = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")  # doctest: +SKIP
    >>> msgs = [{"role": "user", "content": "Hi"}]
    >>> c.chat.completions.create(model="x", messages=msgs)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser(prog: str = "python -m bluelm_cpp.server") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="OpenAI-compatible server for one model")
    p.add_argument("-m", "--model", default=None, help="GGUF file (default: the bundled SmolLM2)")
    p.add_argument("--mmproj", default=None, help="vision GGUF for image inputs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("-c", "--n-ctx", type=int, default=4096, help="context (0: the model's)")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: cores)")
    p.add_argument("--model-name", default=None, help="the id /v1/models reports")
    p.add_argument(
        "--max-queue", type=int, default=16, help="requests waiting or running; more get 503"
    )
    p.add_argument("--max-body-mb", type=float, default=32.0, help="larger bodies get 413")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m bluelm_cpp.server") -> int:
    """Load the model and serve it until interrupted."""
    ns = build_parser(prog).parse_args(argv)
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        print(
            f"the server needs its extra: pip install 'bluelm-cpp[server]' ({e})", file=sys.stderr
        )
        return 2
    from ..errors import BlueLMError
    from ..model import Model

    try:
        model = Model(ns.model, n_ctx=ns.n_ctx, n_threads=ns.threads, mmproj=ns.mmproj)
    except BlueLMError as e:
        print(f"bluelm-cpp: error: {e}", file=sys.stderr)
        return 2
    app = create_app(
        model,
        model_name=ns.model_name,
        api_key=ns.api_key,
        max_queue=ns.max_queue,
        max_body_bytes=int(ns.max_body_mb * (1 << 20)),
    )
    uvicorn.run(app, host=ns.host, port=ns.port, log_level="warning")
    return 0


__all__ = ["build_parser", "main"]
