"""The only module that writes SQL.

Every write runs in its own transaction and is committed before the method
returns, so a caller that acknowledges a write after calling here is telling
the truth. SQLite runs in WAL mode with ``synchronous=FULL``; any SQLAlchemy
URL works (PostgreSQL is tested where a server is available).
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from datawheel.artifacts import LabelledRecord, Vote
from datawheel.errors import ConfigError, Conflict, NotFound
from datawheel.store import tables as t


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"db url: datawheel's store runs on sqlite:// or postgresql:// URLs, not {url.split(':')[0]}://")
    if url.startswith("sqlite"):
        # hide_parameters: a failed statement's values (user ids, inputs) must never reach a log.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _insert_ignore(conn: Any, table: Any, values: dict) -> Any:
    dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert  # make_engine allows no other
    return dialect_insert(table).values(**values).on_conflict_do_nothing()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _aware(ts: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, create: bool = False) -> "Store":
        store = cls(make_engine(url))
        if create:
            t.metadata.create_all(store.engine)
        return store

    def close(self) -> None:
        self.engine.dispose()

    # -- users and consent -------------------------------------------------

    def _ensure_user(self, conn: Any, user_id: str, consent: bool | None, actor: str) -> bool:
        """Create or update a user inside ``conn``; return the consent now in force.

        The insert ignores a conflict: two first requests of one user may race, and both must succeed.
        """
        now = utcnow()
        created = conn.execute(_insert_ignore(conn, t.users, {
            "user_id": user_id, "consent_training": bool(consent), "consent_updated_at": now,
            "created_at": now})).rowcount == 1
        if created:
            if consent is not None:
                conn.execute(insert(t.consent_events).values(user_id=user_id, scope="training",
                                                             granted=bool(consent), actor=actor, at=now))
            return bool(consent)
        current = bool(conn.execute(select(t.users.c.consent_training)
                                    .where(t.users.c.user_id == user_id)).scalar_one())
        if consent is not None and bool(consent) != current:
            conn.execute(update(t.users).where(t.users.c.user_id == user_id)
                         .values(consent_training=bool(consent), consent_updated_at=now))
            conn.execute(insert(t.consent_events).values(user_id=user_id, scope="training",
                                                         granted=bool(consent), actor=actor, at=now))
            return bool(consent)
        return current

    def set_consent(self, user_id: str, training: bool, actor: str = "app") -> dict:
        with self.engine.begin() as conn:
            granted = self._ensure_user(conn, user_id, training, actor)
        return {"user_id": user_id, "consent": {"training": granted}}

    def consent_of(self, user_id: str) -> bool | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users.c.consent_training).where(t.users.c.user_id == user_id)).first()
        return None if row is None else bool(row.consent_training)

    # -- records -----------------------------------------------------------

    def add_record(self, *, user_id: str, kind: str, input: bytes, content_hash: str,
                   consent: bool | None, label: str | None = None, predicted_label: str | None = None,
                   model_name: str | None = None, model_version: str | None = None,
                   meta: dict | None = None) -> str:
        record_id = new_id()
        with self.engine.begin() as conn:
            granted = self._ensure_user(conn, user_id, consent, actor="app")
            conn.execute(insert(t.records).values(
                id=record_id, user_id=user_id, kind=kind, content_hash=content_hash, input=input,
                label=label, predicted_label=predicted_label, model_name=model_name,
                model_version=model_version, consent_training=granted, meta=meta or {},
                created_at=utcnow()))
        return record_id

    def add_feedback(self, *, record_id: str, user_id: str, label: str | None, rating: int | None,
                     comment: str | None) -> str:
        feedback_id = new_id()
        with self.engine.begin() as conn:
            owner = conn.execute(select(t.records.c.user_id).where(t.records.c.id == record_id)).first()
            # Another user's interaction is reported exactly like a missing one: ids are not an oracle.
            if owner is None or owner.user_id != user_id:
                raise NotFound(f"interaction_id: no interaction {record_id!r} for this user")
            conn.execute(insert(t.feedback).values(id=feedback_id, record_id=record_id, user_id=user_id,
                                                   label=label, rating=rating, comment=comment,
                                                   created_at=utcnow()))
        return feedback_id

    def labelled_records(self) -> tuple[list[LabelledRecord], list[Vote]]:
        """Every record that carries at least one label vote, with its user's consent then and now."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.records, t.users.c.consent_training.label("consent_now"))
                .join(t.users, t.users.c.user_id == t.records.c.user_id)
                .order_by(t.records.c.created_at, t.records.c.id)
            ).all()
            fb = conn.execute(select(t.feedback).order_by(t.feedback.c.created_at)).all()
        votes: dict[str, list[Vote]] = defaultdict(list)
        for r in rows:
            if r.kind == "contribution" and r.label is not None:
                votes[r.id].append(Vote(r.id, r.user_id, r.label, "contribution"))
        predicted = {r.id: r.predicted_label for r in rows}
        for f in fb:
            if f.label is not None:
                votes[f.record_id].append(Vote(f.record_id, f.user_id, f.label, "correction"))
            elif f.rating == 1 and predicted.get(f.record_id):
                votes[f.record_id].append(Vote(f.record_id, f.user_id, predicted[f.record_id], "confirmation"))
        recs = [LabelledRecord(r.id, r.user_id, r.kind, r.content_hash, r.input, bool(r.consent_training),
                               bool(r.consent_now), _aware(r.created_at)) for r in rows if votes.get(r.id)]
        return recs, [v for r in recs for v in votes[r.record_id]]

    def count_labelled_since(self, since: datetime | None) -> int:
        with self.engine.connect() as conn:
            q_fb = select(func.count()).select_from(t.feedback).where(
                (t.feedback.c.label.is_not(None)) | (t.feedback.c.rating == 1))
            q_rec = select(func.count()).select_from(t.records).where(t.records.c.kind == "contribution")
            if since is not None:
                q_fb = q_fb.where(t.feedback.c.created_at > since)
                q_rec = q_rec.where(t.records.c.created_at > since)
            return int(conn.execute(q_fb).scalar_one()) + int(conn.execute(q_rec).scalar_one())

    # -- a user's own data ---------------------------------------------------

    def _models_by_snapshot(self, conn: Any) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for m in conn.execute(select(t.models.c.version, t.models.c.dataset_id)
                              .where(t.models.c.dataset_id.is_not(None))):
            out[m.dataset_id].append(m.version)
        return out

    def user_data(self, user_id: str, decode: Callable[[bytes], Any]) -> dict:
        with self.engine.connect() as conn:
            user = conn.execute(select(t.users).where(t.users.c.user_id == user_id)).first()
            if user is None:
                raise NotFound("user_id: no data is held for this user")
            recs = conn.execute(select(t.records).where(t.records.c.user_id == user_id)
                                .order_by(t.records.c.created_at)).all()
            fbs = conn.execute(select(t.feedback).where(t.feedback.c.user_id == user_id)
                               .order_by(t.feedback.c.created_at)).all()
            members = conn.execute(select(t.snapshot_members.c.record_id, t.snapshot_members.c.snapshot_id)
                                   .where(t.snapshot_members.c.user_id == user_id)).all()
            by_snapshot = self._models_by_snapshot(conn)
            consent_history = conn.execute(select(t.consent_events).where(t.consent_events.c.user_id == user_id)
                                           .order_by(t.consent_events.c.at)).all()
        snaps: dict[str, list[str]] = defaultdict(list)
        for m in members:
            snaps[m.record_id].append(m.snapshot_id)
        fb_by_record: dict[str, list[dict]] = defaultdict(list)
        for f in fbs:
            fb_by_record[f.record_id].append({"id": f.id, "label": f.label, "rating": f.rating,
                                              "comment": f.comment, "created_at": _aware(f.created_at).isoformat()})
        out = []
        for r in recs:
            datasets = sorted(set(snaps.get(r.id, [])))
            out.append({
                "id": r.id, "kind": r.kind, "input": decode(r.input), "label": r.label,
                "predicted_label": r.predicted_label, "model_name": r.model_name,
                "model_version": r.model_version, "consent_training": r.consent_training,
                "metadata": r.meta, "created_at": _aware(r.created_at).isoformat(),
                "feedback": fb_by_record.get(r.id, []),
                "datasets": datasets,
                "models": sorted({v for s in datasets for v in by_snapshot.get(s, [])}),
            })
        return {
            "user_id": user_id,
            "consent": {"training": bool(user.consent_training)},
            "consent_history": [{"scope": e.scope, "granted": e.granted, "actor": e.actor,
                                 "at": _aware(e.at).isoformat()} for e in consent_history],
            "records": out,
        }

    def erase_user(self, user_id: str, user_ref: str) -> dict:
        """Delete everything held about a user, in one transaction, and return the receipt."""
        with self.engine.begin() as conn:
            if conn.execute(select(t.users.c.user_id).where(t.users.c.user_id == user_id)).first() is None:
                raise NotFound("user_id: no data is held for this user")
            snap_ids = {r.snapshot_id for r in conn.execute(
                select(t.snapshot_members.c.snapshot_id).where(t.snapshot_members.c.user_id == user_id))}
            by_snapshot = self._models_by_snapshot(conn)
            versions = sorted({v for s in snap_ids for v in by_snapshot.get(s, [])})
            record_ids = select(t.records.c.id).where(t.records.c.user_id == user_id)
            n_fb = conn.execute(delete(t.feedback).where(
                (t.feedback.c.user_id == user_id) | t.feedback.c.record_id.in_(record_ids))).rowcount
            conn.execute(delete(t.verdicts).where(t.verdicts.c.record_id.in_(record_ids)))
            n_rec = conn.execute(delete(t.records).where(t.records.c.user_id == user_id)).rowcount
            conn.execute(delete(t.snapshot_members).where(t.snapshot_members.c.user_id == user_id))
            conn.execute(delete(t.consent_events).where(t.consent_events.c.user_id == user_id))
            conn.execute(delete(t.users).where(t.users.c.user_id == user_id))
            receipt_id = new_id()
            now = utcnow()
            conn.execute(insert(t.erasures).values(id=receipt_id, user_ref=user_ref, records_deleted=n_rec,
                                                   feedback_deleted=n_fb, model_versions=versions, at=now))
            self._audit(conn, "app", "erasure", {"receipt": receipt_id, "user_ref": user_ref})
        return {"receipt_id": receipt_id, "user_id": user_id, "records_deleted": n_rec,
                "feedback_deleted": n_fb, "model_versions_trained_on_user_data": versions,
                "erased_at": now.isoformat()}

    # -- cycles --------------------------------------------------------------

    def start_cycle(self, trigger: str) -> str:
        cycle_id = new_id()
        with self.engine.begin() as conn:
            for running in conn.execute(select(t.cycles.c.id, t.cycles.c.pid).where(t.cycles.c.status == "running")):
                if running.pid is not None and not _alive(running.pid):
                    conn.execute(update(t.cycles).where(t.cycles.c.id == running.id).values(
                        status="failed", error="interrupted: its process ended before the cycle finished",
                        finished_at=utcnow()))
                    continue
                raise Conflict(f"cycle {running.id} is still running; wait for it to finish")
            conn.execute(insert(t.cycles).values(id=cycle_id, status="running", trigger=trigger,
                                                 pid=os.getpid(), started_at=utcnow()))
        return cycle_id

    def claim_cycle(self, cycle_id: str) -> None:
        """Record that this process now runs the cycle."""
        with self.engine.begin() as conn:
            conn.execute(update(t.cycles).where(t.cycles.c.id == cycle_id).values(pid=os.getpid()))

    def finish_cycle(self, cycle_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t.cycles).where(t.cycles.c.id == cycle_id)
                         .values(finished_at=utcnow(), **values))

    def get_cycle(self, cycle_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.cycles).where(t.cycles.c.id == cycle_id)).first()
        if row is None:
            raise NotFound(f"cycle_id: no cycle {cycle_id!r}")
        return dict(row._mapping)

    def list_cycles(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.cycles).order_by(t.cycles.c.started_at)).all()
        return [dict(r._mapping) for r in rows]

    def last_cycle_start(self) -> datetime | None:
        with self.engine.connect() as conn:
            ts = conn.execute(select(func.max(t.cycles.c.started_at))).scalar_one_or_none()
        return None if ts is None else _aware(ts)

    def save_verdicts(self, cycle_id: str, rows: Iterable[tuple[str, str, str, str]]) -> None:
        values = [{"cycle_id": cycle_id, "record_id": r, "stage": s, "verdict": v, "reason": why}
                  for r, s, v, why in rows]
        if values:
            with self.engine.begin() as conn:
                conn.execute(insert(t.verdicts), values)

    def save_snapshot(self, *, snapshot_id: str, cycle_id: str, path: str, sha256: str, rows: int,
                      members: Iterable[tuple[str, str]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.snapshots).values(id=snapshot_id, cycle_id=cycle_id, path=path,
                                                    sha256=sha256, rows=rows, created_at=utcnow()))
            values = [{"snapshot_id": snapshot_id, "record_id": r, "user_id": u} for r, u in members]
            if values:
                conn.execute(insert(t.snapshot_members), values)

    def has_snapshot(self, snapshot_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(t.snapshots.c.id).where(t.snapshots.c.id == snapshot_id)).first() is not None

    def snapshots_of_user(self, user_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return sorted({r.snapshot_id for r in conn.execute(
                select(t.snapshot_members.c.snapshot_id).where(t.snapshot_members.c.user_id == user_id))})

    # -- models and aliases ----------------------------------------------------

    def next_model_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(t.models.c.version), 0))).scalar_one()) + 1

    def add_model(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.models).values(created_at=utcnow(), **values))

    def get_model(self, version: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.models).where(t.models.c.version == version)).first()
        if row is None:
            raise NotFound(f"version: no model version {version}")
        return dict(row._mapping)

    def list_models(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.models).order_by(t.models.c.version)).all()
        return [dict(r._mapping) for r in rows]

    def aliases(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.name: r.version for r in conn.execute(select(t.aliases))}

    def set_aliases(self, new: dict[str, int], actor: str, action: str, detail: dict) -> None:
        """Replace the alias map in one transaction, with the audit entry that explains it."""
        with self.engine.begin() as conn:
            conn.execute(delete(t.aliases))
            conn.execute(insert(t.aliases), [{"name": k, "version": v} for k, v in new.items()])
            self._audit(conn, actor, action, {**detail, "aliases": new})

    # -- audit -------------------------------------------------------------------

    def _audit(self, conn: Any, actor: str, action: str, detail: dict) -> None:
        conn.execute(insert(t.audit).values(at=utcnow(), actor=actor, action=action, detail=detail))

    def audit(self, actor: str, action: str, detail: dict) -> None:
        with self.engine.begin() as conn:
            self._audit(conn, actor, action, detail)

    def audit_log(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(t.audit).order_by(t.audit.c.id))]
