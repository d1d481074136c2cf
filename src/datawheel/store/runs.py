"""What the store holds about the wheel itself: cycles, verdicts, snapshots, models and aliases."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, delete, func, insert, select, update
from sqlalchemy.sql import ColumnElement

from datawheel.errors import Conflict, ErasedDuringCycle, NotFound
from datawheel.store import audit, events, paging
from datawheel.store import tables as t
from datawheel.store.audit import ChainReport
from datawheel.store.db import aware, new_id, process_alive, utcnow, write
from datawheel.store.erasure import erased_refs_after
from datawheel.store.paging import Key, Page


def _finish(conn: Connection, cycle_id: str, values: dict[str, Any]) -> None:
    """Close a cycle's row; the first close of a running cycle is audited (the stream's ``cycle.finished``)."""
    was = conn.execute(select(t.cycles.c.status).where(t.cycles.c.id == cycle_id)).scalar()
    conn.execute(update(t.cycles).where(t.cycles.c.id == cycle_id).values(finished_at=utcnow(), **values))
    if was == "running":
        # No error text: an exception's message may quote anything, and the chain keeps what it is given forever.
        audit.append(conn, "cycle", "cycle_finish", {
            "cycle_id": cycle_id, "status": values.get("status"), "decision": values.get("decision"),
            "champion_version": values.get("champion_version"),
            "candidate_version": values.get("candidate_version")})


class RunQueries:
    engine: Engine

    # -- cycles --------------------------------------------------------------

    def start_cycle(self, trigger: str, params: dict | None = None) -> str:
        """Register a running cycle; refuse while another runs (unless its process has died)."""
        cycle_id = new_id()
        with write(self.engine) as conn:
            for running in conn.execute(select(t.cycles.c.id, t.cycles.c.pid).where(t.cycles.c.status == "running")):
                if running.pid is not None and not process_alive(running.pid):
                    _finish(conn, running.id, {"status": "failed",
                                               "error": "interrupted: its process ended before the cycle finished"})
                    continue
                raise Conflict(f"cycle {running.id} is still running; wait for it to finish")
            conn.execute(insert(t.cycles).values(id=cycle_id, status="running", trigger=trigger, params=params or {},
                                                 pid=os.getpid(), started_at=utcnow()))
            # The row and its audit entry commit together: the event stream never announces a cycle that is not
            # there, nor misses one that is. Params stay out (a retrain-without's names a user's pseudonym).
            audit.append(conn, "cycle", "cycle_start", {"cycle_id": cycle_id, "trigger": trigger})
        return cycle_id

    def claim_cycle(self, cycle_id: str) -> None:
        """Record that this process now runs the cycle."""
        with write(self.engine) as conn:
            conn.execute(update(t.cycles).where(t.cycles.c.id == cycle_id).values(pid=os.getpid()))

    def finish_cycle(self, cycle_id: str, **values: Any) -> None:
        with write(self.engine) as conn:
            _finish(conn, cycle_id, values)

    def get_cycle(self, cycle_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.cycles).where(t.cycles.c.id == cycle_id)).first()
        if row is None:
            raise NotFound("cycle_id: no such cycle")
        return dict(row._mapping)

    def list_cycles(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.cycles).order_by(t.cycles.c.started_at, t.cycles.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def cycles_page(self, limit: int, after: Key | None = None) -> Page:
        """Cycles oldest first, without their reports (a list of summaries; one cycle's report is a read of its own)."""
        c = t.cycles.c
        query = select(c.id, c.status, c.trigger, c.decision, c.champion_version, c.candidate_version, c.error,
                       c.started_at, c.finished_at)
        return self._page(query, (c.started_at, c.id), limit, after, "cycles",
                          lambda r: paging.time_key(r, "started_at"))

    def _page(self, query: Select[Any], order: tuple[ColumnElement[Any], ...], limit: int, after: Key | None,
              kind: str, key: Callable[[Row[Any]], Key]) -> Page:
        where = paging.after(order, after)
        if where is not None:
            query = query.where(where)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(*order).limit(limit + 1)).all()
        return paging.page(rows, limit, kind, key)

    def last_cycle_start(self) -> datetime | None:
        with self.engine.connect() as conn:
            ts = conn.execute(select(func.max(t.cycles.c.started_at))).scalar_one_or_none()
        return None if ts is None else aware(ts)

    def save_verdicts(self, cycle_id: str, rows: Iterable[tuple[str, str, str, str]]) -> None:
        values = [{"cycle_id": cycle_id, "record_id": r, "stage": s, "verdict": v, "reason": why}
                  for r, s, v, why in rows]
        if values:
            with write(self.engine) as conn:
                conn.execute(insert(t.verdicts), values)

    # -- snapshots -------------------------------------------------------------

    def save_snapshot(self, *, snapshot_id: str, cycle_id: str, path: str, sha256: str, rows: int,
                      members: Iterable[tuple[str, str]]) -> None:
        with write(self.engine) as conn:
            conn.execute(insert(t.snapshots).values(id=snapshot_id, cycle_id=cycle_id, path=path,
                                                    sha256=sha256, rows=rows, created_at=utcnow()))
            # Only records that still exist: a user erased since the cycle read them must not reappear here.
            members = list(members)
            alive = set(conn.execute(select(t.records.c.id).where(
                t.records.c.id.in_(sorted({r for r, _ in members})))).scalars()) if members else set()
            values = [{"snapshot_id": snapshot_id, "record_id": r, "user_id": u} for r, u in members if r in alive]
            if values:
                conn.execute(insert(t.snapshot_members), values)

    def replace_snapshot_file(self, snapshot_id: str, sha256: str, rows: int) -> None:
        """Record a snapshot file rewritten without erased users' rows."""
        with write(self.engine) as conn:
            conn.execute(update(t.snapshots).where(t.snapshots.c.id == snapshot_id).values(sha256=sha256, rows=rows))

    def get_snapshot(self, snapshot_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.snapshots).where(t.snapshots.c.id == snapshot_id)).first()
        if row is None:
            raise NotFound("snapshot_id: no such snapshot")
        return dict(row._mapping)

    def list_snapshots(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(t.snapshots).order_by(t.snapshots.c.created_at))]

    def has_snapshot(self, snapshot_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(t.snapshots.c.id).where(t.snapshots.c.id == snapshot_id)).first() is not None

    def snapshot_members(self, snapshot_id: str) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return [(r.record_id, r.user_id) for r in conn.execute(
                select(t.snapshot_members).where(t.snapshot_members.c.snapshot_id == snapshot_id))]

    def snapshots_of_user(self, user_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return sorted({r.snapshot_id for r in conn.execute(
                select(t.snapshot_members.c.snapshot_id).where(t.snapshot_members.c.user_id == user_id))})

    # -- models and aliases ----------------------------------------------------

    def next_model_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(t.models.c.version), 0))).scalar_one()) + 1

    def add_model(self, **values: Any) -> None:
        with write(self.engine) as conn:
            conn.execute(insert(t.models).values(created_at=utcnow(), **values))

    def get_model(self, version: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.models).where(t.models.c.version == version)).first()
        if row is None:
            raise NotFound(f"version: no model version {version}")
        return dict(row._mapping)

    def add_export(self, version: int, fmt: str, path: str, sha256: str) -> None:
        with write(self.engine) as conn:
            conn.execute(delete(t.exports).where(t.exports.c.version == version, t.exports.c.format == fmt))
            conn.execute(insert(t.exports).values(version=version, format=fmt, path=path, sha256=sha256))

    def get_export(self, version: int, fmt: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.exports).where(t.exports.c.version == version,
                                                       t.exports.c.format == fmt)).first()
        return None if row is None else dict(row._mapping)

    def erased_model_versions(self) -> set[int]:
        """Versions some erasure receipt names: trained on, or started from weights trained on, erased data."""
        with self.engine.connect() as conn:
            return {v for row in conn.execute(select(t.erasures.c.model_versions)) for v in row.model_versions}

    def list_models(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.models).order_by(t.models.c.version)).all()
        return [dict(r._mapping) for r in rows]

    def models_page(self, limit: int, after: Key | None = None) -> Page:
        return self._page(select(t.models), (t.models.c.version,), limit, after, "models", lambda r: (r.version,))

    def aliases(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.name: r.version for r in conn.execute(select(t.aliases))}

    def update_aliases(self, change: Callable[[dict[str, int]], dict[str, int]], actor: str, action: str,
                       detail: Callable[[dict[str, int]], dict],
                       unless_erased: tuple[int, set[str]] | None = None) -> dict[str, int]:
        """Read the alias map, compute the new one with ``change`` and write it, all in one locked transaction.

        Two operators promoting and rolling back at once each see the other's result, never a map both read
        before either wrote (a lost update). ``change`` may raise (e.g. Conflict) to abort without writing.
        ``unless_erased=(fence, user_refs)``: refuse (ErasedDuringCycle) if any of those users was erased after
        audit entry ``fence``; checked under the same lock, so no erasure slips between check and write.
        """
        with write(self.engine) as conn:
            if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already holds the write lock
                conn.exec_driver_sql("LOCK TABLE aliases IN EXCLUSIVE MODE")
                conn.exec_driver_sql("LOCK TABLE erasures IN SHARE MODE")
            if unless_erased is not None:
                late = erased_refs_after(conn, unless_erased[0]) & unless_erased[1]
                if late:
                    raise ErasedDuringCycle(late)
            old = {r.name: r.version for r in conn.execute(select(t.aliases))}
            new = change(old)
            conn.execute(delete(t.aliases))
            if new:
                conn.execute(insert(t.aliases), [{"name": k, "version": v} for k, v in new.items()])
            audit.append(conn, actor, action, {**detail(new), "aliases": new})
        return new

    # -- audit -------------------------------------------------------------------

    def audit(self, actor: str, action: str, detail: dict) -> int:
        with write(self.engine) as conn:
            return audit.append(conn, actor, action, detail)

    def last_audit_detail(self, actions: tuple[str, ...]) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.audit.c.detail).where(t.audit.c.action.in_(actions))
                               .order_by(t.audit.c.id.desc()).limit(1)).first()
        return None if row is None else row.detail

    def audit_log(self, limit: int | None = None) -> list[dict]:
        with self.engine.connect() as conn:
            return audit.entries(conn, limit)

    def audit_page(self, limit: int, before: Key | None = None) -> Page:
        """The newest ``limit`` entries before entry ``before`` (all when None), oldest first; pages go back in time,
        so entries appended meanwhile never push older ones onto a second page."""
        query = select(t.audit)
        if before is not None:
            query = query.where(t.audit.c.id < before[0])
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.audit.c.id.desc()).limit(limit + 1)).all()
        newest_first = paging.page(rows, limit, "audit", lambda r: (r.id,))
        return Page(newest_first.items[::-1], newest_first.next_cursor)

    def events_after(self, after: int, limit: int = 100) -> tuple[list[dict], int]:
        """The wheel's events after audit entry ``after`` and where to read on from (``store/events.py``)."""
        with self.engine.connect() as conn:
            return events.events_after(conn, after, limit)

    def verify_audit(self) -> ChainReport:
        with self.engine.connect() as conn:
            return audit.verify(conn)
