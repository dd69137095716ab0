"""The ``draft`` option of :class:`bluelm_cpp.Model`: speculative decoding's
arguments checked and turned into what the C++ session takes.

Example:
    >>> from bluelm_cpp.draft_option import check_draft_args, draft_spec
    >>> check_draft_args(8, "prior")
    (8, False)
    >>> draft_spec("prompt_lookup")
    'prompt_lookup'
"""

from __future__ import annotations

import os
from typing import Any

from . import _core
from .errors import InvalidArgumentError, ModelFileError, check_int


def check_draft_args(n_draft: int, draft_cost: str) -> tuple[int, bool]:
    """``(n_draft, measured_cost)`` once both are valid, else InvalidArgumentError."""
    n_draft = check_int("n_draft", n_draft, 1)
    if draft_cost not in ("measured", "prior"):
        raise InvalidArgumentError(f"draft_cost must be 'measured' or 'prior', got {draft_cost!r}")
    return n_draft, draft_cost == "measured"


def draft_spec(draft: object) -> Any:
    """``"prompt_lookup"``, or the draft model loaded from a GGUF path."""
    if not isinstance(draft, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"draft must be 'prompt_lookup', a GGUF path or a Model, got {type(draft).__name__}"
        )
    spec = os.fspath(draft)
    if spec == "prompt_lookup":
        return spec
    if not os.path.exists(spec):
        raise ModelFileError(
            f"draft model file '{spec}' does not exist "
            "(draft is 'prompt_lookup', a GGUF path or a Model)"
        )
    return _core.LlamaModel(spec)


def draft_stats(ctx: Any) -> dict[str, Any]:
    """The context's speculative-round counters with the acceptance rate added."""
    st = dict(ctx.draft_stats)
    st["acceptance"] = st["accepted"] / st["drafted"] if st["drafted"] else 0.0
    return st
