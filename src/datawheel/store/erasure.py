"""Erasure: deleting a user, the receipt that says which models saw them, and the fence cycles check.

An erasure can land while a cycle is running: the cycle may already hold the
user's rows in memory. The audit chain's sequence number is the fence: a cycle
notes it before reading records, and before it registers or promotes a model
asks which users were erased after it (:meth:`ErasureQueries.erased_refs_after`).
A model that saw them is named in their receipts (so the receipt lists every
version that ever saw the data, including ones that finished after the
erasure) and is never promoted: the promotion re-checks the fence inside the
alias transaction (see ``RunQueries.update_aliases``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from datawheel.errors import NotFound
from datawheel.store import audit
from datawheel.store import tables as t
from datawheel.store.curation import drop_orphans
from datawheel.store.db import new_id, utcnow, write


def erased_refs_after(conn: Connection, seq: int) -> set[str]:
    """Keyed pseudonyms of the users erased after audit entry ``seq``."""
    rows = conn.execute(select(t.audit.c.detail).where(t.audit.c.id > seq, t.audit.c.action == "erasure"))
    return {r.detail["user_ref"] for r in rows}


class ErasureQueries:
    engine: Engine
    user_ref: Any  # Callable[[str], str], set by Store

    def erase_user(self, user_id: str, actor: str = "app") -> dict:
        """Delete everything held about a user, in one transaction, and return the receipt."""
        user_ref = self.user_ref(user_id)
        with write(self.engine) as conn:
            if conn.execute(select(t.users.c.user_id).where(t.users.c.user_id == user_id)).first() is None:
                raise NotFound("user_id: no data is held for this user")
            versions = _versions_trained_on(conn, user_id)
            n_rec, n_fb = _delete_user_rows(conn, user_id)
            receipt_id = new_id()
            now = utcnow()
            conn.execute(insert(t.erasures).values(id=receipt_id, user_ref=user_ref, records_deleted=n_rec,
                                                   feedback_deleted=n_fb, model_versions=versions, at=now))
            audit.append(conn, actor, "erasure", {"receipt": receipt_id, "user_ref": user_ref,
                                                  "records_deleted": n_rec, "model_versions": versions})
        return {"receipt_id": receipt_id, "user_id": user_id, "records_deleted": n_rec,
                "feedback_deleted": n_fb, "model_versions_trained_on_user_data": versions,
                "erased_at": now.isoformat()}

    def receipt(self, receipt_id: str) -> dict:
        """A past erasure's receipt, as it stands now (later cycles may have named more models)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.erasures).where(t.erasures.c.id == receipt_id)).first()
        if row is None:
            raise NotFound("receipt_id: no such erasure receipt")
        return {"receipt_id": row.id, "user_ref": row.user_ref, "records_deleted": row.records_deleted,
                "feedback_deleted": row.feedback_deleted, "model_versions_trained_on_user_data":
                sorted(row.model_versions), "erased_at": row.at.isoformat()}

    def audit_seq(self) -> int:
        """The audit chain's current sequence number: a cycle's erasure fence."""
        with self.engine.connect() as conn:
            seq = conn.execute(select(t.audit_head.c.seq).where(t.audit_head.c.id == 1)).scalar()
        return int(seq or 0)

    def erased_refs_after(self, seq: int) -> set[str]:
        with self.engine.connect() as conn:
            return erased_refs_after(conn, seq)

    def erased_refs(self) -> set[str]:
        """Keyed pseudonyms of every user ever erased (files written in a race are scrubbed against these)."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(t.erasures.c.user_ref)).scalars())

    def receipt_versions(self, user_ref: str) -> set[int] | None:
        """The model versions this user's erasure receipts name now; None when the user was never erased."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.erasures.c.model_versions).where(t.erasures.c.user_ref == user_ref)).all()
        return {v for row in rows for v in row.model_versions} if rows else None

    def name_in_receipts(self, user_refs: set[str], version: int, actor: str) -> list[str]:
        """Add ``version`` to the receipts of these erased users: it was trained on their data after all."""
        amended: list[str] = []
        with write(self.engine) as conn:
            for row in conn.execute(select(t.erasures).where(t.erasures.c.user_ref.in_(sorted(user_refs)))).all():
                if version in row.model_versions:
                    continue
                conn.execute(update(t.erasures).where(t.erasures.c.id == row.id)
                             .values(model_versions=sorted({*row.model_versions, version})))
                amended.append(row.id)
            if amended:
                audit.append(conn, actor, "erasure_amended", {"receipts": amended, "model_version": version})
        return amended

    def scrub(self, attempts: int = 5) -> bool:
        """Leave no copy of deleted rows in the database's files; True when that is done.

        SQLite: deletes overwrite freed pages (``secure_delete`` is on for every connection); the WAL still
        holds the pages as they were before, so it is checkpointed into the main file and truncated to zero.
        A reader in another process can hold the checkpoint back for a moment, hence the retries.
        PostgreSQL keeps dead tuples until VACUUM; that is left to the database's autovacuum (documented).
        """
        if self.engine.dialect.name != "sqlite":
            return True
        for attempt in range(attempts):
            with self.engine.connect() as conn:
                busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            if not busy:
                return True
            time.sleep(0.05 * (attempt + 1))
        return False


def _versions_trained_on(conn: Connection, user_id: str) -> list[int]:
    """Model versions trained on the user's data, and every model warm-started from one of them."""
    snap_ids = {r.snapshot_id for r in conn.execute(
        select(t.snapshot_members.c.snapshot_id).where(t.snapshot_members.c.user_id == user_id))}
    by_snapshot = models_by_snapshot(conn)
    return with_warm_descendants(conn, {v for s in snap_ids for v in by_snapshot.get(s, [])})


def models_by_snapshot(conn: Connection) -> dict[str, list[int]]:
    """Snapshot id -> the model versions trained on it: how lineage turns a user's rows into models."""
    out: dict[str, list[int]] = defaultdict(list)
    for m in conn.execute(select(t.models.c.version, t.models.c.dataset_id).where(t.models.c.dataset_id.is_not(None))):
        out[m.dataset_id].append(m.version)
    return out


def with_warm_descendants(conn: Connection, versions: set[int]) -> list[int]:
    """The versions plus every model warm-started from one of them: their weights began as those weights."""
    started_from = {m.version: (m.train_info or {}).get("warm_start_from")
                    for m in conn.execute(select(t.models.c.version, t.models.c.train_info))}
    out = set(versions)
    for version in sorted(started_from):  # a model is always newer than the one it started from
        if started_from[version] in out:
            out.add(version)
    return sorted(out)


def _delete_user_rows(conn: Connection, user_id: str) -> tuple[int, int]:
    record_ids = select(t.records.c.id).where(t.records.c.user_id == user_id)
    n_fb = conn.execute(delete(t.feedback).where(
        (t.feedback.c.user_id == user_id) | t.feedback.c.record_id.in_(record_ids))).rowcount
    conn.execute(delete(t.verdicts).where(t.verdicts.c.record_id.in_(record_ids)))
    n_rec = conn.execute(delete(t.records).where(t.records.c.user_id == user_id)).rowcount
    conn.execute(delete(t.snapshot_members).where(t.snapshot_members.c.user_id == user_id))
    conn.execute(delete(t.consent_events).where(t.consent_events.c.user_id == user_id))
    conn.execute(delete(t.user_reliability).where(t.user_reliability.c.user_id == user_id))
    conn.execute(delete(t.contributor_values).where(t.contributor_values.c.user_id == user_id))
    drop_orphans(conn)
    conn.execute(delete(t.users).where(t.users.c.user_id == user_id))
    return n_rec, n_fb
