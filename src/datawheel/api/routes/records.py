"""Writes on the online path: interactions served elsewhere, feedback, donated examples.

Each write is validated whole before anything is stored, and committed before
the 2xx: an acknowledged write survives a crash.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from datawheel.api.deps import AppKey, RunnerDep, ScreenDep, WorkspaceDep
from datawheel.api.schemas import ContributionIn, Created, FeedbackIn, InteractionIn
from datawheel.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["records"])


def check_label(label: str, labels: tuple[str, ...], field: str) -> str:
    if label not in labels:
        # The value is not echoed: a free-text field may carry personal data.
        raise InvalidInput(f"unknown label; expected one of {', '.join(labels)}", field=field)
    return label


@router.post("/interactions", response_model=Created, status_code=status.HTTP_201_CREATED)
def log_interaction(body: InteractionIn, _: AppKey, ws: WorkspaceDep, screen: ScreenDep, request: Request) -> Created:
    item = screen.clean_item(ws.task.parse(body.input), "input.text")
    check_label(body.output_label, ws.labels, "output_label")
    record_id = ws.store.add_record(
        user_id=body.user_id, kind="interaction", input=ws.task.encode(item), content_hash=ws.task.content_hash(item),
        consent=body.consent.scopes() if body.consent else None, predicted_label=body.output_label,
        model_name=screen.clean_text(body.model_name, "model_name"),
        model_version=screen.clean_text(body.model_version, "model_version"), meta=screen.clean_meta(body.metadata),
        require=screen.requirement("interaction"))
    request.app.state.telemetry.records.labels("interaction").inc()
    return Created(id=record_id)


@router.post("/feedback", response_model=Created, status_code=status.HTTP_201_CREATED)
def feedback(body: FeedbackIn, _: AppKey, ws: WorkspaceDep, runner: RunnerDep, screen: ScreenDep,
             request: Request) -> Created:
    if body.label is None and body.rating is None and body.comment is None:
        raise InvalidInput("give at least one of label, rating or comment", field="body")
    if body.label is not None:
        check_label(body.label, ws.labels, "label")
    feedback_id = ws.store.add_feedback(record_id=body.interaction_id, user_id=body.user_id, label=body.label,
                                        rating=body.rating, comment=screen.clean_optional(body.comment, "comment"),
                                        require=screen.requirement("feedback"))
    kind = "correction" if body.label is not None else "rating" if body.rating is not None else "comment"
    request.app.state.telemetry.feedback.labels(kind).inc()
    if body.label is not None or body.rating == 1:
        runner.note_labelled()
    if body.label is not None or body.rating is not None:
        request.app.state.server.check_canary()
    return Created(id=feedback_id)


@router.post("/contributions", response_model=Created, status_code=status.HTTP_201_CREATED)
def contribute(body: ContributionIn, _: AppKey, ws: WorkspaceDep, runner: RunnerDep, screen: ScreenDep,
               request: Request) -> Created:
    item = screen.clean_item(ws.task.parse(body.input), "input.text")
    check_label(body.label, ws.labels, "label")
    record_id = ws.store.add_record(
        user_id=body.user_id, kind="contribution", input=ws.task.encode(item), content_hash=ws.task.content_hash(item),
        consent=body.consent.scopes(), label=body.label, meta=screen.clean_meta(body.metadata),
        require=screen.requirement("contribution"))
    request.app.state.telemetry.records.labels("contribution").inc()
    runner.note_labelled()
    return Created(id=record_id)
