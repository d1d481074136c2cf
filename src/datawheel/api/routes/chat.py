"""OpenAI-compatible chat completions: the champion answers, and the exchange is stored before it is sent.

A streamed answer is sent piece by piece as server-sent events, the local
model's as it is generated and, in proxy mode, the upstream's as it arrives;
the exchange is stored when the answer is complete, before the final event,
and a failed write (or an upstream that breaks off) ends the stream with an
error event instead of ``[DONE]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from datawheel.api.chat_schemas import (
    AssistantMessage,
    ChatCompletionIn,
    ChatCompletionOut,
    Choice,
    Usage,
    chunk,
)
from datawheel.api.deps import AppKey, IngestDep, ServerDep, TelemetryDep, WorkspaceDep
from datawheel.api.ingest import Incoming, Ingest
from datawheel.api.responses import errors
from datawheel.errors import Conflict, DatawheelError, InvalidInput
from datawheel.models.chat_serving import ChatServer
from datawheel.models.serving import ModelServer
from datawheel.store.db import new_id
from datawheel.tasks.language_model import Generator, LanguageModel
from datawheel.tasks.upstream import UpstreamStream
from datawheel.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["chat"])


def _chat(server: ModelServer) -> ChatServer:
    if not isinstance(server, ChatServer):
        raise Conflict("this workspace serves a classifier; /v1/chat/completions serves text-generation "
                       "workspaces (use /v1/predict)")
    return server


def _cut(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    """The text up to the first stop sequence, and whether one was found."""
    cuts = [text.find(s) for s in ([stop] if isinstance(stop, str) else stop or []) if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def _limits(body: ChatCompletionIn, ws: Workspace) -> int:
    cfg = ws.config.generation
    limit = body.max_completion_tokens or body.max_tokens or cfg.max_new_tokens
    if limit > cfg.max_new_tokens:
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise InvalidInput(f"is more than this server's limit of {cfg.max_new_tokens} tokens", field)
    if body.stream and body.n > 1:
        raise InvalidInput("a streamed request answers one choice; send n=1 or stream=false", "n")
    return limit


@router.post("/chat/completions", response_model=ChatCompletionOut, responses=errors(401, 403, 409, 413, 422, 502))
def create_chat_completion(body: ChatCompletionIn, _: AppKey, ws: WorkspaceDep, server: ServerDep,
                           ingest: IngestDep, telemetry: TelemetryDep) -> ChatCompletionOut | StreamingResponse:
    """The champion's answer(s) to a conversation, as OpenAI's API gives them; ``id`` is the interaction id."""
    chat = _chat(server)
    limit = _limits(body, ws)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    incoming = ingest.accept(body.user, {"messages": messages}, body.metadata,
                             body.consent.scopes() if body.consent else None)
    version, gen = chat.champion_lm()
    prompt_tokens = gen.count_tokens(incoming.item) if isinstance(gen, LanguageModel) else 0
    if prompt_tokens > ws.config.generation.max_prompt_tokens:
        raise InvalidInput(f"are {prompt_tokens} tokens; at most {ws.config.generation.max_prompt_tokens}",
                           "messages")
    if body.stream:
        # the upstream's request is sent here, so a failing upstream is a 502 and not a broken stream
        pieces = gen.stream(incoming.item, max_new_tokens=limit, temperature=body.temperature, seed=body.seed or 0)
        events = _stream(ingest, incoming, pieces, gen, body, limit, version, prompt_tokens)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    if body.temperature == 0 and body.n == 1 and isinstance(gen, LanguageModel):  # shares forward passes
        answers = [chat.greedy(gen, incoming.item, limit)]
    else:  # sampled, several answers, or the upstream's (proxy mode)
        answers = gen.generate([incoming.item], max_new_tokens=limit, temperature=body.temperature, n=body.n,
                               seed=body.seed or 0)[0]
    cut = [_cut(a.text, body.stop) for a in answers]
    record_id = ingest.record_exchange(incoming, [text for text, _ in cut], model_version=str(version))
    telemetry.predictions.inc()
    choices = [Choice(index=i, message=AssistantMessage(content=text),
                      finish_reason="stop" if stopped else a.finish_reason)
               for i, (a, (text, stopped)) in enumerate(zip(answers, cut))]
    completion = sum(a.tokens for a in answers)
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)
    return ChatCompletionOut(id=record_id, created=int(time.time()), model=f"datawheel-v{version}", choices=choices,
                             usage=usage)


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _stream(ingest: Ingest, incoming: Incoming, pieces: Iterable[str], gen: Generator, body: ChatCompletionIn,
            limit: int, version: int, prompt_tokens: int) -> Iterator[str]:
    """Relay the pieces as they come (the local model's or the upstream's), then store the whole answer."""
    record_id, created, model = new_id(), int(time.time()), f"datawheel-v{version}"
    parts: list[str] = []
    try:
        yield _sse(chunk(record_id, created, model, {"role": "assistant", "content": ""}))
        for piece in pieces:
            if piece:
                parts.append(piece)
                yield _sse(chunk(record_id, created, model, {"content": piece}))
    except DatawheelError as exc:  # the upstream broke off: nothing is stored, the client is told
        yield _sse({"error": {"code": exc.code, "message": str(exc)}})
        return
    finally:
        if isinstance(pieces, UpstreamStream):  # closed at once, even when the client left before reading it
            pieces.close()
    text, stopped = _cut("".join(parts).strip(), body.stop)
    if isinstance(pieces, UpstreamStream):
        tokens, finish = pieces.tokens, "stop" if stopped else pieces.finish_reason
    else:
        assert isinstance(gen, LanguageModel)
        tokens = len(gen.answer_ids(text)) - 1
        finish = "stop" if stopped or tokens < limit else "length"
    try:
        ingest.record_exchange(incoming, [text], model_version=str(version), record_id=record_id)
    except DatawheelError as exc:
        yield _sse({"error": {"code": exc.code, "message": str(exc)}})
        return
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=tokens, total_tokens=prompt_tokens + tokens)
    include = body.stream_options is not None and body.stream_options.include_usage
    yield _sse(chunk(record_id, created, model, {}, finish, usage if include else None))
    yield _sse("[DONE]")
