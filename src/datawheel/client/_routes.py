"""Every route as a description: method, path, key, body and answer model, written once for both clients.

Each function here takes a client method's arguments and returns the :class:`Call` (one answer),
:class:`Stream` (server-sent events) or :class:`Pages` (a list followed by cursor) it stands for;
``Client`` and ``AsyncClient`` only run them. A route that creates something and answers only its
id (an interaction, feedback, a contribution, a started cycle) returns that id as a ``str``; every
other route returns its answer model from ``api/responses.py`` (chat: ``api/chat_schemas.py``).

The chat models are imported on first use: their module brings the request schemas with it, which
a client that never chats need not load.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from datawheel.api.responses import (
    AliasesOut,
    AnnotationOut,
    AuditEntry,
    AuditOut,
    CanaryReport,
    CanaryStarted,
    ConsentOut,
    Created,
    CycleOut,
    CyclesOut,
    CycleStarted,
    CycleSummary,
    ErasureReceipt,
    EventOut,
    HealthOut,
    ModelOut,
    ModelsOut,
    PredictOut,
    QueueOut,
    RecordOut,
    ShadowReport,
    StoredReceipt,
    UserDataOut,
)
from datawheel.client._call import Call, Pages, given, model, segment, validated
from datawheel.client._sse import ServerEvent, Stream
from datawheel.errors import ClientError, UnexpectedAnswer, WaitTimedOut

if TYPE_CHECKING:
    from datawheel.api.chat_schemas import ChatCompletionChunk, ChatCompletionOut


def _consent(training: bool | None) -> dict[str, Any]:
    return {} if training is None else {"consent": {"training": training}}


def _created(resp: httpx.Response) -> str:
    return model(Created)(resp).id


def _cycle_id(resp: httpx.Response) -> str:
    return model(CycleStarted)(resp).cycle_id


def _text(resp: httpx.Response) -> str:
    return resp.text


# -- the product's routes (app key, or the admin key) -----------------------------------------


def predict(user_id: str, input: dict[str, Any], *, consent: bool | None = None,
            metadata: dict[str, Any] | None = None) -> Call[PredictOut]:
    """The champion's answer (a canary user's: the canary's); the interaction is stored before it is sent."""
    body = {"user_id": user_id, "input": input, **_consent(consent), **given(metadata=metadata)}
    return Call("predict", "POST", "/v1/predict", "app", model(PredictOut), json=body)


def log_interaction(user_id: str, input: dict[str, Any], output_label: str, model_name: str,
                    model_version: str | int, *, scores: dict[str, float] | None = None,
                    consent: bool | None = None, metadata: dict[str, Any] | None = None) -> Call[str]:
    """Log what your own model answered, so its users' feedback can train datawheel's; the interaction id."""
    body = {"user_id": user_id, "input": input, "output_label": output_label, "model_name": model_name,
            "model_version": model_version, **_consent(consent), **given(scores=scores, metadata=metadata)}
    return Call("log_interaction", "POST", "/v1/interactions", "app", _created, json=body)


def _chat_body(name: str, user_id: str, messages: list[dict[str, Any]], consent: bool | None,
               metadata: dict[str, Any] | None, params: dict[str, Any]) -> dict[str, Any]:
    if "stream" in params:
        raise TypeError(f"{name}() takes no stream=: chat() answers whole, chat_stream() streams")
    return {"messages": messages, "user": user_id, **params, **_consent(consent), **given(metadata=metadata)}


def _completion(resp: httpx.Response) -> ChatCompletionOut:
    from datawheel.api.chat_schemas import ChatCompletionOut

    return model(ChatCompletionOut)(resp)


def chat(user_id: str, messages: list[dict[str, Any]], *, consent: bool | None = None,
         metadata: dict[str, Any] | None = None, **params: Any) -> Call[ChatCompletionOut]:
    """A text-generation workspace's answer, OpenAI's chat completion (``id`` is the interaction id).

    ``params`` are OpenAI's (``max_tokens``, ``temperature``, ``n``, ``stop``, ``seed``...).
    """
    body = _chat_body("chat", user_id, messages, consent, metadata, params)
    return Call("chat", "POST", "/v1/chat/completions", "app", _completion, json=body)


class _ErrorEvent(BaseModel):
    code: str
    message: str


class _StreamError(BaseModel):
    """The event that ends a chat stream which failed after its 200 (``api/routes/chat.py``)."""

    error: _ErrorEvent


def _chunk(event: ServerEvent) -> ChatCompletionChunk | None:
    from datawheel.api.chat_schemas import ChatCompletionChunk

    if event.data == "[DONE]":
        return None
    try:
        data = json.loads(event.data)
    except ValueError:
        raise UnexpectedAnswer(200, "a chat stream's event is not JSON", "unexpected_answer") from None
    if isinstance(data, dict) and "error" in data:  # the answer could not be stored (or the upstream broke off)
        error = validated(_StreamError, data).error
        raise ClientError(None, error.message, error.code)
    return validated(ChatCompletionChunk, data if isinstance(data, dict) else event.data)


def chat_stream(user_id: str, messages: list[dict[str, Any]], *, consent: bool | None = None,
                metadata: dict[str, Any] | None = None, include_usage: bool = False,
                **params: Any) -> Stream[ChatCompletionChunk]:
    """The answer piece by piece, as OpenAI's ``chat.completion.chunk`` events (``id``: the interaction id).

    The exchange is stored before the last chunk; if it cannot be, the stream ends with a ``ClientError``
    carrying the server's code instead. ``include_usage``: the last chunk carries the token counts.
    """
    body = {**_chat_body("chat_stream", user_id, messages, consent, metadata, params), "stream": True,
            **({"stream_options": {"include_usage": True}} if include_usage else {})}
    return Stream(Call("chat_stream", "POST", "/v1/chat/completions", "app", _text, json=body), _chunk)


def feedback(interaction_id: str, user_id: str, *, label: str | None = None, rating: int | None = None,
             comment: str | None = None, correction: str | None = None, chosen: int | None = None) -> Call[str]:
    """``label`` for a classifier; ``correction`` (the answer wanted) and ``chosen`` (0 or 1 of an ``n=2``
    request) for text generation; ``rating`` (-1 or 1) and ``comment`` for either. The feedback's id."""
    body = {"interaction_id": interaction_id, "user_id": user_id,
            **given(label=label, rating=rating, comment=comment, correction=correction, chosen=chosen)}
    return Call("feedback", "POST", "/v1/feedback", "app", _created, json=body)


def contribute(user_id: str, input: dict[str, Any], label: str, *, consent: bool,
               metadata: dict[str, Any] | None = None) -> Call[str]:
    """An example the user donates with its label; the record's id."""
    body = {"user_id": user_id, "input": input, "label": label, **_consent(consent), **given(metadata=metadata)}
    return Call("contribute", "POST", "/v1/contributions", "app", _created, json=body)


def set_consent(user_id: str, training: bool | None = None, analytics: bool | None = None) -> Call[ConsentOut]:
    """Set consent per scope (a scope left None is left as it is); kept in the history and the audit chain."""
    return Call("set_consent", "PUT", f"/v1/users/{segment(user_id)}/consent", "app", model(ConsentOut),
                json=given(training=training, analytics=analytics))


def user_data(user_id: str, *, limit: int | None = None, cursor: str | None = None) -> Call[UserDataOut]:
    """One page of everything held about the user; ``next_cursor`` asks for the next (``iter_user_records``)."""
    return Call("user_data", "GET", f"/v1/users/{segment(user_id)}/data", "app", model(UserDataOut),
                params=given(limit=limit, cursor=cursor))


def iter_user_records(user_id: str, *, limit: int | None = None) -> Pages[RecordOut]:
    """Every record held about the user, page after page (``limit``: the page size)."""
    return Pages(lambda cursor: user_data(user_id, limit=limit, cursor=cursor), lambda page: page.records)


def erase(user_id: str) -> Call[ErasureReceipt]:
    """Delete everything held about the user; the receipt names the model versions trained on their data."""
    return Call("erase", "DELETE", f"/v1/users/{segment(user_id)}", "app", model(ErasureReceipt))


def erasure_receipt(receipt_id: str) -> Call[StoredReceipt]:
    """A past erasure's receipt as it stands now (later cycles may have named more model versions)."""
    return Call("erasure_receipt", "GET", f"/v1/erasures/{segment(receipt_id)}", "app", model(StoredReceipt))


# -- annotators (annotator key, or the admin key) ------------------------------------------------


def annotation_queue(limit: int | None = None) -> Call[QueueOut]:
    """The items whose labels are worth most, best first."""
    return Call("annotation_queue", "GET", "/v1/annotation/queue", "annotator", model(QueueOut),
                params=given(limit=limit))


def annotate(item_id: str, label: str) -> Call[AnnotationOut]:
    """A high-trust label for an item the queue lists now; the next cycle anchors the item to it."""
    return Call("annotate", "POST", f"/v1/annotation/{segment(item_id)}", "annotator", model(AnnotationOut),
                json={"label": label})


# -- operators (admin key) --------------------------------------------------------------------------


def start_cycle(warm_start: bool | None = None) -> Call[str]:
    """Start a turn of the wheel; its cycle id. ``warm_start``: from the champion's weights or from scratch
    (None: as the workspace's config says)."""
    return Call("start_cycle", "POST", "/v1/cycles", "admin", _cycle_id,
                json=None if warm_start is None else {"warm_start": warm_start})


def retrain_without(user_id: str) -> Call[str]:
    """Start a cycle that replaces the champion with one trained without this (erased) user; its id."""
    return Call("retrain_without", "POST", f"/v1/users/{segment(user_id)}/retrain-without", "admin", _cycle_id)


def cycles(*, limit: int | None = None, cursor: str | None = None) -> Call[CyclesOut]:
    """One page of cycles; ``next_cursor`` asks for the next (``iter_cycles`` follows them)."""
    return Call("cycles", "GET", "/v1/cycles", "admin", model(CyclesOut), params=given(limit=limit, cursor=cursor))


def iter_cycles(*, limit: int | None = None) -> Pages[CycleSummary]:
    """Every cycle, page after page (``limit``: the page size); ``cycle(cycle_id)`` has a cycle's report."""
    return Pages(lambda cursor: cycles(limit=limit, cursor=cursor), lambda page: page.cycles)


def cycle(cycle_id: str) -> Call[CycleOut]:
    """A cycle's state, and its report once it has ended."""
    return Call("cycle", "GET", f"/v1/cycles/{segment(cycle_id)}", "admin", model(CycleOut))


def still_running(state: CycleOut, deadline: float, timeout: float) -> bool:
    """Whether ``wait_cycle`` polls again; :class:`WaitTimedOut` once ``deadline`` (monotonic) has passed."""
    if state.status != "running":
        return False
    if time.monotonic() > deadline:
        raise WaitTimedOut(f"the cycle was still running after {timeout:g} s; it goes on (wait again, or read "
                           "it with cycle())")
    return True


def models(*, limit: int | None = None, cursor: str | None = None) -> Call[ModelsOut]:
    """One page of the registry's versions; ``next_cursor`` asks for the next (``iter_models``)."""
    return Call("models", "GET", "/v1/models", "admin", model(ModelsOut), params=given(limit=limit, cursor=cursor))


def iter_models(*, limit: int | None = None) -> Pages[ModelOut]:
    """Every model version, page after page (``limit``: the page size)."""
    return Pages(lambda cursor: models(limit=limit, cursor=cursor), lambda page: page.models)


def promote(version: int) -> Call[AliasesOut]:
    """Make ``version`` the champion (served by every worker within a second); the aliases after."""
    return Call("promote", "POST", f"/v1/models/{int(version)}/promote", "admin", model(AliasesOut))


def rollback() -> Call[AliasesOut]:
    """Swap the champion and the previous champion; the aliases after."""
    return Call("rollback", "POST", "/v1/rollback", "admin", model(AliasesOut))


def start_shadow(version: int) -> Call[AliasesOut]:
    """Let ``version`` predict on live traffic beside the champion; only the champion answers."""
    return Call("start_shadow", "POST", f"/v1/models/{int(version)}/shadow", "admin", model(AliasesOut))


def stop_shadow() -> Call[AliasesOut]:
    return Call("stop_shadow", "DELETE", "/v1/shadow", "admin", model(AliasesOut))


def shadow_report(version: int | None = None) -> Call[ShadowReport]:
    """The running shadow's (or a past one's, by ``version``) agreement with the champion and live accuracy."""
    return Call("shadow_report", "GET", "/v1/shadow", "admin", model(ShadowReport), params=given(version=version))


def start_canary(version: int) -> Call[CanaryStarted]:
    """Let ``version`` answer a stable share of users; withdrawn if their feedback shows it worse."""
    return Call("start_canary", "POST", f"/v1/models/{int(version)}/canary", "admin", model(CanaryStarted))


def stop_canary() -> Call[AliasesOut]:
    return Call("stop_canary", "DELETE", "/v1/canary", "admin", model(AliasesOut))


def canary_report() -> Call[CanaryReport]:
    """The running canary's and the champion's live accuracy on the answers users judged."""
    return Call("canary_report", "GET", "/v1/canary", "admin", model(CanaryReport))


def audit(limit: int | None = None, *, cursor: str | None = None) -> Call[AuditOut]:
    """The chain's verification and the newest ``limit`` entries (oldest first); ``next_cursor`` asks for the
    ``limit`` before them."""
    return Call("audit", "GET", "/v1/audit", "admin", model(AuditOut), params=given(limit=limit, cursor=cursor))


def iter_audit(*, limit: int | None = None) -> Pages[AuditEntry]:
    """Every audit entry, newest first, back to the first (``limit``: the page size)."""
    return Pages(lambda cursor: audit(limit, cursor=cursor), lambda page: page.entries[::-1])


def _event(event: ServerEvent) -> EventOut:
    return validated(EventOut, event.data)


def events(after: int | None = None, *, wait: bool = True) -> Stream[EventOut]:
    """The wheel's events (cycles, releases, trials, erasures, policy changes) as they happen, while the stream
    is read. ``after``: an event's ``id``, to resume after it with nothing missed or repeated (0: from the first
    kept; None: from now on). ``wait=False``: end once the events there are have been sent. A quiet stream
    gets a keep-alive every 15 s, so a client ``timeout`` under that ends it with ``ServerUnavailable``."""
    return Stream(Call("events", "GET", "/v1/events", "admin", _text,
                       params=given(after=after, wait=None if wait else "false"),
                       headers={"Accept": "text/event-stream"}), _event)


# -- no key -------------------------------------------------------------------------------------------


def health() -> Call[HealthOut]:
    return Call("health", "GET", "/healthz", None, model(HealthOut))


def metrics() -> Call[str]:
    """Prometheus text, as a scraper reads it."""
    return Call("metrics", "GET", "/metrics", None, _text)
