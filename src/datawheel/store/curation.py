"""What the store holds for curation: per-user reliability, the annotation queue and annotators' answers.

Reliability and the queue are rewritten by each cycle (they describe the latest
aggregation). Annotations outlive cycles: an answer is the label for that
content until a later answer replaces it. Both the queue and the answers are
tied to content users sent; erasure and retention remove them with it
(``drop_orphans``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, insert, select

from datawheel.errors import NotFound
from datawheel.store import audit
from datawheel.store import tables as t
from datawheel.store.db import utcnow, write


def drop_orphans(conn: Connection) -> None:
    """Remove queue entries, answers, shadow predictions and reliability rows whose record or user is gone.

    A cycle that read a user's records before they were erased writes these back afterwards; this takes them
    out again in the same transaction.
    """
    conn.execute(delete(t.user_reliability).where(t.user_reliability.c.user_id.not_in(select(t.users.c.user_id))))
    conn.execute(delete(t.annotation_queue).where(t.annotation_queue.c.record_id.not_in(select(t.records.c.id))))
    conn.execute(delete(t.annotation_answers).where(t.annotation_answers.c.content_hash.not_in(
        select(t.records.c.content_hash))))
    conn.execute(delete(t.shadow_predictions).where(
        t.shadow_predictions.c.record_id.not_in(select(t.records.c.id))))


def reliability_row(conn: Connection, user_id: str) -> dict | None:
    """How much the last curation trusted this user's labels, and whether it left them out."""
    row = conn.execute(select(t.user_reliability).where(t.user_reliability.c.user_id == user_id)).first()
    return None if row is None else {"reliability": row.reliability, "votes": row.votes, "excluded": row.excluded}


def _open_items() -> Select:
    """Queued items still open: their record is held and no annotator has answered them yet."""
    return (select(t.annotation_queue, t.records.c.input)
            .join(t.records, t.records.c.id == t.annotation_queue.c.record_id)
            .where(t.annotation_queue.c.content_hash.not_in(select(t.annotation_answers.c.content_hash))))


class CurationQueries:
    engine: Engine
    user_ref: Callable[[str], str]

    def save_curation(self, cycle_id: str, reliability: Iterable[Any], queue: Iterable[Any]) -> None:
        """Replace the reliability table and the open queue with this cycle's, in one transaction."""
        now = utcnow()
        rel = [{"user_id": r.user_id, "reliability": r.reliability, "votes": r.votes, "excluded": r.excluded,
                "cycle_id": cycle_id, "updated_at": now} for r in reliability]
        items = [{"content_hash": q.content_hash, "record_id": q.record_id, "score": q.score,
                  "signals": q.signals, "cycle_id": cycle_id} for q in queue]
        with write(self.engine) as conn:
            conn.execute(delete(t.user_reliability))
            conn.execute(delete(t.annotation_queue))
            if rel:
                conn.execute(insert(t.user_reliability), rel)
            if items:
                conn.execute(insert(t.annotation_queue), items)
            drop_orphans(conn)  # a record erased while the cycle ran must not come back through the queue

    def reliability_of(self, user_id: str) -> dict | None:
        with self.engine.connect() as conn:
            return reliability_row(conn, user_id)

    def users_overview(self) -> list[dict]:
        """Every user with consent, record count and estimated reliability: the operator's view."""
        with self.engine.connect() as conn:
            counts: dict[str, int] = dict(conn.execute(select(t.records.c.user_id, func.count())
                                       .group_by(t.records.c.user_id)).all())
            rel = {r.user_id: r for r in conn.execute(select(t.user_reliability))}
            users = conn.execute(select(t.users).order_by(t.users.c.user_id)).all()
        out = []
        for u in users:
            r = rel.get(u.user_id)
            out.append({"user_id": u.user_id, "consent_training": bool(u.consent_training),
                        "records": int(counts.get(u.user_id, 0)),
                        "votes": r.votes if r else 0, "reliability": r.reliability if r else None,
                        "excluded": bool(r.excluded) if r else False})
        return out

    def annotation_queue(self, limit: int) -> list[dict]:
        """The open items, most valuable first, with the canonical input bytes to show."""
        with self.engine.connect() as conn:
            rows = conn.execute(_open_items().order_by(t.annotation_queue.c.score.desc(),
                                                       t.annotation_queue.c.content_hash).limit(limit)).all()
        return [{"item_id": r.content_hash, "input": r.input, "score": r.score, "signals": r.signals,
                 "cycle_id": r.cycle_id} for r in rows]

    def annotate(self, item_id: str, label: str, annotator: str) -> dict:
        """Record an annotator's label for a queued item; the next cycle treats it as an anchor.

        Only an item the queue holds now may be answered, by any key: an answer to anything else would plant
        an anchor on content nobody chose to label (a non-consenting user's interaction, say), and would tell
        whoever guessed its hash that it is stored. Not queued and not stored are one answer, and the queue's
        own check (a record still behind it, no answer yet) is the one ``annotation_queue`` lists by.
        """
        with write(self.engine) as conn:
            if conn.execute(_open_items().where(t.annotation_queue.c.content_hash == item_id).limit(1)).first() is None:
                raise NotFound("item_id: no such item in the annotation queue (it may have been answered or erased)")
            conn.execute(delete(t.annotation_answers).where(t.annotation_answers.c.content_hash == item_id))
            now = utcnow()
            conn.execute(insert(t.annotation_answers).values(content_hash=item_id, label=label, annotator=annotator,
                                                      created_at=now))
            conn.execute(delete(t.annotation_queue).where(t.annotation_queue.c.content_hash == item_id))
            # The audit chain outlives erasure, so it names the item by a keyed reference, not its content hash.
            audit.append(conn, annotator, "annotation", {"item_ref": self.user_ref(f"item:{item_id}"),
                                                         "label": label})
        return {"item_id": item_id, "label": label, "annotator": annotator, "created_at": now.isoformat()}

    def annotations(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.content_hash: r.label for r in conn.execute(select(t.annotation_answers))}
