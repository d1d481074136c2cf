"""The product's user in the browser: try the model, correct it, set consent, see, download and delete their data.

Each route acts for the visitor named by the signed cookie and nobody else, through the same services the
API's routes use (``Ingest`` for inputs, the store, the model server), so the browser goes through the
same screen, consent rule and erasure as a product backend would; it just never holds the app key.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from datawheel.api.deps import IngestDep, RunnerDep, ScreenDep, ServerDep, TelemetryDep, WorkspaceDep
from datawheel.api.ingest import check_label
from datawheel.api.schemas import Comment, Input, Text
from datawheel.errors import Conflict, InvalidInput, NotFound
from datawheel.tasks import GENERATION_TASK
from datawheel.web.names import display_name
from datawheel.web.security import USER_COOKIE
from datawheel.web.session import SameOrigin, SignerDep, Visitor, issue_user
from datawheel.wheel.after_erasure import follow_up
from datawheel.workspace import Workspace

router = APIRouter(prefix="/app", include_in_schema=False, dependencies=[SameOrigin])
log = logging.getLogger(__name__)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TryIn(_Body):
    input: Input


class CorrectIn(_Body):
    interaction_id: Text = Field(min_length=1, max_length=64)
    label: Text | None = None
    rating: int | None = Field(default=None, ge=-1, le=1)
    comment: Comment | None = None


class ConsentIn(_Body):
    training: StrictBool


def _classifier(ws: Workspace) -> None:
    """A text-generation workspace answers through ``/app/chat``: its records take corrections, not labels."""
    if ws.config.workspace.task == GENERATION_TASK:
        raise Conflict("this workspace generates text: ask it through /app/chat and give feedback through "
                       "/app/chat/feedback")


@router.get("/session")
def session(request: Request, response: Response, ws: WorkspaceDep, server: ServerDep, sign: SignerDep) -> dict:
    """What a page needs to start: the CSRF token, the task (which panel to show) and the visitor's consent.

    A browser without a valid id cookie gets one here.
    """
    cookie = request.cookies.get(USER_COOKIE)
    payload = sign.unsign("uid", cookie)
    if payload is None or not cookie:
        cookie = issue_user(response, sign)
        payload = sign.unsign("uid", cookie) or {}
    uid = str(payload["uid"])
    consent = ws.store.consent_now(uid) or {"training": False, "analytics": False}
    return {"csrf": sign.csrf_token(cookie), "task": ws.task.name, "labels": list(ws.labels),
            "champion_version": server.current.version, "consent": consent, "you": display_name(ws.user_ref(uid))}


@router.post("/predict")
def try_model(body: TryIn, uid: Visitor, ws: WorkspaceDep, server: ServerDep, ingest: IngestDep,
              telemetry: TelemetryDep) -> dict:
    """The champion's (or the visitor's canary's) answer; the interaction is stored before the answer is sent."""
    _classifier(ws)
    incoming = ingest.accept(uid, body.input, None, None)
    version, label, scores = server.predict(incoming.item, uid)
    record_id = ingest.record(incoming, "interaction", predicted_label=label, model_name="datawheel",
                              model_version=str(version))
    try:
        shadow = server.shadow_predict(incoming.item)
        if shadow is not None:
            ws.store.add_shadow_prediction(record_id, *shadow)
    except Exception as exc:  # noqa: BLE001 - a failing shadow never fails the visitor; logged by type only
        log.warning("shadow prediction failed: %s", type(exc).__name__)
    telemetry.predictions.inc()
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
    return {"interaction_id": record_id, "label": label, "model_version": version,
            "top": [{"label": lab, "score": score} for lab, score in top]}


@router.post("/feedback", status_code=201)
def correct(body: CorrectIn, uid: Visitor, ws: WorkspaceDep, runner: RunnerDep, server: ServerDep,
            screen: ScreenDep, telemetry: TelemetryDep) -> dict:
    """A correction (the right label), a thumbs up or down, or a comment on one of the visitor's answers."""
    _classifier(ws)
    if body.label is None and not body.rating and body.comment is None:
        raise InvalidInput("give at least one of label, rating (-1 or 1) or comment", field="body")
    if body.label is not None:
        check_label(body.label, ws.labels, "label")
    try:
        feedback_id = ws.store.add_feedback(record_id=body.interaction_id, user_id=uid, label=body.label,
                                            rating=body.rating or None,
                                            comment=screen.clean_optional(body.comment, "comment"),
                                            require=screen.requirement("feedback"))
    except NotFound:
        raise NotFound("interaction_id: no such answer of yours") from None
    telemetry.feedback.labels("correction" if body.label else "rating" if body.rating else "comment").inc()
    if body.label is not None or body.rating == 1:
        runner.note_labelled()
    if body.label is not None or body.rating:
        server.check_canary()
    return {"id": feedback_id}


@router.put("/consent")
def set_consent(body: ConsentIn, uid: Visitor, ws: WorkspaceDep) -> dict:
    """Training consent on or off; the change is kept in the visitor's history and the audit chain."""
    return {"consent": ws.store.set_consent(uid, {"training": body.training}, actor="web")["consent"]}


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    records = data["records"]
    feedback = [f for r in records for f in r["feedback"]]
    return {"interactions": sum(r["kind"] == "interaction" for r in records),
            "contributions": sum(r["kind"] == "contribution" for r in records),
            "corrections": sum(f["label"] is not None or f.get("correction") is not None for f in feedback),
            "choices": sum(f.get("chosen") is not None for f in feedback),
            "ratings": sum(f["rating"] is not None for f in feedback),
            "snapshots": sorted({s for r in records for s in r["datasets"]}),
            "models": sorted({v for r in records for v in r["models"]})}


@router.get("/my-data")
def my_data(uid: Visitor, ws: WorkspaceDep,
            download: Annotated[bool, Query(description="as a file to save")] = False) -> Response:
    """Everything held about the visitor, each record with the snapshots and models it went into (and, for a
    conversation, the answers it got and the visitor's corrections and choices)."""
    task = ws.task
    try:
        data = ws.store.user_data(uid, lambda raw: task.show(task.decode(raw)), actor="web")
    except NotFound:
        data = {"consent": ws.store.consent_now(uid), "consent_history": [], "reliability": None, "records": []}
    data.pop("user_id", None)  # the page names the visitor by pseudonym; the raw id stays in the cookie
    body = {"you": display_name(ws.user_ref(uid)), "summary": _summary(data), **data}
    headers = {"Content-Disposition": 'attachment; filename="my-datawheel-data.json"'} if download else {}
    return Response(json.dumps(body, indent=2 if download else None), media_type="application/json",
                    headers=headers)


@router.delete("/my-data")
def delete_my_data(uid: Visitor, response: Response, ws: WorkspaceDep, sign: SignerDep,
                   telemetry: TelemetryDep, runner: RunnerDep) -> dict:
    """Erase the visitor; the browser then gets a new id, so nothing links it to the erased one.

    The workspace's ``[erasure]`` policy applies as for the API's erasure; the visitor is told whether a model
    without their data is being trained now (the operator's next steps are the console's business).
    """
    receipt = ws.erase_user(uid, actor="web")
    telemetry.erasures.inc()
    then = follow_up(ws, uid, receipt, start=lambda params: runner.start("forget", params))
    receipt["replacement_training"] = then.action == "retrain_started"
    receipt.pop("user_id", None)
    cookie = issue_user(response, sign)
    return {"receipt": receipt, "csrf": sign.csrf_token(cookie)}
