# ruff: noqa: UP007, UP045 - pydantic evaluates these annotations at run time (Python 3.9)
"""Request bodies of the OpenAI-compatible endpoints (pydantic; unknown fields
are refused with a 400, as the issue asks, rather than silently ignored)."""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = None
    temperature: Optional[float] = None
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    stop: Optional[Union[str, list[str]]] = None
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    seed: Optional[int] = Field(default=None, ge=0)
    logit_bias: Optional[dict[str, float]] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    n: int = Field(default=1, ge=1, le=1)
    user: Optional[str] = None
    grammar: Optional[str] = None
    response_format: Optional[dict[str, Any]] = None

    def arguments(self) -> dict[str, Any]:
        """The keywords of create_completion / create_chat_completion."""
        out: dict[str, Any] = {
            "stream": self.stream,
            "logprobs": self.logprobs,  # type: ignore[attr-defined]
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "stop": self.stop,
            "seed": self.seed,
            "logit_bias": self.logit_bias,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "repeat_penalty": self.repeat_penalty,
            "grammar": self.grammar,
            "response_format": self.response_format,
        }
        if self.temperature is not None:
            out["temperature"] = self.temperature
        return out


class CompletionRequest(_Request):
    prompt: Union[str, list[int]]
    max_tokens: Optional[int] = Field(default=16, ge=0)
    logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: Optional[str] = None

    def arguments(self) -> dict[str, Any]:
        return {**super().arguments(), "max_tokens": self.max_tokens, "echo": self.echo}


class ChatRequest(_Request):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=0)
    max_completion_tokens: Optional[int] = Field(default=None, ge=0)
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Optional[Union[str, dict[str, Any]]] = None
    parallel_tool_calls: Optional[bool] = None

    def arguments(self) -> dict[str, Any]:
        limit = (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )
        return {
            **super().arguments(),
            "max_tokens": limit,
            "top_logprobs": self.top_logprobs,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
        }
