"""The audit chain for operators: its latest entries, and whether the chain is still intact."""

from __future__ import annotations

from fastapi import APIRouter

from datawheel.api.deps import AdminKey, WorkspaceDep
from datawheel.api.paging import AuditCursor, Limit
from datawheel.api.responses import AuditEntry, AuditOut, ChainOut, errors

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=AuditOut, responses=errors(401, 403, 422))
def audit_log(_: AdminKey, ws: WorkspaceDep, cursor: AuditCursor, limit: Limit = 100) -> AuditOut:
    """The newest entries, oldest first; ``next_cursor`` pages back through older ones.

    Verified on every call: a broken chain is reported with the first entry that does not hold.
    """
    report = ws.store.verify_audit()
    page = ws.store.audit_page(limit, cursor)
    return AuditOut(chain=ChainOut(ok=report.ok, entries=report.entries, first_broken=report.first_broken,
                                   problem=report.problem),
                    entries=[AuditEntry.model_validate(e) for e in page.items], next_cursor=page.next_cursor)
