"""The annotation queue: the items whose labels are worth the most, and annotators' answers.

Open to the annotator key (and the admin key). An answer is a high-trust label:
the next cycle anchors the item to it, ahead of every user's vote, which is why
only what the queue offers can be answered.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from datawheel.api.deps import AnnotatorKey, WorkspaceDep
from datawheel.api.ingest import check_label
from datawheel.api.responses import AnnotationOut, QueueItem, QueueOut, errors
from datawheel.api.schemas import AnnotationIn

router = APIRouter(prefix="/v1/annotation", tags=["annotation"])
ItemPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="an item id from the queue")]


@router.get("/queue", response_model=QueueOut, responses=errors(401, 403, 422))
def annotation_queue(_: AnnotatorKey, ws: WorkspaceDep,
                     limit: Annotated[int, Query(ge=1, le=500)] = 20) -> QueueOut:
    task = ws.task
    return QueueOut(labels=list(ws.labels), items=[
        QueueItem(item_id=it["item_id"], input=task.show(task.decode(it["input"])), score=it["score"],
                  signals=it["signals"]) for it in ws.store.annotation_queue(limit)])


@router.post("/{item_id}", response_model=AnnotationOut, status_code=status.HTTP_201_CREATED,
             responses=errors(401, 403, 404, 413, 422))
def annotate(item_id: ItemPath, body: AnnotationIn, role: AnnotatorKey, ws: WorkspaceDep) -> AnnotationOut:
    """Answer an item the queue lists now; the admin key too may answer only those.

    Anything else (answered, erased, never queued, never sent) is the same 404, so the route cannot be
    used to test whether some content is stored, nor to anchor a label on what curation did not choose.
    """
    check_label(body.label, ws.labels, "label")
    return AnnotationOut.model_validate(ws.store.annotate(item_id, body.label, annotator=f"{role}:api"))
