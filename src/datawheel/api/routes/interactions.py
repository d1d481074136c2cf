"""Interactions the product served with its own model, logged so their feedback can train ours.

Committed before the 201: an acknowledged write survives a crash. A logged interaction is not a training
example by itself: curation (``store.labelled_records``) takes only records carrying a label vote, which for
an interaction is feedback (a corrected ``label``, or ``rating: 1`` confirming ``output_label``).
"""

from __future__ import annotations

from fastapi import APIRouter, status

from datawheel.api.deps import AppKey, IngestDep
from datawheel.api.responses import Created, errors
from datawheel.api.schemas import InteractionIn

router = APIRouter(prefix="/v1", tags=["records"])


@router.post("/interactions", response_model=Created, status_code=status.HTTP_201_CREATED,
             responses=errors(401, 403, 413, 422),
             response_description="Logged; `id` is the interaction id that POST /v1/feedback names")
def log_interaction(body: InteractionIn, _: AppKey, ingest: IngestDep) -> Created:
    """Log an answer your own model gave a user, with its `model_version` (an integer, as /v1/predict answers,
    or your model's own version string) and optionally its `scores` by label (kept with the record and shown in
    the user's export).

    A logged interaction reaches a training cycle only once it gets feedback: a corrected `label`, or
    `rating: 1` confirming `output_label` (POST /v1/feedback with this `id`). Without feedback it is kept (and
    exported, and erased) but never trained on; with it, like every record, only under the user's training consent.
    """
    incoming = ingest.accept(body.user_id, body.input, body.metadata, body.consent.scopes() if body.consent else None)
    predicted = ingest.label(body.output_label, "output_label")
    scores = ingest.scores(body.scores, "scores") if body.scores is not None else None
    record_id = ingest.record(incoming, "interaction", predicted_label=predicted, model_name=body.model_name,
                              model_version=body.model_version, scores=scores)
    return Created(id=record_id)
