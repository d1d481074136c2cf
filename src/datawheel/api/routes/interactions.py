"""Interactions the product served with its own model, logged so their feedback can train ours.

Committed before the 201: an acknowledged write survives a crash.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from datawheel.api.deps import AppKey, IngestDep
from datawheel.api.responses import Created, errors
from datawheel.api.schemas import InteractionIn

router = APIRouter(prefix="/v1", tags=["records"])


@router.post("/interactions", response_model=Created, status_code=status.HTTP_201_CREATED,
             responses=errors(401, 403, 413, 422))
def log_interaction(body: InteractionIn, _: AppKey, ingest: IngestDep) -> Created:
    incoming = ingest.accept(body.user_id, body.input, body.metadata, body.consent.scopes() if body.consent else None)
    record_id = ingest.record(incoming, "interaction", predicted_label=ingest.label(body.output_label, "output_label"),
                              model_name=body.model_name, model_version=body.model_version)
    return Created(id=record_id)
