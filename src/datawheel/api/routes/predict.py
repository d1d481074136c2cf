"""Predict with the champion, and log the interaction in the same request."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request

from datawheel.api.deps import AppKey, ScreenDep, ServerDep, WorkspaceDep
from datawheel.api.schemas import PredictIn, PredictOut
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


@router.post("/predict", response_model=PredictOut)
def predict(body: PredictIn, _: AppKey, ws: WorkspaceDep, server: ServerDep, screen: ScreenDep,
            request: Request) -> PredictOut:
    telemetry = request.app.state.telemetry
    started = time.perf_counter()
    # Redacted before the model sees it, so serving and training see the same text.
    item = screen.clean_item(ws.task.parse(body.input), "input.text")
    meta = screen.clean_meta(body.metadata)
    version, label, scores = server.predict(item, body.user_id)
    record_id = ws.store.add_record(
        user_id=body.user_id, kind="interaction", input=ws.task.encode(item), content_hash=ws.task.content_hash(item),
        consent=body.consent.scopes() if body.consent else None, predicted_label=label,
        model_name="datawheel", model_version=str(version), meta=meta, require=screen.requirement("interaction"))
    _shadow(server, ws, item, record_id)
    telemetry.predictions.inc()
    telemetry.records.labels("interaction").inc()
    telemetry.predict_seconds.observe(time.perf_counter() - started)
    return PredictOut(interaction_id=record_id, label=label, scores=scores, model_version=version)
