"""Operators' routes: cycles, the model registry, promotion, rollback, shadow runs and canaries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from datawheel.api.deps import AdminKey, RunnerDep, ServerDep, WorkspaceDep
from datawheel.api.schemas import CycleIn, CycleStarted
from datawheel.errors import NotFound
from datawheel.models.registry import Registry
from datawheel.models.serving import ModelServer
from datawheel.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["admin"])


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def cycle_json(row: dict) -> dict:
    return {"cycle_id": row["id"], "status": row["status"], "trigger": row["trigger"], "decision": row["decision"],
            "params": row["params"],
            "champion_version": row["champion_version"], "candidate_version": row["candidate_version"],
            "snapshot_id": row["snapshot_id"], "report": row["report"], "error": row["error"],
            "started_at": _iso(row["started_at"]), "finished_at": _iso(row["finished_at"])}


@router.post("/cycles", response_model=CycleStarted, status_code=status.HTTP_202_ACCEPTED)
def start_cycle(_: AdminKey, runner: RunnerDep, body: CycleIn | None = None) -> CycleStarted:
    params = {} if body is None or body.warm_start is None else {"warm_start": body.warm_start}
    return CycleStarted(cycle_id=runner.start("api", params), status="running")


@router.post("/users/{user_id}/retrain-without", response_model=CycleStarted, status_code=status.HTTP_202_ACCEPTED)
def retrain_without(user_id: str, _: AdminKey, ws: WorkspaceDep, runner: RunnerDep) -> CycleStarted:
    """Train and gate a replacement for the champion from its snapshot minus this user's rows."""
    return CycleStarted(cycle_id=runner.start("forget", {"without_user_ref": ws.user_ref(user_id)}),
                        status="running")


@router.get("/audit")
def audit_log(_: AdminKey, ws: WorkspaceDep, limit: int = 100) -> dict:
    report = ws.store.verify_audit()
    return {"chain": {"ok": report.ok, "entries": report.entries, "first_broken": report.first_broken,
                      "problem": report.problem},
            "entries": [{**e, "at": _iso(e["at"])} for e in ws.store.audit_log(max(1, min(limit, 1000)))]}


@router.get("/cycles")
def list_cycles(_: AdminKey, ws: WorkspaceDep) -> dict:
    return {"cycles": [cycle_json(c) for c in ws.store.list_cycles()]}


@router.get("/cycles/{cycle_id}")
def get_cycle(cycle_id: str, _: AdminKey, ws: WorkspaceDep) -> dict:
    return cycle_json(ws.store.get_cycle(cycle_id))


@router.get("/models")
def list_models(_: AdminKey, ws: WorkspaceDep) -> dict:
    aliases: dict[int, list[str]] = {}
    for name, version in ws.store.aliases().items():
        aliases.setdefault(version, []).append(name)
    return {"models": [{"version": m["version"], "aliases": sorted(aliases.get(m["version"], [])),
                        "model_name": m["model_name"], "metrics": m["metrics"], "dataset": m["dataset_id"],
                        "parent": m["parent"], "sha256": m["sha256"], "created_at": _iso(m["created_at"])}
                       for m in ws.store.list_models()]}


@router.post("/models/{version}/promote")
def promote(version: int, _: AdminKey, ws: WorkspaceDep, server: ServerDep) -> dict:
    aliases = Registry(ws).promote(version, actor="admin", reason="promoted by an operator")
    server.refresh(force=True)
    return {"aliases": aliases}


@router.post("/rollback")
def rollback(_: AdminKey, ws: WorkspaceDep, server: ServerDep) -> dict:
    aliases = Registry(ws).rollback(actor="admin")
    server.refresh(force=True)
    return {"aliases": aliases}


def _set_trial(ws: Workspace, server: ModelServer, name: str, version: int | None) -> dict:
    aliases = Registry(ws).trial(name, version, actor="admin")
    server.refresh(force=True)  # this process serves the change at once, others within refresh_interval
    return {"aliases": aliases}


@router.post("/models/{version}/shadow")
def start_shadow(version: int, _: AdminKey, ws: WorkspaceDep, server: ServerDep) -> dict:
    """Let ``version`` predict on live traffic beside the champion; only the champion answers."""
    return _set_trial(ws, server, "shadow", version)


@router.delete("/shadow")
def stop_shadow(_: AdminKey, ws: WorkspaceDep, server: ServerDep) -> dict:
    return _set_trial(ws, server, "shadow", None)


@router.get("/shadow")
def shadow_report(_: AdminKey, ws: WorkspaceDep, version: int | None = None) -> dict:
    """Agreement with the champion and, where users gave feedback, both models' accuracy."""
    if version is None:
        version = ws.store.aliases().get("shadow")
        if version is None:
            raise NotFound("version: no shadow is running; give ?version= for a past shadow run")
    ws.store.get_model(version)
    return ws.store.shadow_report(version)


@router.post("/models/{version}/canary")
def start_canary(version: int, _: AdminKey, ws: WorkspaceDep, server: ServerDep) -> dict:
    """Let ``version`` answer a stable share of users; it is rolled back if their feedback says it is worse."""
    return {**_set_trial(ws, server, "canary", version), "share": ws.config.release.canary_share}


@router.delete("/canary")
def stop_canary(_: AdminKey, ws: WorkspaceDep, server: ServerDep) -> dict:
    return _set_trial(ws, server, "canary", None)


@router.get("/canary")
def canary_report(_: AdminKey, ws: WorkspaceDep) -> dict:
    """The running canary's and the champion's live accuracy on the answers users gave feedback on."""
    aliases = ws.store.aliases()
    if "canary" not in aliases:
        raise NotFound("canary: none is running")

    def live(version: int) -> dict:
        n, right = ws.store.live_accuracy(version)
        return {"version": version, "with_feedback": n, "accuracy": round(right / n, 6) if n else None}
    return {"share": ws.config.release.canary_share, "canary": live(aliases["canary"]),
            "champion": live(aliases["champion"])}
