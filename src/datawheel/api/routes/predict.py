"""Predict with the champion, and log the interaction in the same request.

The route is ``async`` so a request holds no thread while it waits: its input is
parsed and screened on the event loop (a small image or text: well under a
millisecond), the answer comes from a forward pass shared with requests that
arrived meanwhile (:meth:`ModelServer.predict_batched`), and the record from a
transaction shared with concurrent writes (group commit). The answer is sent
only once the transaction holding the record is durable, as before.

Under load the request usually never reaches this route: ``api/fast_predict.py``
answers a well-formed, authorized request before FastAPI's routing, through the
same :func:`serve_prediction`. The route stays the documented contract and
answers everything else (every refusal), so both give the same answers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from datawheel.api.deps import AppKey, IngestDep, ServerDep, TelemetryDep
from datawheel.api.ingest import Ingest
from datawheel.api.responses import PredictOut, errors
from datawheel.api.schemas import PredictIn
from datawheel.api.telemetry import Telemetry
from datawheel.models.serving import ModelServer
from datawheel.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["predict"])
log = logging.getLogger(__name__)


def _shadow(server: ModelServer, ws: Workspace, item: Any, record_id: str) -> None:
    """Record the shadow's answer; a failing shadow must never fail the user's request."""
    try:
        answer = server.shadow_predict(item)
        if answer is not None:
            ws.store.add_shadow_prediction(record_id, *answer)
    except Exception as exc:  # noqa: BLE001 - logged by type only: no input, no user id
        log.warning("shadow prediction failed: %s", type(exc).__name__)


async def serve_prediction(body: PredictIn, server: ModelServer, ingest: Ingest, telemetry: Telemetry) -> PredictOut:
    """Screen, answer, store (durably), then hand back the answer: the route's work, shared with the fast path.

    The answer is built without validation (``model_construct``): every value in it is the server's own.
    """
    started = time.perf_counter()
    incoming = ingest.accept(body.user_id, body.input, body.metadata, body.consent.scopes() if body.consent else None)
    ingest.predicting += 1  # from here to the stored record: a prediction alone has its record written at once
    try:
        version, label, scores = await server.predict_batched(incoming.item, body.user_id)
        record_id = await ingest.record_prediction(incoming, label, version)  # durable (or refused) before the answer
    finally:
        ingest.predicting -= 1
    if server.has_shadow:
        await run_in_threadpool(_shadow, server, ingest.ws, incoming.item, record_id)  # a store write: off the loop
    telemetry.predictions.inc()
    telemetry.predict_seconds.observe(time.perf_counter() - started)
    return PredictOut.model_construct(interaction_id=record_id, label=label, scores=scores, model_version=version)


@router.post("/predict", response_model=PredictOut, responses=errors(401, 403, 413, 422))
async def predict(body: PredictIn, _: AppKey, server: ServerDep, ingest: IngestDep,
                  telemetry: TelemetryDep) -> PredictOut:
    """The champion's (or, for a canary user, the canary's) answer; the interaction is stored before it is sent."""
    return await serve_prediction(body, server, ingest, telemetry)
