"""The operator console's JSON: the wheel at a glance, cycles, the registry, trials, the queue and the audit chain.

The key is typed once (``POST /app/console/login``) and kept only as a role and a key fingerprint in a
signed, HTTP-only cookie; every route below asks for that role (``ConsoleAdmin``, or ``ConsoleRole`` for
the annotation queue, open to annotators too). Actions go through the same registry, runner and store
calls as the API's admin routes, with the actor ``console``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response

from datawheel.api.deps import RunnerDep, ServerDep, ServicesDep, WorkspaceDep
from datawheel.api.ingest import check_label
from datawheel.api.schemas import Text, VersionPath
from datawheel.errors import NotFound
from datawheel.models.card import card_path
from datawheel.models.registry import Registry
from datawheel.store.db import aware, utcnow
from datawheel.web import charts
from datawheel.web.security import CONSOLE_COOKIE, CONSOLE_SECONDS, cookie_options
from datawheel.web.session import ConsoleAdmin, ConsoleRole, SameOrigin, SignerDep
from datawheel.web.visitor import _Body
from datawheel.workspace import Workspace

router = APIRouter(prefix="/app/console", include_in_schema=False, dependencies=[SameOrigin])
ItemPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
CyclePath = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")]


class LoginIn(_Body):
    key: str


class CycleStartIn(_Body):
    warm_start: bool | None = None


class LabelIn(_Body):
    label: Text


@router.post("/login")
def login(body: LoginIn, response: Response, services: ServicesDep, sign: SignerDep) -> dict:
    """Exchange the admin or annotator key for a console cookie; the key itself is not kept anywhere."""
    role = services.keys.role_of(body.key)
    if role not in ("admin", "annotator"):
        raise HTTPException(401, "key: not an admin or annotator key")
    key = services.keys.admin if role == "admin" else services.keys.annotator
    token = sign.sign("console", {"role": role, "kfp": sign.key_fingerprint(key),
                                  "exp": int(time.time()) + CONSOLE_SECONDS})
    response.set_cookie(CONSOLE_COOKIE, token, **cookie_options(CONSOLE_SECONDS))
    return {"role": role}


@router.post("/logout")
def logout(response: Response) -> dict:
    response.delete_cookie(CONSOLE_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return {"role": None}


@router.get("/whoami")
def whoami(role: ConsoleRole) -> dict:
    return {"role": role}


def _accuracy_points(ws: Workspace) -> list[charts.Point]:
    """The first champion's accuracy, then the champion's after every finished turn of the wheel."""
    models = ws.store.list_models()
    points = [charts.Point("v1", float(models[0]["metrics"]["accuracy"]), "start")] if models else []
    for c in sorted(ws.store.list_cycles(), key=lambda c: c["started_at"]):
        report = c.get("report") or {}
        if c["status"] == "done" and "champion_accuracy" in report:
            points.append(charts.Point(c["id"][:6], float(report["champion_accuracy"]), c["decision"] or ""))
    return points


@router.get("/overview")
def overview(_: ConsoleAdmin, ws: WorkspaceDep, server: ServerDep) -> dict:
    """Activity per day, why records were rejected, snapshot sizes and the accuracy per cycle, as charts and
    as numbers."""
    days = ws.store.activity_per_day(30)
    cycles = [c for c in ws.store.list_cycles() if c["status"] == "done" and c.get("report")]
    reasons: dict[str, int] = {}
    if cycles:
        reasons = dict(max(cycles, key=lambda c: c["started_at"])["report"].get("rejected_by_reason", {}))
    snapshots = [(s["id"][:6], float(s["rows"])) for s in ws.store.list_snapshots()]
    points = _accuracy_points(ws)
    return {"champion_version": server.current.version, "activity": days, "rejected_by_reason": reasons,
            "snapshots": [{"id": s, "rows": int(r)} for s, r in snapshots],
            "accuracy": [{"cycle": p.label, "accuracy": p.value, "decision": p.kind} for p in points],
            "charts": {"accuracy": charts.accuracy_chart(points), "activity": charts.activity_chart(days),
                       "reasons": charts.bar_chart("chart-reasons", "Rejected records by reason (latest cycle)",
                                                   sorted(reasons.items(), key=lambda kv: -kv[1]), charts.RED),
                       "snapshots": charts.bar_chart("chart-snapshots", "Snapshot sizes (items)", snapshots)}}


def _progress(ws: Workspace, cycle: dict[str, Any]) -> dict[str, Any]:
    """Where a cycle is, read from what it has written so far: curated (its snapshot), trained (its candidate)."""
    snapped = any(s["cycle_id"] == cycle["id"] for s in ws.store.list_snapshots()) or bool(cycle["snapshot_id"])
    trained = any(m["cycle_id"] == cycle["id"] for m in ws.store.list_models())
    done = cycle["status"] != "running"
    elapsed = (aware(cycle["finished_at"] or utcnow()) - aware(cycle["started_at"])).total_seconds()
    stage = cycle["status"] if done else "registering" if trained else "training" if snapped else "curating"
    return {"stage": stage, "steps": {"curated": snapped or done, "trained": trained or done, "released": done},
            "elapsed_seconds": round(elapsed, 1)}


def _cycle_out(ws: Workspace, c: dict[str, Any]) -> dict[str, Any]:
    report = c.get("report") or {}
    return {"id": c["id"], "status": c["status"], "trigger": c["trigger"], "decision": c["decision"],
            "champion_version": c["champion_version"], "candidate_version": c["candidate_version"],
            "started_at": c["started_at"].isoformat(), "error": c["error"], "report": report,
            "progress": _progress(ws, c)}


@router.get("/cycles")
def cycles(_: ConsoleAdmin, ws: WorkspaceDep) -> dict:
    rows = sorted(ws.store.list_cycles(), key=lambda c: c["started_at"], reverse=True)[:20]
    return {"cycles": [_cycle_out(ws, c) for c in rows]}


@router.post("/cycles", status_code=202)
def start_cycle(_: ConsoleAdmin, runner: RunnerDep, body: CycleStartIn | None = None) -> dict:
    params = {} if body is None or body.warm_start is None else {"warm_start": body.warm_start}
    return {"cycle_id": runner.start("console", params), "status": "running"}


@router.get("/cycles/{cycle_id}")
def cycle(cycle_id: CyclePath, _: ConsoleAdmin, ws: WorkspaceDep) -> dict:
    try:
        return _cycle_out(ws, ws.store.get_cycle(cycle_id))
    except NotFound:
        raise NotFound("cycle_id: no such cycle") from None


@router.get("/models")
def models(_: ConsoleAdmin, ws: WorkspaceDep) -> dict:
    aliases: dict[int, list[str]] = {}
    for name, version in ws.store.aliases().items():
        aliases.setdefault(version, []).append(name)
    return {"models": [{"version": m["version"], "model_name": m["model_name"], "aliases": sorted(
        aliases.get(m["version"], [])), "accuracy": m["metrics"].get("accuracy"), "dataset": m["dataset_id"],
        "parent": m["parent"], "created_at": m["created_at"].isoformat()} for m in ws.store.list_models()]}


@router.get("/models/{version}/card")
def model_card(version: VersionPath, _: ConsoleAdmin, ws: WorkspaceDep) -> dict:
    ws.store.get_model(version)
    path = card_path(ws.model_path(version))
    return {"version": version, "markdown": path.read_text(encoding="utf-8") if path.is_file() else ""}


@router.post("/models/{version}/promote")
def promote(version: VersionPath, _: ConsoleAdmin, ws: WorkspaceDep, server: ServerDep) -> dict:
    aliases = Registry(ws).promote(version, actor="console", reason="promoted by an operator in the console")
    server.refresh(force=True)
    return {"aliases": aliases}


@router.post("/rollback")
def rollback(_: ConsoleAdmin, ws: WorkspaceDep, server: ServerDep) -> dict:
    aliases = Registry(ws).rollback(actor="console")
    server.refresh(force=True)
    return {"aliases": aliases}


@router.get("/trials")
def trials(_: ConsoleAdmin, ws: WorkspaceDep) -> dict:
    """The shadow's agreement with the champion and the canary's live accuracy, when either runs."""
    aliases = ws.store.aliases()
    out: dict[str, Any] = {"share": ws.config.release.canary_share, "shadow": None, "canary": None}
    if "shadow" in aliases:
        out["shadow"] = {"version": aliases["shadow"], **ws.store.shadow_report(aliases["shadow"])}
    if "canary" in aliases:
        out["canary"] = {name: {"version": v, "with_feedback": n, "accuracy": round(right / n, 4) if n else None}
                         for name, v in (("canary", aliases["canary"]), ("champion", aliases["champion"]))
                         for n, right in [ws.store.live_accuracy(v)]}
    return out


@router.get("/queue")
def queue(_: ConsoleRole, ws: WorkspaceDep) -> dict:
    """The next item worth labelling, and how many are open; annotators and admins alike."""
    task = ws.task
    items = ws.store.annotation_queue(500)
    nxt = items[0] if items else None
    return {"labels": list(ws.labels), "open": len(items), "item": None if nxt is None else {
        "item_id": nxt["item_id"], "input": task.show(task.decode(nxt["input"])), "score": nxt["score"],
        "signals": nxt["signals"]}}


@router.post("/queue/{item_id}", status_code=201)
def label_item(item_id: ItemPath, body: LabelIn, role: ConsoleRole, ws: WorkspaceDep) -> dict:
    check_label(body.label, ws.labels, "label")
    answer = ws.store.annotate(item_id, body.label, annotator=f"{role}:console")
    return {"item_id": item_id, "label": answer.get("label", body.label)}


@router.get("/audit")
def audit(_: ConsoleAdmin, ws: WorkspaceDep) -> dict:
    report = ws.store.verify_audit()
    entries = [{**e, "at": e["at"].isoformat() if hasattr(e["at"], "isoformat") else e["at"]}
               for e in ws.store.audit_log(30)]
    return {"chain": {"ok": report.ok, "entries": report.entries, "first_broken": report.first_broken,
                      "problem": report.problem}, "entries": entries}
