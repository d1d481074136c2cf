"""Answer bodies, so ``/openapi.json`` documents what each route sends back, errors included.

Fields are typed as precisely as the store fixes them; only reports whose
content grows with the wheel (a cycle's report, a model's metrics, an audit
entry's detail) stay free-form. A route's answer is validated against its
model, so a key the store adds is not sent until it is declared here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from datawheel.store.db import aware


def _iso(value: Any) -> Any:
    # SQLite hands back naive times; everything is stored in UTC, and RFC 3339 wants the offset said.
    return aware(value).isoformat() if isinstance(value, datetime) else value


#: a time in ISO 8601 with its UTC offset, as every answer gives it
Timestamp = Annotated[str, BeforeValidator(_iso), WithJsonSchema({"type": "string", "format": "date-time"})]
MetaValue = str | int | float | bool | None
#: an input as a person is shown it: ``{"image": <PNG, base64>}`` or ``{"text": ...}``
#: an item as a person sees it: {"text"}, {"image": base64 PNG} or, for text generation, {"messages": [...]}
ShownInput = Annotated[dict[str, str | list[dict[str, str]]], Field(examples=[
    {"text": "..."}, {"image": "iVBORw0KGgo..."}, {"messages": [{"role": "user", "content": "..."}]}])]


class ErrorOut(BaseModel):
    """Every 4xx: a machine-readable ``error`` code and a ``detail`` naming the field, never its value."""

    error: str = Field(examples=["invalid_input"])
    detail: str = Field(examples=["label: unknown label; expected one of 0, 1"])


_WHY = {401: "No key, or an unknown key", 403: "The key's role cannot use this route, or consent is missing",
        404: "Something the request names does not exist", 409: "The request clashes with the current state",
        413: "The body is larger than the server accepts", 422: "The request is malformed or refused by the policy",
        502: "The upstream model server (proxy mode) failed or did not answer"}


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


class ErasureReceipt(BaseModel):
    receipt_id: str
    user_id: str
    records_deleted: int
    feedback_deleted: int
    model_versions_trained_on_user_data: list[int]
    erased_at: Timestamp


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


class CyclesOut(BaseModel):
    cycles: list[CycleOut]


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


class HealthOut(BaseModel):
    status: Literal["ok"]
    champion_version: int
