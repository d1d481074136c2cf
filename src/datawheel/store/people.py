"""What the store holds about people: users, consent, records, feedback; export and retention.

Consent has scopes (``training``, ``analytics``) and a history of who changed
what when. Every consent change, export and erasure is also appended to the
audit chain, where the user appears only as a keyed pseudonym.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, true, update

from datawheel.artifacts import LabelledRecord, Vote
from datawheel.errors import NotFound
from datawheel.store import audit, paging
from datawheel.store import tables as t
from datawheel.store.curation import drop_orphans, reliability_row
from datawheel.store.db import aware, insert_ignore, new_id, utcnow, write
from datawheel.store.erasure import models_by_snapshot
from datawheel.store.group_commit import Batch, GroupCommitter
from datawheel.store.paging import Key
from datawheel.store.raw_sqlite import rows_where_in

SCOPES = ("training", "analytics")
_COMMITTER_LOCK = threading.Lock()
_COLUMN = {"training": t.users.c.consent_training, "analytics": t.users.c.consent_analytics}
# Built once: the group-commit writer runs these for every write, and building a statement costs more than running it.
_USER_CONSENT = select(t.users.c.consent_training, t.users.c.consent_analytics).where(
    t.users.c.user_id == bindparam("user_id"))
_USERS_CONSENT = select(t.users.c.user_id, t.users.c.consent_training, t.users.c.consent_analytics).where(
    t.users.c.user_id.in_(bindparam("user_ids", expanding=True)))
_RECORD_OWNER = select(t.records.c.user_id).where(t.records.c.id == bindparam("record_id"))


def _consent(row: Any) -> dict[str, bool]:
    return {"training": bool(row.consent_training), "analytics": bool(row.consent_analytics)}


def _read_consents(conn: Connection, user_ids: list[str]) -> dict[str, dict[str, bool] | None]:
    """Each user's stored consent (None: no such user), in one query for a group commit's whole batch."""
    rows = rows_where_in(conn, t.users, "user_id", ("consent_training", "consent_analytics"), user_ids)
    if rows is not None:  # SQLite, through its driver
        found = {user_id: {"training": bool(training), "analytics": bool(analytics)}
                 for user_id, training, analytics in rows}
        return {user_id: found.get(user_id) for user_id in user_ids}
    if len(user_ids) == 1:  # the lone write: the plain statement, cheaper to run than an expanding IN
        row = conn.execute(_USER_CONSENT, {"user_id": user_ids[0]}).first()
        return {user_ids[0]: None if row is None else _consent(row)}
    found = {row.user_id: _consent(row) for row in conn.execute(_USERS_CONSENT, {"user_ids": user_ids})}
    return {user_id: found.get(user_id) for user_id in user_ids}


def check_owner(batch: Batch, record_id: str, user_id: str) -> None:
    """Refuse feedback on a record that is not this user's (one deferred earlier in the batch counts). Another
    user's interaction is reported exactly like a missing one: ids are not an oracle."""
    owner = batch.recall(("record", record_id))
    if owner is None:
        row = batch.read(_RECORD_OWNER, {"record_id": record_id}).first()
        owner = row.user_id if row is not None else None
    if owner != user_id:
        raise NotFound("interaction_id: no such interaction for this user")


def _stored_consent(batch: Batch, user_id: str) -> dict[str, bool] | None:
    """The user's consent in the store (None: no such user): read ahead with the batch's other users when the
    write named its user, else read now. A consent this batch changed is in its memo, which comes first."""
    if user_id in batch.users:
        return batch.users[user_id]
    return _read_consents(batch.conn, [user_id])[user_id]


class PeopleQueries:
    engine: Engine
    user_ref: Callable[[str], str]

    # -- users and consent -------------------------------------------------

    def _ensure_user(self, conn: Connection, user_id: str, consent: Mapping[str, bool] | None,
                     actor: str) -> dict[str, bool]:
        """Create the user if new, apply any consent change with its history; return consent in force.

        The insert ignores a conflict: two first requests of one user may race, and both must succeed.
        """
        now = utcnow()
        conn.execute(insert_ignore(conn, t.users, {"user_id": user_id, "consent_training": False,
                                                   "consent_analytics": False, "consent_updated_at": now,
                                                   "created_at": now}))
        current = _consent(conn.execute(select(t.users).where(t.users.c.user_id == user_id)).one())
        changes = {s: bool(v) for s, v in (consent or {}).items() if bool(v) != current[s]}
        if changes:
            conn.execute(update(t.users).where(t.users.c.user_id == user_id).values(
                consent_updated_at=now, **{_COLUMN[s].name: v for s, v in changes.items()}))
            for scope, granted in changes.items():
                conn.execute(insert(t.consent_events).values(user_id=user_id, scope=scope, granted=granted,
                                                             actor=actor, at=now))
                audit.append(conn, actor, "consent_change", {"user_ref": self.user_ref(user_id), "scope": scope,
                                                             "granted": granted})
            current.update(changes)
            if changes.get("training") is False:  # withdrawn: their items leave the queue now, not next cycle
                conn.execute(delete(t.annotation_queue).where(t.annotation_queue.c.record_id.in_(
                    select(t.records.c.id).where(t.records.c.user_id == user_id))))
        return current

    def set_consent(self, user_id: str, consent: Mapping[str, bool], actor: str = "app") -> dict:
        with write(self.engine) as conn:
            now = self._ensure_user(conn, user_id, consent, actor)
        return {"user_id": user_id, "consent": now}

    # -- records -----------------------------------------------------------

    def _consent_for_write(self, batch: Batch, user_id: str, consent: Mapping[str, bool] | None,
                           require: Callable[[dict[str, bool]], None] | None) -> dict[str, bool]:
        """The consent in force for a write in a group commit, checked by ``require`` before anything is written.

        The common case writes nothing here: a known user sending no change is a read (once per batch, for
        all the batch's users at once), and a new user without consent is a deferred row. A consent change
        is written at once, in the write's own savepoint, exactly as :meth:`set_consent` writes it, and
        remembered, so the batch's later writes go by it rather than by what was read ahead. A refusal
        leaves no trace, not even the user.
        """
        key = ("user", user_id)
        current = batch.recall(key)
        is_new = False
        if current is None:
            current = _stored_consent(batch, user_id)
            is_new = current is None
            if current is None:
                current = {"training": False, "analytics": False}
        granted = {**current, **{s: bool(v) for s, v in (consent or {}).items()}}
        if require is not None:
            require(dict(granted))
        if granted != current:
            self._ensure_user(batch.direct(), user_id, consent, actor="app")
        elif is_new:
            now = utcnow()
            batch.defer(t.users, {"user_id": user_id, "consent_training": False, "consent_analytics": False,
                                  "consent_updated_at": now, "created_at": now}, ignore_conflict=True)
        batch.remember(key, granted)
        return granted

    def submit_record(self, *, user_id: str, kind: str, input: bytes, content_hash: str,
                      consent: Mapping[str, bool] | None, label: str | None = None,
                      predicted_label: str | None = None, model_name: str | None = None,
                      model_version: str | None = None, meta: dict | None = None,
                      require: Callable[[dict[str, bool]], None] | None = None,
                      scores: Mapping[str, float] | None = None) -> tuple[str, Future[None]]:
        """Queue one record for the next group commit: its id, and a future that resolves once it is durable.

        ``require`` may refuse it given the consent in force (raising from the future); nothing is then stored.
        :meth:`add_record` waits on the future; a coroutine uses :meth:`submit_record_async`.
        """
        record_id, insert_record = self._record_write(
            user_id=user_id, kind=kind, input=input, content_hash=content_hash, consent=consent, label=label,
            predicted_label=predicted_label, model_name=model_name, model_version=model_version, meta=meta,
            require=require, scores=scores)
        return record_id, self._group_commit().submit(insert_record, user_id)

    def submit_record_async(self, *, alone: bool = False, **fields: Any) -> tuple[str, asyncio.Future[None]]:
        """As :meth:`submit_record` (the same fields), from a coroutine on the running loop: the future is the loop's
        own and is resolved there with the batch's other writes (a thread-safe hand-off per write cost more than
        its insert). ``alone``: nothing else is in flight on the loop (``GroupCommitter.submit_async``)."""
        record_id, insert_record = self._record_write(**fields)
        return record_id, self._group_commit().submit_async(insert_record, fields["user_id"], alone=alone)

    def _record_write(self, *, user_id: str, kind: str, input: bytes, content_hash: str,
                      consent: Mapping[str, bool] | None, label: str | None = None, predicted_label: str | None = None,
                      model_name: str | None = None, model_version: str | None = None, meta: dict | None = None,
                      require: Callable[[dict[str, bool]], None] | None = None,
                      scores: Mapping[str, float] | None = None) -> tuple[str, Callable[[Batch], None]]:
        """A new record's id, and the group-commit write that stores it (or refuses it, leaving nothing)."""
        record_id = new_id()

        def insert_record(batch: Batch) -> None:
            granted = self._consent_for_write(batch, user_id, consent, require)
            batch.defer(t.records, {
                "id": record_id, "user_id": user_id, "kind": kind, "content_hash": content_hash, "input": input,
                "label": label, "predicted_label": predicted_label, "model_name": model_name,
                "model_version": model_version, "consent_training": granted["training"], "meta": meta or {},
                "created_at": utcnow()})
            if scores is not None:
                batch.defer(t.interaction_scores, {"record_id": record_id, "scores": dict(scores)})
            batch.remember(("record", record_id), user_id)

        return record_id, insert_record

    def add_record(self, *, user_id: str, kind: str, input: bytes, content_hash: str,
                   consent: Mapping[str, bool] | None, label: str | None = None, predicted_label: str | None = None,
                   model_name: str | None = None, model_version: str | None = None, meta: dict | None = None,
                   require: Callable[[dict[str, bool]], None] | None = None) -> str:
        """Store one record, committed before returning. ``require`` may refuse it given the consent in force."""
        record_id, done = self.submit_record(
            user_id=user_id, kind=kind, input=input, content_hash=content_hash, consent=consent, label=label,
            predicted_label=predicted_label, model_name=model_name, model_version=model_version, meta=meta,
            require=require)
        done.result()
        return record_id

    def add_feedback(self, *, record_id: str, user_id: str, label: str | None, rating: int | None,
                     comment: str | None, require: Callable[[dict[str, bool]], None] | None = None) -> str:
        feedback_id = new_id()

        def insert_feedback(batch: Batch) -> None:
            check_owner(batch, record_id, user_id)
            if require is not None:
                granted = batch.recall(("user", user_id)) or _stored_consent(batch, user_id)
                if granted is None:  # a record is written with its user and erased with them: a broken store
                    raise NotFound("interaction_id: no such interaction for this user")
                require(dict(granted))
            batch.defer(t.feedback, {"id": feedback_id, "record_id": record_id, "user_id": user_id, "label": label,
                                     "rating": rating, "comment": comment, "created_at": utcnow()})

        self._group_commit().run(insert_feedback, user_id if require is not None else None)
        return feedback_id

    def _group_commit(self) -> GroupCommitter:
        """This store's writer for small per-request writes (made on first use, and again in a forked child)."""
        committer: GroupCommitter | None = getattr(self, "_committer", None)
        if committer is None or committer.pid != os.getpid():
            with _COMMITTER_LOCK:
                committer = getattr(self, "_committer", None)
                if committer is None or committer.pid != os.getpid():
                    committer = GroupCommitter(self.engine, read_users=_read_consents)
                    self._committer = committer
        return committer

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
                               bool(r.consent_now), aware(r.created_at)) for r in rows if votes.get(r.id)]
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

    def user_data(self, user_id: str, decode: Callable[[bytes], Any], actor: str = "app", *,
                  limit: int | None = None, after: Key | None = None) -> dict:
        """Everything held about one user, with lineage; the export itself is audited.

        With ``limit``: one page of their records, oldest first, after the cursor key ``after``, each with its
        feedback and lineage; ``next_cursor`` says where the next page starts. Consent comes with every page.
        """
        with write(self.engine) as conn:
            user = conn.execute(select(t.users).where(t.users.c.user_id == user_id)).first()
            if user is None:
                raise NotFound("user_id: no data is held for this user")
            order = (t.records.c.created_at, t.records.c.id)
            query = select(t.records).where(t.records.c.user_id == user_id).order_by(*order)
            if (later := paging.after(order, after)) is not None:
                query = query.where(later)
            rows = conn.execute(query if limit is None else query.limit(limit + 1)).all()
            recs = rows if limit is None else rows[:limit]
            extras = _record_extras(conn, user_id, None if limit is None else [r.id for r in recs])
            history = conn.execute(select(t.consent_events).where(t.consent_events.c.user_id == user_id)
                                   .order_by(t.consent_events.c.at, t.consent_events.c.id)).all()
            rel = reliability_row(conn, user_id)
            audit.append(conn, actor, "export", {"user_ref": self.user_ref(user_id), "records": len(recs)})
        return {
            "user_id": user_id,
            "consent": _consent(user),
            "consent_history": [{"scope": e.scope, "granted": e.granted, "actor": e.actor,
                                 "at": aware(e.at).isoformat()} for e in history],
            "reliability": rel,
            "records": [_record_out(r, decode, extras) for r in recs],
            "next_cursor": None if limit is None else paging.next_cursor(
                rows, limit, "records", lambda r: paging.time_key(r, "created_at")),
        }

    def content_hashes_of(self, user_id: str | None = None) -> set[str]:
        """Content hashes of a user's records (None: everyone's): keys of what is derived from inputs
        outside the store."""
        query = select(t.records.c.content_hash).distinct()
        if user_id is not None:
            query = query.where(t.records.c.user_id == user_id)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def delete_expired(self, cutoffs: Mapping[str, datetime], actor: str) -> dict[str, int]:
        """Retention: delete records and feedback older than their source's cutoff; return counts per source.

        Snapshot lineage (ids only) is kept so past models stay explainable; the content is gone.
        """
        counts: dict[str, int] = {}
        with write(self.engine) as conn:
            if "feedback" in cutoffs:
                counts["feedback"] = conn.execute(delete(t.feedback).where(
                    t.feedback.c.created_at < cutoffs["feedback"])).rowcount
            for kind in ("interaction", "contribution"):
                if kind not in cutoffs:
                    continue
                old = select(t.records.c.id).where(t.records.c.kind == kind,
                                                   t.records.c.created_at < cutoffs[kind])
                counts["feedback"] = counts.get("feedback", 0) + conn.execute(
                    delete(t.feedback).where(t.feedback.c.record_id.in_(old))).rowcount
                conn.execute(delete(t.verdicts).where(t.verdicts.c.record_id.in_(old)))
                counts[kind] = conn.execute(delete(t.records).where(t.records.c.kind == kind,
                                                                    t.records.c.created_at < cutoffs[kind])).rowcount
            drop_orphans(conn)
            if any(counts.values()):
                audit.append(conn, actor, "retention", {"deleted": counts})
        return counts


class _Extras(NamedTuple):
    """What belongs to a user's records besides the records: feedback, answers, snapshots and their models."""

    feedback: dict[str, list[dict]]
    answers: dict[str, list[str]]
    snapshots: dict[str, list[str]]
    models_by_snapshot: dict[str, list[int]]
    scores: dict[str, dict[str, float]]


def _record_extras(conn: Connection, user_id: str, record_ids: list[str] | None) -> _Extras:
    """The extras of the user's records: all of them (``record_ids`` None) or those of one page."""
    def of_page(column: Any) -> Any:
        return true() if record_ids is None else column.in_(record_ids)

    fbs = conn.execute(select(t.feedback, t.answer_feedback.c.correction, t.answer_feedback.c.chosen)
                       .outerjoin(t.answer_feedback, t.answer_feedback.c.feedback_id == t.feedback.c.id)
                       .where(t.feedback.c.user_id == user_id, of_page(t.feedback.c.record_id))
                       .order_by(t.feedback.c.created_at)).all()
    feedback: dict[str, list[dict]] = defaultdict(list)
    for f in fbs:
        feedback[f.record_id].append({"id": f.id, "label": f.label, "rating": f.rating, "comment": f.comment,
                                      "created_at": aware(f.created_at).isoformat(), "correction": f.correction,
                                      "chosen": f.chosen})
    answers: dict[str, list[str]] = defaultdict(list)
    for a in conn.execute(select(t.completions.c.record_id, t.completions.c.text)
                          .join(t.records, t.records.c.id == t.completions.c.record_id)
                          .where(t.records.c.user_id == user_id, of_page(t.completions.c.record_id))
                          .order_by(t.completions.c.idx)):
        answers[a.record_id].append(a.text)
    snapshots: dict[str, list[str]] = defaultdict(list)
    for m in conn.execute(select(t.snapshot_members.c.record_id, t.snapshot_members.c.snapshot_id)
                          .where(t.snapshot_members.c.user_id == user_id, of_page(t.snapshot_members.c.record_id))):
        snapshots[m.record_id].append(m.snapshot_id)
    scores = {r.record_id: r.scores for r in conn.execute(
        select(t.interaction_scores).join(t.records, t.records.c.id == t.interaction_scores.c.record_id)
        .where(t.records.c.user_id == user_id, of_page(t.interaction_scores.c.record_id)))}
    return _Extras(feedback, answers, snapshots, models_by_snapshot(conn), scores)


def _record_out(r: Any, decode: Callable[[bytes], Any], extras: _Extras) -> dict:
    datasets = sorted(set(extras.snapshots.get(r.id, [])))
    return {
        "id": r.id, "kind": r.kind, "input": decode(r.input), "label": r.label,
        "predicted_label": r.predicted_label, "model_name": r.model_name,
        "model_version": r.model_version, "consent_training": r.consent_training,
        "metadata": r.meta, "scores": extras.scores.get(r.id), "created_at": aware(r.created_at).isoformat(),
        "feedback": extras.feedback.get(r.id, []),
        "answers": extras.answers.get(r.id, []),
        "datasets": datasets,
        "models": sorted({v for s in datasets for v in extras.models_by_snapshot.get(s, [])}),
    }
