"""The model registry as operators see it: versions, and moving the champion by hand.

A change is served by this process at once and by others within
``refresh_interval``; each is written to the audit chain with its actor.
"""

from __future__ import annotations

from fastapi import APIRouter

from datawheel.api.deps import AdminKey, ServerDep, WorkspaceDep
from datawheel.api.paging import Limit, ModelsCursor
from datawheel.api.responses import AliasesOut, ModelOut, ModelsOut, errors
from datawheel.api.schemas import VersionPath
from datawheel.models.registry import Registry

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=ModelsOut, responses=errors(401, 403, 422))
def list_models(_: AdminKey, ws: WorkspaceDep, cursor: ModelsCursor, limit: Limit = 50) -> ModelsOut:
    """Oldest version first, each with the aliases naming it."""
    aliases: dict[int, list[str]] = {}
    for name, version in ws.store.aliases().items():
        aliases.setdefault(version, []).append(name)
    page = ws.store.models_page(limit, cursor)
    return ModelsOut(models=[
        ModelOut(version=m["version"], aliases=sorted(aliases.get(m["version"], [])), model_name=m["model_name"],
                 metrics=m["metrics"], dataset=m["dataset_id"], parent=m["parent"], sha256=m["sha256"],
                 created_at=m["created_at"])
        for m in page.items], next_cursor=page.next_cursor)


@router.post("/models/{version}/promote", response_model=AliasesOut, responses=errors(401, 403, 404, 409, 422))
def promote_model(version: VersionPath, _: AdminKey, ws: WorkspaceDep, server: ServerDep) -> AliasesOut:
    aliases = Registry(ws).promote(version, actor="admin", reason="promoted by an operator")
    server.refresh(force=True)
    return AliasesOut(aliases=aliases)


@router.post("/rollback", response_model=AliasesOut, responses=errors(401, 403, 409))
def rollback(_: AdminKey, ws: WorkspaceDep, server: ServerDep) -> AliasesOut:
    """Swap the champion and the previous champion."""
    aliases = Registry(ws).rollback(actor="admin")
    server.refresh(force=True)
    return AliasesOut(aliases=aliases)
