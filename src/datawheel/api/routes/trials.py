"""Trials on live traffic: a shadow predicts beside the champion, a canary answers a stable share of users.

Either is judged on real requests rather than the golden set; see
``store/live.py`` for how answers and feedback are compared.
"""

from __future__ import annotations

from fastapi import APIRouter

from datawheel.api.deps import AdminKey, ServerDep, WorkspaceDep
from datawheel.api.responses import AliasesOut, CanaryReport, CanaryStarted, LiveAccuracy, ShadowReport, errors
from datawheel.api.schemas import VersionPath, VersionQuery
from datawheel.errors import NotFound
from datawheel.models.registry import Registry
from datawheel.models.serving import ModelServer
from datawheel.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["trials"])


def _set_trial(ws: Workspace, server: ModelServer, name: str, version: int | None) -> dict[str, int]:
    aliases = Registry(ws).trial(name, version, actor="admin")
    server.refresh(force=True)  # this process serves the change at once, others within refresh_interval
    return aliases


@router.post("/models/{version}/shadow", response_model=AliasesOut, responses=errors(401, 403, 404, 409, 422))
def start_shadow(version: VersionPath, _: AdminKey, ws: WorkspaceDep, server: ServerDep) -> AliasesOut:
    """Let ``version`` predict on live traffic beside the champion; only the champion answers."""
    return AliasesOut(aliases=_set_trial(ws, server, "shadow", version))


@router.delete("/shadow", response_model=AliasesOut, responses=errors(401, 403))
def stop_shadow(_: AdminKey, ws: WorkspaceDep, server: ServerDep) -> AliasesOut:
    return AliasesOut(aliases=_set_trial(ws, server, "shadow", None))


@router.get("/shadow", response_model=ShadowReport, responses=errors(401, 403, 404, 422))
def shadow_report(_: AdminKey, ws: WorkspaceDep, version: VersionQuery = None) -> ShadowReport:
    """Agreement with the champion and, where users gave feedback, both models' accuracy."""
    if version is None:
        version = ws.store.aliases().get("shadow")
        if version is None:
            raise NotFound("version: no shadow is running; give ?version= for a past shadow run")
    ws.store.get_model(version)
    return ShadowReport.model_validate(ws.store.shadow_report(version))


@router.post("/models/{version}/canary", response_model=CanaryStarted, responses=errors(401, 403, 404, 409, 422))
def start_canary(version: VersionPath, _: AdminKey, ws: WorkspaceDep, server: ServerDep) -> CanaryStarted:
    """Let ``version`` answer a stable share of users; it is rolled back if their feedback says it is worse."""
    return CanaryStarted(aliases=_set_trial(ws, server, "canary", version), share=ws.config.release.canary_share)


@router.delete("/canary", response_model=AliasesOut, responses=errors(401, 403))
def stop_canary(_: AdminKey, ws: WorkspaceDep, server: ServerDep) -> AliasesOut:
    return AliasesOut(aliases=_set_trial(ws, server, "canary", None))


@router.get("/canary", response_model=CanaryReport, responses=errors(401, 403, 404))
def canary_report(_: AdminKey, ws: WorkspaceDep) -> CanaryReport:
    """The running canary's and the champion's live accuracy on the answers users gave feedback on."""
    aliases = ws.store.aliases()
    if "canary" not in aliases:
        raise NotFound("canary: none is running")

    def live(version: int) -> LiveAccuracy:
        n, right = ws.store.live_accuracy(version)
        return LiveAccuracy(version=version, with_feedback=n, accuracy=round(right / n, 6) if n else None)
    return CanaryReport(share=ws.config.release.canary_share, canary=live(aliases["canary"]),
                        champion=live(aliases["champion"]))
