"""The audit log: append-only and hash-chained, so an edit, a deletion or a truncation shows.

Each entry's hash covers its sequence number, time, actor, action, detail and
the previous entry's hash. A one-row head table holds the last sequence number
and hash; appending updates it first, which locks it (row lock on PostgreSQL,
the write lock on SQLite), so concurrent appends from the server and a cycle
process queue up instead of forking the chain. Details never hold personal
data: users appear as keyed pseudonyms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from datawheel.store import tables as t
from datawheel.store.db import aware, insert_ignore, utcnow

GENESIS = "0" * 64


def entry_hash(seq: int, at: datetime, actor: str, action: str, detail: dict, prev: str) -> str:
    payload = json.dumps({"seq": seq, "at": aware(at).isoformat(), "actor": actor, "action": action,
                          "detail": detail, "prev": prev}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def append(conn: Connection, actor: str, action: str, detail: dict) -> int:
    """Append one entry inside the caller's write transaction; return its sequence number."""
    conn.execute(insert_ignore(conn, t.audit_head, {"id": 1, "seq": 0, "hash": GENESIS}))
    conn.execute(update(t.audit_head).where(t.audit_head.c.id == 1).values(seq=t.audit_head.c.seq + 1))
    head = conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)).one()
    at = utcnow()
    digest = entry_hash(head.seq, at, actor, action, detail, head.hash)
    conn.execute(insert(t.audit).values(id=head.seq, at=at, actor=actor, action=action, detail=detail,
                                        prev_hash=head.hash, hash=digest))
    conn.execute(update(t.audit_head).where(t.audit_head.c.id == 1).values(hash=digest))
    return head.seq


@dataclass(frozen=True)
class ChainReport:
    entries: int
    first_broken: int | None
    problem: str

    @property
    def ok(self) -> bool:
        return self.first_broken is None


def verify(conn: Connection) -> ChainReport:
    rows = conn.execute(select(t.audit).order_by(t.audit.c.id)).all()
    head = conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)).first()
    prev = GENESIS
    for expected_id, row in enumerate(rows, start=1):
        if row.id != expected_id:
            return ChainReport(len(rows), expected_id, f"entry {expected_id} is missing")
        if row.prev_hash != prev:
            return ChainReport(len(rows), row.id, "does not link to the entry before it")
        if entry_hash(row.id, row.at, row.actor, row.action, row.detail, row.prev_hash) != row.hash:
            return ChainReport(len(rows), row.id, "its content does not match its hash")
        prev = row.hash
    if head is not None and (head.seq != len(rows) or head.hash != prev):
        return ChainReport(len(rows), len(rows) + 1, f"the chain ends at {len(rows)} but {head.seq} were written")
    return ChainReport(len(rows), None, "intact")


def entries(conn: Connection, limit: int | None = None) -> list[dict[str, Any]]:
    query = select(t.audit).order_by(t.audit.c.id.desc())
    if limit:
        query = query.limit(limit)
    return [dict(r._mapping) for r in reversed(conn.execute(query).all())]
