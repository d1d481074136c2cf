"""Answer bodies, so ``/openapi.json`` documents what each route sends back, errors included.

Fields are typed as precisely as the store fixes them; only reports whose
content grows with the wheel (a cycle's report, a model's metrics, an audit
entry's detail) stay free-form. A route's answer is validated against its
model, so a key the store adds is not sent until it is declared here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from datawheel.api.shapes import ShownInput


def _iso(value: Any) -> Any:
    # SQLite hands back naive times; everything is stored in UTC, and RFC 3339 wants the offset said.
    # (Not store.db.aware: the Python client reads its answers with these models and must not import the store.)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


#: a time in ISO 8601 with its UTC offset, as every answer gives it
Timestamp = Annotated[str, BeforeValidator(_iso), WithJsonSchema({"type": "string", "format": "date-time"})]
MetaValue = str | int | float | bool | None


class ErrorOut(BaseModel):
    """Every 4xx: a machine-readable ``error`` code and a ``detail`` naming the field, never its value."""

    error: str = Field(examples=["invalid_input"])
    detail: str = Field(examples=["label: unknown label; expected one of 0, 1"])


_WHY = {401: "No key, or an unknown key", 403: "The key's role cannot use this route, or consent is missing",
        404: "Something the request names does not exist", 409: "The request clashes with the current state",
        413: "The body is larger than the server accepts", 422: "The request is malformed or refused by the policy",
        502: "The upstream model server (proxy mode) failed or did not answer"}


#: the ``next_cursor`` of every list
_NEXT = "pass as ``cursor`` for the next page; null on the last page"


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer these error statuses."""
    return {code: {"model": ErrorOut, "description": _WHY[code]} for code in codes}


# -- the online path -----------------------------------------------------------


class PredictOut(BaseModel):
    interaction_id: str
    label: str
    scores: dict[str, float]
    model_version: int


class Created(BaseModel):
    id: str


# -- a user's rights -------------------------------------------------------------


class ConsentState(BaseModel):
    training: bool
    analytics: bool


class ConsentOut(BaseModel):
    user_id: str
    consent: ConsentState


class ConsentEvent(BaseModel):
    scope: Literal["training", "analytics"]
    granted: bool
    actor: str
    at: Timestamp


class Reliability(BaseModel):
    reliability: float
    votes: int
    excluded: bool


class FeedbackOut(BaseModel):
    id: str
    label: str | None
    rating: int | None
    comment: str | None
    created_at: Timestamp
    #: text generation: the answer the user wanted, and which of two answers they picked
    correction: str | None = None
    chosen: int | None = None


class RecordOut(BaseModel):
    id: str
    kind: Literal["interaction", "contribution"]
    input: ShownInput
    label: str | None
    predicted_label: str | None
    model_name: str | None
    model_version: str | None
    consent_training: bool
    metadata: dict[str, MetaValue]
    scores: dict[str, float] | None = Field(description=(
        "the scores by label an interaction was logged with (POST /v1/interactions), else null"))
    created_at: Timestamp
    feedback: list[FeedbackOut]
    answers: list[str] = Field([], description="text generation: the answers this conversation was given")
    datasets: list[str] = Field(description="snapshots this record went into")
    models: list[int] = Field(description="model versions trained on those snapshots")


class UserDataOut(BaseModel):
    user_id: str
    consent: ConsentState
    consent_history: list[ConsentEvent]
    reliability: Reliability | None
    records: list[RecordOut]
    next_cursor: str | None = Field(description=_NEXT)


class ErasureReceipt(BaseModel):
    """The erasure is complete when this is sent; the last fields say what the workspace's ``[erasure]`` policy
    did about a serving model trained on the user."""

    receipt_id: str
    user_id: str
    records_deleted: int
    feedback_deleted: int
    model_versions_trained_on_user_data: list[int]
    erased_at: Timestamp
    serving_model_affected: bool = Field(description="the champion, a canary or a shadow was trained on the user")
    serving_aliases_affected: list[Literal["champion", "canary", "shadow"]]
    action: Literal["retrain_started", "retrain_blocked", "left_to_operator", "none"] = Field(description=(
        "retrain_started: a retrain-without cycle replaces the champion (policy `retrain`); retrain_blocked: "
        "the policy asked for one but another cycle was running; left_to_operator: policy `operator`, or only a "
        "canary or shadow is affected; none: no serving model holds the user's data"))
    retrain_cycle_id: str | None
    next_step: str = Field(description="what an operator does next, as API calls; empty when nothing",
                           examples=["replace the champion: POST /v1/users/{user_id}/retrain-without"])


class StoredReceipt(BaseModel):
    """A receipt read back later: the user appears only as the keyed pseudonym the store kept."""

    receipt_id: str
    user_ref: str
    records_deleted: int
    feedback_deleted: int
    model_versions_trained_on_user_data: list[int]
    erased_at: Timestamp


# -- the annotation queue ----------------------------------------------------------


class QueueItem(BaseModel):
    item_id: str
    input: ShownInput
    score: float
    signals: dict[str, float]


class QueueOut(BaseModel):
    labels: list[str]
    items: list[QueueItem]


class AnnotationOut(BaseModel):
    item_id: str
    label: str
    annotator: str
    created_at: Timestamp


# -- operators ---------------------------------------------------------------------


class CycleStarted(BaseModel):
    cycle_id: str
    status: Literal["running"]


class CycleOut(BaseModel):
    cycle_id: str
    status: Literal["running", "done", "failed"]
    trigger: str
    decision: str | None
    params: dict[str, Any]
    champion_version: int | None
    candidate_version: int | None
    snapshot_id: str | None
    report: dict[str, Any] | None
    error: str | None
    started_at: Timestamp
    finished_at: Timestamp | None


class CycleSummary(BaseModel):
    """A cycle in a list: what it did, without its report (``GET /v1/cycles/{cycle_id}`` has that)."""

    cycle_id: str
    status: Literal["running", "done", "failed"]
    trigger: str
    decision: str | None
    champion_version: int | None
    candidate_version: int | None
    error: str | None
    started_at: Timestamp
    finished_at: Timestamp | None


class CyclesOut(BaseModel):
    cycles: list[CycleSummary]
    next_cursor: str | None = Field(description=_NEXT)


class ModelOut(BaseModel):
    version: int
    aliases: list[str]
    model_name: str
    metrics: dict[str, Any]
    dataset: str | None = Field(description="the snapshot it was trained on besides the seed set")
    parent: int | None
    sha256: str
    created_at: Timestamp


class ModelsOut(BaseModel):
    models: list[ModelOut]
    next_cursor: str | None = Field(description=_NEXT)


class AliasesOut(BaseModel):
    aliases: dict[str, int] = Field(examples=[{"champion": 2, "previous": 1}])


class CanaryStarted(AliasesOut):
    share: float = Field(description="the share of users the canary answers")


class ShadowReport(BaseModel):
    version: int
    predictions: int
    agreement_with_champion: float | None
    with_feedback: int
    champion_accuracy: float | None
    shadow_accuracy: float | None


class LiveAccuracy(BaseModel):
    version: int
    with_feedback: int
    accuracy: float | None


class CanaryReport(BaseModel):
    share: float
    canary: LiveAccuracy
    champion: LiveAccuracy


class ChainOut(BaseModel):
    ok: bool
    entries: int
    first_broken: int | None
    problem: str


class AuditEntry(BaseModel):
    id: int
    at: Timestamp
    actor: str
    action: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditOut(BaseModel):
    chain: ChainOut
    entries: list[AuditEntry]
    next_cursor: str | None = Field(description=_NEXT + "; pages go back in time, each oldest first")


class EventOut(BaseModel):
    """The ``data:`` of one server-sent event; ``id`` is its audit entry, also sent as the event's ``id:``.

    Besides ``id``, ``type`` and ``at``, an event carries the fields of its type (``GET /v1/events``).
    """

    id: int
    type: Literal["cycle.started", "cycle.finished", "model.promoted", "model.rolled_back", "shadow.started",
                  "shadow.stopped", "canary.started", "canary.stopped", "user.erased", "policy.changed"]
    at: Timestamp
    cycle_id: str | None = None
    trigger: str | None = None
    status: Literal["done", "failed"] | None = None
    decision: str | None = None
    champion_version: int | None = None
    candidate_version: int | None = None
    version: int | None = Field(None, description="the version promoted, rolled back to, or put on trial")
    reason: str | None = None
    aliases: dict[str, int] | None = None
    receipt_id: str | None = Field(None, description="an erasure's receipt; the user is never named")
    sha256: str | None = Field(None, description="the privacy policy now in force")


class HealthOut(BaseModel):
    status: Literal["ok"]
    champion_version: int
