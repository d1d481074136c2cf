"""The audit chain for operators: its latest entries, and whether the chain is still intact."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from datawheel.api.deps import AdminKey, WorkspaceDep
from datawheel.api.responses import AuditEntry, AuditOut, ChainOut, errors

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=AuditOut, responses=errors(401, 403, 422))
def audit_log(_: AdminKey, ws: WorkspaceDep,
              limit: Annotated[int, Query(description="newest entries to return, 1 to 1000")] = 100) -> AuditOut:
    """Verified on every call: a broken chain is reported with the first entry that does not hold."""
    report = ws.store.verify_audit()
    return AuditOut(chain=ChainOut(ok=report.ok, entries=report.entries, first_broken=report.first_broken,
                                   problem=report.problem),
                    entries=[AuditEntry.model_validate(e) for e in ws.store.audit_log(max(1, min(limit, 1000)))])
