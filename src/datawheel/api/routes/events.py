"""The wheel's events as they happen, for operators: a stream of server-sent events (``text/event-stream``).

Each event's ``data:`` is one JSON object ``{"id", "type", "at", ...}`` (``responses.EventOut``; the types
and their fields are in the route's docstring, which ``/openapi.json`` shows) and its ``id`` is also the
event's SSE ``id:``. Events have no SSE ``event:`` name, so a browser's ``EventSource.onmessage`` sees them all.

They are read from the audit chain (``store/events.py``), which every process writes (each server worker,
a cycle's own process, the command line), so any worker streams every event, and a client reconnecting
with ``Last-Event-ID`` (or ``?after=ID``) resumes where it stopped, across restarts too. The chain is
polled every ``POLL_SECONDS`` with one keyset read; a ``: keep-alive`` comment goes out after
``KEEP_ALIVE_SECONDS`` without an event, so proxies keep the connection open. The stream ends when the
client goes (Starlette cancels it on the disconnect) or, with ``wait=false``, once the events there are
have been sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query
from starlette.responses import StreamingResponse

from datawheel.api.deps import AdminKey, WorkspaceDep
from datawheel.api.responses import EventOut, errors
from datawheel.store.store import Store

router = APIRouter(prefix="/v1", tags=["events"])


class EventStream(StreamingResponse):
    """A ``text/event-stream`` answer whose bytes the route writes itself. (FastAPI's ``EventSourceResponse``
    would make the route a generator of its own framing, with its own keep-alive text.)"""

    media_type = "text/event-stream"


POLL_SECONDS = 0.5
KEEP_ALIVE_SECONDS = 15.0
#: events read per poll; a full batch is followed by the next at once
BATCH = 100
KEEP_ALIVE = b": keep-alive\n\n"
_MAX_ID = 2**31 - 1

After = Annotated[int | None, Query(ge=0, le=_MAX_ID, description=(
    "send the events after this id (0: every event kept); without it or Last-Event-ID, only those from now on"))]
LastEventId = Annotated[int | None, Header(ge=0, le=_MAX_ID, description=(
    "what a reconnecting EventSource sends: resume after this id (takes precedence over after)"))]
Wait = Annotated[bool, Query(description="false: send the events there are, then end the stream")]


def _json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``errors()`` for a route whose answer is not JSON: its refusals still are."""
    return {code: {"description": spec["description"], "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{spec['model'].__name__}"}}}}
        for code, spec in errors(*codes).items()}


#: the stream as OpenAPI 3.2 describes server-sent events (as FastAPI does for its own event routes)
_STREAM = {"description": "Server-sent events; each event's data is an EventOut", "content": {"text/event-stream": {
    "itemSchema": {"type": "object", "required": ["id", "data"], "properties": {
        "id": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": EventOut.model_json_schema()}}}}}}


@router.get("/events", response_class=EventStream, responses={200: _STREAM, **_json_errors(401, 403, 422)})
async def stream_events(_: AdminKey, ws: WorkspaceDep, after: After = None, last_event_id: LastEventId = None,
                        wait: Wait = True) -> EventStream:
    """Cycles started and finished, promotions, rollbacks, shadow and canary trials, erasures (by receipt) and
    policy changes, as they happen, as server-sent events; resumable with ``Last-Event-ID``.

    Each event's data is JSON ``{"id", "type", "at", ...}`` with the fields of its type: ``cycle.started``
    (``cycle_id``, ``trigger``), ``cycle.finished`` (``cycle_id``, ``status``, ``decision``,
    ``champion_version``, ``candidate_version``), ``model.promoted`` and ``model.rolled_back`` (``version``,
    ``aliases``; a promotion its ``reason``), ``shadow.started``/``stopped`` and ``canary.started``/``stopped``
    (``version``, null when stopped; ``reason``; ``aliases``), ``user.erased`` (``receipt_id`` only) and
    ``policy.changed`` (``sha256``). A ``: keep-alive`` comment comes after 15 s without an event.
    """
    start = last_event_id if last_event_id is not None else after
    if start is None:  # "from now" is fixed before the answer starts: whatever happens after it is sent
        start = await anyio.to_thread.run_sync(ws.store.audit_seq)
    # no-cache, and no buffering by an nginx in front: each event must leave as soon as it is written
    return EventStream(_stream(ws.store, start, wait), headers={"Cache-Control": "no-cache",
                                                                "X-Accel-Buffering": "no"})


def frame(event: dict[str, Any]) -> bytes:
    return f"id: {event['id']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def _stream(store: Store, position: int, wait: bool) -> AsyncIterator[bytes]:
    # The store is read in a worker thread: a poll must never hold the event loop predictions run on.
    quiet_since = time.monotonic()
    while True:
        events, position = await anyio.to_thread.run_sync(store.events_after, position, BATCH)
        for event in events:
            yield frame(event)
        if len(events) == BATCH:
            continue
        if not wait:
            return
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEP_ALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield KEEP_ALIVE
        await anyio.sleep(POLL_SECONDS)
