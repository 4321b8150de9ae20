"""The OpenAI wire format we accept and emit: request models, response builders, error bodies.

Guarantees: every error leaves the server as ``{"error": {"message", "type", "param", "code"}}``
with the status code OpenAI uses for that case; requests are validated before any generation
starts, every numeric field within its range (a ``seed`` a 64-bit generator cannot take is a 400,
not a failure inside the generation), every text the model reads valid Unicode (JSON can carry a
lone surrogate, which no tokenizer can encode). Request fields OpenAI defines but this server cannot honour (logprobs, logit_bias,
penalties, tools, token-id prompts) are refused with a 400 naming the field, never silently
ignored; fields it does not know at all are ignored, as OpenAI does.

Extensions (hrmcode's, for looped hrm/trm models): ``max_segments`` (an integer >= 1) and
``halt_threshold`` (a probability strictly between 0 and 1) set a request's compute budget, and
``usage.segments`` reports the segments its generations ran (summed over choices, as token counts
are; absent for models without segments).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A seed is a signed 64-bit integer (torch's generators take no more); choice i uses seed + i, n <= 16.
SEED_MIN, SEED_MAX = -(1 << 63), (1 << 63) - 1


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it holds a lone surrogate)") from None
    return text


class APIError(Exception):
    """An error answered to the client as an OpenAI-shaped body with ``status``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return APIError(0, message, type=type, param=param, code=code).body()


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class _Sampling(BaseModel):
    """Fields shared by completions and chat completions."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    logprobs: Any = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    max_segments: int | None = Field(None, ge=1)  # hrmcode extension: the request's compute budget (hrm/trm)
    halt_threshold: float | None = Field(None, gt=0.0, lt=1.0, allow_inf_nan=False)  # hrmcode extension (act)

    @field_validator("temperature", "top_p", mode="before")
    @classmethod
    def _null_means_default(cls, value: Any) -> Any:
        return 1.0 if value is None else value

    @field_validator("n", mode="before")
    @classmethod
    def _null_n(cls, value: Any) -> Any:
        return 1 if value is None else value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return [_encodable(s) for s in stops]

    def refuse_unsupported(self) -> None:
        if self.logprobs not in (None, False, 0):
            raise APIError(400, "logprobs are not supported by this server", param="logprobs", code="unsupported")
        if self.logit_bias:
            raise APIError(400, "logit_bias is not supported by this server", param="logit_bias", code="unsupported")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise APIError(400, f"{name} is not supported by this server (use 0)", param=name, code="unsupported")

    @property
    def stop_list(self) -> list[str]:
        return list(self.stop or [])  # normalised to a list by the validator


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.suffix:
            raise APIError(400, "suffix (fill-in-the-middle) is not supported", param="suffix", code="unsupported")
        if self.best_of not in (None, 1, self.n):
            raise APIError(400, "best_of is not supported (leave it unset)", param="best_of", code="unsupported")

    @field_validator("prompt")
    @classmethod
    def _prompt_texts(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return _encodable(value) if isinstance(value, str) else [_encodable(v) for v in value]

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None

    @field_validator("content")
    @classmethod
    def _content_encodable(cls, value: str | list[dict] | None) -> str | list[dict] | None:
        return _encodable(value) if isinstance(value, str) else value

    def text(self) -> str:
        """The message text; content parts other than text are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        pieces = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(400, "only text content parts are supported", param="messages", code="unsupported")
            try:
                pieces.append(_encodable(part["text"]))
            except ValueError as exc:
                raise APIError(400, f"invalid 'messages': {exc}", param="messages") from None
        return "".join(pieces)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict] | None = None
    response_format: dict | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.tools:
            raise APIError(400, "tools are not supported by this server", param="tools", code="unsupported")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise APIError(400, "only response_format type 'text' is supported", param="response_format",
                           code="unsupported")

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, segments: int | None = None) -> dict:
    """OpenAI's usage object, plus ``segments`` (hrmcode's extension) when the model has segments."""
    body = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
    if segments is not None:
        body["segments"] = segments
    return body


def total_segments(completions: list) -> int | None:
    """The segments ``completions`` ran in all (None when the model has none)."""
    spent = [c.segments for c in completions if c.segments is not None]
    return sum(spent) if spent else None
