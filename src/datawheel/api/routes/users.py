"""A user's rights: consent, seeing everything held about them, and erasure.

Every route is scoped to the user id in the path; nothing here can return or
touch another user's data. Retraining without a user is an operator's cycle
(``cycles.py``).
"""

from __future__ import annotations

from fastapi import APIRouter

from datawheel.api.deps import AppKey, RunnerDep, TelemetryDep, UserIdPath, WorkspaceDep
from datawheel.api.paging import Limit, RecordsCursor
from datawheel.api.responses import ConsentOut, ErasureReceipt, UserDataOut, errors
from datawheel.api.schemas import Consent
from datawheel.wheel.after_erasure import follow_up

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.put("/{user_id}/consent", response_model=ConsentOut, responses=errors(401, 403, 413, 422))
def set_consent(_: AppKey, user_id: UserIdPath, body: Consent, ws: WorkspaceDep) -> ConsentOut:
    """Set consent per scope; the change is kept in the user's history and the audit chain."""
    return ConsentOut.model_validate(ws.store.set_consent(user_id, body.scopes()))


@router.get("/{user_id}/data", response_model=UserDataOut, responses=errors(401, 403, 404, 422))
def export_user_data(_: AppKey, user_id: UserIdPath, ws: WorkspaceDep, cursor: RecordsCursor,
                     limit: Limit = 50) -> UserDataOut:
    """Everything held about the user, inputs shown as an annotator would see them, with the models they trained.

    Records come a page at a time, oldest first, each with its feedback and lineage; consent comes with every page.
    """
    task = ws.task
    return UserDataOut.model_validate(ws.store.user_data(user_id, lambda data: task.show(task.decode(data)),
                                                         limit=limit, after=cursor))


@router.delete("/{user_id}", response_model=ErasureReceipt, responses=errors(401, 403, 404, 422))
def erase_user(_: AppKey, user_id: UserIdPath, ws: WorkspaceDep, runner: RunnerDep,
               telemetry: TelemetryDep) -> ErasureReceipt:
    """Delete everything held about the user; the receipt names the models trained on their data and what the
    workspace's ``[erasure]`` policy did about one that serves (a retrain-without started, or the step to take)."""
    receipt = ws.erase_user(user_id)
    telemetry.erasures.inc()
    then = follow_up(ws, user_id, receipt, start=lambda params: runner.start("forget", params))
    return ErasureReceipt.model_validate({**receipt, **then.receipt_fields()})
