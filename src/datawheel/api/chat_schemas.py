"""OpenAI's chat-completions request and response shapes, as far as datawheel serves them.

A product switches by changing its OpenAI client's ``base_url`` and key, so the
field names, types and defaults are OpenAI's. ``user`` is the end user's id (the
one consent and erasure are keyed by), and datawheel's own ``consent`` and
``metadata`` ride along as extra fields (``extra_body`` in the OpenAI client).
Parameters datawheel accepts but does not act on (``top_p``, penalties) are
listed so a client sending them is not refused; anything else is a 422 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from datawheel.api.schemas import USER_ID_PATTERN, Consent, Metadata, Text

MAX_N = 4


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    #: a string, or OpenAI's list of text parts (joined); images are not served by a text model
    content: Text | list[TextPart]
    name: StrictStr | None = Field(None, max_length=64)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=64)]
    #: the end user's id; required: datawheel logs every exchange under its user's consent
    user: Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=USER_ID_PATTERN)]
    model: StrictStr | None = Field(None, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = None
    seed: int | None = Field(None, ge=0, le=2 ** 31 - 1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    consent: Consent | None = None
    metadata: Metadata | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(BaseModel):
    """OpenAI's ``chat.completion``; ``id`` is the interaction id feedback refers to."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    #: ``datawheel-v<version>``: the model version that answered
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One streamed event's data (OpenAI's ``chat.completion.chunk``), as :func:`chunk` builds it; the last
    carries ``usage`` when ``stream_options.include_usage`` asked for it."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


def chunk(record_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
          usage: Usage | None = None) -> dict:
    """One server-sent ``chat.completion.chunk`` event's data."""
    out: dict[str, Any] = {"id": record_id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage is not None:
        out["usage"] = usage.model_dump()
    return out
