"""A user's rights: consent, seeing everything held about them, and erasure.

Every route is scoped to the user id in the path; nothing here can return or
touch another user's data.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request

from datawheel.api.deps import AppKey, WorkspaceDep
from datawheel.api.schemas import Consent

router = APIRouter(prefix="/v1/users", tags=["users"])
UserPath = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.@:\-]+$")]


def input_json(item: Any) -> dict:
    """An item as the user sent it in kind: text as text, an image as its normalized pixels."""
    if isinstance(item, np.ndarray):
        return {"pixels": item.tolist()}
    return {"text": item}


@router.put("/{user_id}/consent")
def set_consent(user_id: UserPath, body: Consent, _: AppKey, ws: WorkspaceDep) -> dict:
    return ws.store.set_consent(user_id, body.scopes())


@router.get("/{user_id}/data")
def user_data(user_id: UserPath, _: AppKey, ws: WorkspaceDep) -> dict:
    return ws.store.user_data(user_id, lambda b: input_json(ws.task.decode(b)))


@router.delete("/{user_id}")
def erase(user_id: UserPath, _: AppKey, ws: WorkspaceDep, request: Request) -> dict:
    receipt = ws.erase_user(user_id)
    request.app.state.telemetry.erasures.inc()
    return receipt
