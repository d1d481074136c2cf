"""Examples users donate with their label: the strongest votes the wheel gets from users.

Committed before the 201: an acknowledged write survives a crash.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from datawheel.api.deps import AppKey, IngestDep, RunnerDep
from datawheel.api.responses import Created, errors
from datawheel.api.schemas import ContributionIn

router = APIRouter(prefix="/v1", tags=["records"])


@router.post("/contributions", response_model=Created, status_code=status.HTTP_201_CREATED,
             responses=errors(401, 403, 413, 422))
def contribute(body: ContributionIn, _: AppKey, ingest: IngestDep, runner: RunnerDep) -> Created:
    incoming = ingest.accept(body.user_id, body.input, body.metadata, body.consent.scopes())
    record_id = ingest.record(incoming, "contribution", label=ingest.label(body.label, "label"))
    runner.note_labelled()
    return Created(id=record_id)
