"""Turns of the wheel: start one, follow it, list them; retraining without a user is one too.

A cycle runs beside serving (in a child process by default), so starting one
answers 202 at once with the id to poll.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from datawheel.api.deps import AdminKey, RunnerDep, UserIdPath, WorkspaceDep
from datawheel.api.paging import CyclesCursor, Limit
from datawheel.api.responses import CycleOut, CyclesOut, CycleStarted, CycleSummary, errors
from datawheel.api.schemas import CycleIn, CyclePath
from datawheel.errors import NotFound
from datawheel.wheel.after_erasure import check_retrain_without

router = APIRouter(prefix="/v1", tags=["cycles"])


def _cycle(row: dict[str, Any]) -> CycleOut:
    """The store's row under the API's names: its ``id`` is the ``cycle_id`` every other answer uses."""
    return CycleOut.model_validate({**row, "cycle_id": row["id"]})


@router.post("/cycles", response_model=CycleStarted, status_code=status.HTTP_202_ACCEPTED,
             responses=errors(401, 403, 409, 413, 422))
def start_cycle(_: AdminKey, runner: RunnerDep, body: CycleIn | None = None) -> CycleStarted:
    params = {} if body is None or body.warm_start is None else {"warm_start": body.warm_start}
    return CycleStarted(cycle_id=runner.start("api", params), status="running")


@router.get("/cycles", response_model=CyclesOut, responses=errors(401, 403, 422))
def list_cycles(_: AdminKey, ws: WorkspaceDep, cursor: CyclesCursor, limit: Limit = 50) -> CyclesOut:
    """Oldest first, each without its report; ``GET /v1/cycles/{cycle_id}`` gives one cycle whole."""
    page = ws.store.cycles_page(limit, cursor)
    return CyclesOut(cycles=[CycleSummary.model_validate({**c, "cycle_id": c["id"]}) for c in page.items],
                     next_cursor=page.next_cursor)


@router.get("/cycles/{cycle_id}", response_model=CycleOut, responses=errors(401, 403, 404, 422))
def get_cycle(cycle_id: CyclePath, _: AdminKey, ws: WorkspaceDep) -> CycleOut:
    try:
        return _cycle(ws.store.get_cycle(cycle_id))
    except NotFound:
        raise NotFound("cycle_id: no such cycle") from None  # the store's message quotes the id sent


@router.post("/users/{user_id}/retrain-without", response_model=CycleStarted,
             status_code=status.HTTP_202_ACCEPTED, responses=errors(401, 403, 409, 422))
def retrain_without(_: AdminKey, user_id: UserIdPath, ws: WorkspaceDep, runner: RunnerDep) -> CycleStarted:
    """Train and gate a replacement for the champion from its snapshot minus this user's rows; 409 for a user
    who was never erased (erase first)."""
    check_retrain_without(ws, user_id)
    return CycleStarted(cycle_id=runner.start("forget", {"without_user_ref": ws.user_ref(user_id)}),
                        status="running")
