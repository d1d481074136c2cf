"""The annotation queue: the items whose labels are worth the most, and annotators' answers.

Open to the annotator key (and the admin key). An answer is a high-trust label:
the next cycle anchors the item to it, ahead of every user's vote.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from datawheel.api.deps import AnnotatorKey, WorkspaceDep
from datawheel.api.routes.records import check_label
from datawheel.api.schemas import AnnotationIn

router = APIRouter(prefix="/v1/annotation", tags=["annotation"])
ItemPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="an item id from the queue")]


@router.get("/queue")
def queue(role: AnnotatorKey, ws: WorkspaceDep, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> dict:
    items = ws.store.annotation_queue(limit)
    return {"labels": list(ws.labels), "items": [
        {"item_id": it["item_id"], "input": ws.task.show(ws.task.decode(it["input"])), "score": it["score"],
         "signals": it["signals"]} for it in items]}


@router.post("/{item_id}", status_code=status.HTTP_201_CREATED)
def annotate(item_id: ItemPath, body: AnnotationIn, role: AnnotatorKey, ws: WorkspaceDep) -> dict:
    check_label(body.label, ws.labels, "label")
    return ws.store.annotate(item_id, body.label, annotator=f"{role}:api")
