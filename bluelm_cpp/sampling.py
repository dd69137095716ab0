"""How the next token is chosen: :class:`SamplingParams`, defined once in C++
(``csrc/llm/sampler.h``) and bound here, and the defaults a model file carries.

Example:
    >>> from bluelm_cpp.sampling import SamplingParams
    >>> p = SamplingParams(temperature=0.7, top_k=20, seed=1)
    >>> p.replace(temperature=0).temperature
    0.0
    >>> [name for name, _default, _help in SamplingParams.fields()][:3]
    ['temperature', 'top_k', 'top_p']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _core

SamplingParams = _core.SamplingParams

# llama.cpp's general.sampling.* keys (gguf-py's Keys.General) -> our fields
_FILE_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
    "general.sampling.penalty_last_n": "repeat_last_n",
}


def sampling_from_metadata(metadata: Mapping[str, Any]) -> SamplingParams:
    """The library defaults with the values the GGUF file recommends
    (``general.sampling.*``, as llama.cpp reads them) on top.

    Example:
        >>> sampling_from_metadata({"general.sampling.temp": 0.6}).temperature
        0.6
    """
    found = {field: metadata[key] for key, field in _FILE_KEYS.items() if key in metadata}
    return SamplingParams(**found)


__all__ = ["SamplingParams", "sampling_from_metadata"]
