"""Feedback on an answer: a correction, a rating or a comment, each a signal the next cycle can use.

Labels and ratings also feed the canary monitor at once, so a bad canary is
withdrawn on the feedback that proves it, not at the next cycle.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from datawheel.api.deps import AppKey, RunnerDep, ScreenDep, ServerDep, TelemetryDep, WorkspaceDep
from datawheel.api.ingest import check_label
from datawheel.api.responses import Created, errors
from datawheel.api.schemas import FeedbackIn
from datawheel.api.telemetry import Telemetry
from datawheel.errors import InvalidInput, NotFound
from datawheel.privacy.screen import Screen
from datawheel.tasks import GENERATION_TASK
from datawheel.wheel.runner import CycleRunner
from datawheel.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["records"])


@router.post("/feedback", response_model=Created, status_code=status.HTTP_201_CREATED,
             responses=errors(401, 403, 404, 413, 422))
def add_feedback(body: FeedbackIn, _: AppKey, ws: WorkspaceDep, runner: RunnerDep, server: ServerDep,
                 screen: ScreenDep, telemetry: TelemetryDep) -> Created:
    if ws.config.workspace.task == GENERATION_TASK:
        return answer_feedback(body, ws, runner, screen, telemetry)
    if body.correction is not None or body.chosen is not None:
        raise InvalidInput("correction and chosen are feedback on generated answers; a classifier takes label",
                           field="correction" if body.correction is not None else "chosen")
    if body.label is None and body.rating is None and body.comment is None:
        raise InvalidInput("give at least one of label, rating or comment", field="body")
    screen.check_user_id(body.user_id)
    if body.label is not None:
        check_label(body.label, ws.labels, "label")
    try:
        feedback_id = ws.store.add_feedback(record_id=body.interaction_id, user_id=body.user_id, label=body.label,
                                            rating=body.rating, comment=screen.clean_optional(body.comment, "comment"),
                                            require=screen.requirement("feedback"))
    except NotFound:
        # One answer for "no such interaction" and "not this user's", and never the id sent: it may be anything.
        raise NotFound("interaction_id: no such interaction for this user") from None
    kind = "correction" if body.label is not None else "rating" if body.rating is not None else "comment"
    telemetry.feedback.labels(kind).inc()
    if body.label is not None or body.rating == 1:
        runner.note_labelled()
    if body.label is not None or body.rating is not None:
        server.check_canary()
    return Created(id=feedback_id)


def answer_feedback(body: FeedbackIn, ws: Workspace, runner: CycleRunner, screen: Screen,
                     telemetry: Telemetry) -> Created:
    """A thumb, a correction or a choice between two answers, on a text-generation interaction (the web app's
    chat panel sends its feedback through here too)."""
    if body.label is not None:
        raise InvalidInput("a text-generation workspace has no labels; send correction (the answer wanted)",
                           field="label")
    if body.rating is None and body.correction is None and body.chosen is None and body.comment is None:
        raise InvalidInput("give at least one of rating, correction, chosen or comment", field="body")
    screen.check_user_id(body.user_id)
    try:
        feedback_id = ws.store.add_answer_feedback(
            record_id=body.interaction_id, user_id=body.user_id, rating=body.rating,
            correction=screen.clean_optional(body.correction, "correction"), chosen=body.chosen,
            comment=screen.clean_optional(body.comment, "comment"), require=screen.requirement("feedback"))
    except NotFound:
        raise NotFound("interaction_id: no such interaction for this user") from None
    kind = ("correction" if body.correction is not None else "choice" if body.chosen is not None
            else "rating" if body.rating is not None else "comment")
    telemetry.feedback.labels(kind).inc()
    if body.correction is not None or body.chosen is not None or body.rating == 1:
        runner.note_labelled()
    return Created(id=feedback_id)
