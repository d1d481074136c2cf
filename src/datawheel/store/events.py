"""The wheel's events (a cycle started or finished, a release, an erasure, a policy change), read from the audit chain.

The chain is the one durable, ordered record every process writes to (the server's workers, a cycle's
child process, the command line), so events derived from it are the same whichever process reads them
and outlive restarts; an entry's sequence number is the event's id. Entries are numbered under the
chain's head lock and committed in that order, so reading on from the last id seen never misses one.
An event carries only what its entry says about the wheel: an erasure gives its receipt id, never the
user or their pseudonym.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from datawheel.store import tables as t
from datawheel.store.db import aware

#: audit action -> (event type, {detail key: event field})
_EVENTS: dict[str, tuple[str, dict[str, str]]] = {
    "cycle_start": ("cycle.started", {"cycle_id": "cycle_id", "trigger": "trigger"}),
    "cycle_finish": ("cycle.finished", {"cycle_id": "cycle_id", "status": "status", "decision": "decision",
                                        "champion_version": "champion_version",
                                        "candidate_version": "candidate_version"}),
    "promotion": ("model.promoted", {"version": "version", "reason": "reason", "aliases": "aliases"}),
    "rollback": ("model.rolled_back", {"version": "version", "aliases": "aliases"}),
    "erasure": ("user.erased", {"receipt": "receipt_id"}),
    "policy_set": ("policy.changed", {"sha256": "sha256"}),
    "policy_change": ("policy.changed", {"sha256": "sha256"}),
}
#: trials: started when the entry names a version, stopped when it names none
_TRIALS = ("shadow", "canary")
_TRIAL_FIELDS = {"version": "version", "reason": "reason", "aliases": "aliases"}
ACTIONS = (*_EVENTS, *_TRIALS)


def as_event(entry_id: int, at: datetime, action: str, detail: dict[str, Any]) -> dict[str, Any]:
    if action in _TRIALS:
        kind, fields = f"{action}.{'stopped' if detail.get('version') is None else 'started'}", _TRIAL_FIELDS
    else:
        kind, fields = _EVENTS[action]
    return {"id": entry_id, "type": kind, "at": aware(at).isoformat(),
            **{name: detail.get(key) for key, name in fields.items()}}


def events_after(conn: Connection, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` events after entry ``after``, and the entry to read on from next time.

    Only entries up to the chain's head as read first are scanned, and the next read starts there when
    this one was not cut short: entries that are not events (consent changes, exports) are passed over
    once, not on every poll.
    """
    head = int(conn.execute(select(t.audit_head.c.seq).where(t.audit_head.c.id == 1)).scalar() or 0)
    rows = conn.execute(select(t.audit.c.id, t.audit.c.at, t.audit.c.action, t.audit.c.detail)
                        .where(t.audit.c.id > after, t.audit.c.id <= head, t.audit.c.action.in_(ACTIONS))
                        .order_by(t.audit.c.id).limit(limit)).all()
    events = [as_event(r.id, r.at, r.action, r.detail) for r in rows]
    return events, (rows[-1].id if len(rows) == limit else max(head, after))
