"""Text-generation exchanges: a conversation, the answers it was given, and what users said about them.

The conversation is a record like any other (``records``, kind ``interaction``),
so consent, retention, lineage, export and erasure treat it exactly as a
classifier's input. Its answers (``completions``) and the text part of feedback
(``answer_feedback``: a correction, the better of two) hang off the record and
its feedback by foreign keys that cascade, so nothing about an erased record
outlives it. Each exchange is written in the group commit, record and answers
in one durable write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine, func, select

from datawheel.artifacts import AnswerFeedback, Exchange
from datawheel.errors import InvalidInput
from datawheel.store import tables as t
from datawheel.store.db import aware, new_id, utcnow
from datawheel.store.group_commit import Batch
from datawheel.store.people import check_owner


class ChatQueries:
    engine: Engine
    _consent_for_write: Any  # PeopleQueries's, joined by Store
    _group_commit: Any

    def submit_exchange(self, *, user_id: str, input: bytes, content_hash: str, answers: list[str],
                        consent: Mapping[str, bool] | None, model_name: str, model_version: str,
                        meta: dict | None = None, record_id: str | None = None,
                        require: Callable[[dict[str, bool]], None] | None = None) -> tuple[str, Future[None]]:
        """Queue a conversation and its answers as one write: its record id and a future resolved once durable.

        ``record_id``: an id handed out before the answer was complete (a streamed answer names it first).
        """
        record_id = record_id or new_id()

        def insert_exchange(batch: Batch) -> None:
            granted = self._consent_for_write(batch, user_id, consent, require)
            batch.defer(t.records, {
                "id": record_id, "user_id": user_id, "kind": "interaction", "content_hash": content_hash,
                "input": input, "label": None, "predicted_label": None, "model_name": model_name,
                "model_version": model_version, "consent_training": granted["training"], "meta": meta or {},
                "created_at": utcnow()})
            for idx, text in enumerate(answers):
                batch.defer(t.completions, {"record_id": record_id, "idx": idx, "text": text})
            batch.remember(("record", record_id), user_id)
            batch.remember(("answers", record_id), len(answers))

        return record_id, self._group_commit().submit(insert_exchange)

    def add_answer_feedback(self, *, record_id: str, user_id: str, rating: int | None, correction: str | None,
                            chosen: int | None, comment: str | None,
                            require: Callable[[dict[str, bool]], None] | None = None) -> str:
        """Feedback on a generated answer, durable before returning; ``chosen`` must name one of its answers."""
        feedback_id = new_id()

        def insert_feedback(batch: Batch) -> None:
            check_owner(batch, record_id, user_id)
            answers = batch.recall(("answers", record_id))
            if answers is None:
                answers = batch.read(select(func.count()).select_from(t.completions)
                                     .where(t.completions.c.record_id == record_id)).scalar_one()
            if answers == 0:
                raise InvalidInput("is not a text-generation interaction (it has no generated answer)",
                                   "interaction_id")
            if chosen is not None and not 0 <= chosen < min(answers, 2):
                raise InvalidInput("names no answer: chosen is 0 or 1 for an interaction made with n=2", "chosen")
            if require is not None:
                granted = self._consent_for_write(batch, user_id, None, None)
                require(dict(granted))
            batch.defer(t.feedback, {"id": feedback_id, "record_id": record_id, "user_id": user_id, "label": None,
                                     "rating": rating, "comment": comment, "created_at": utcnow()})
            if correction is not None or chosen is not None:
                batch.defer(t.answer_feedback, {"feedback_id": feedback_id, "correction": correction,
                                                "chosen": chosen})

        self._group_commit().run(insert_feedback)
        return feedback_id

    def completions_of(self, record_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(t.completions.c.text).where(t.completions.c.record_id == record_id)
                                     .order_by(t.completions.c.idx)).scalars())

    def exchanges(self) -> list[Exchange]:
        """Every text-generation exchange with its answers, feedback, and its user's consent then and now."""
        with self.engine.connect() as conn:
            answers: dict[str, list[str]] = defaultdict(list)
            for row in conn.execute(select(t.completions).order_by(t.completions.c.record_id, t.completions.c.idx)):
                answers[row.record_id].append(row.text)
            feedback: dict[str, list[AnswerFeedback]] = defaultdict(list)
            fb = t.feedback.outerjoin(t.answer_feedback, t.answer_feedback.c.feedback_id == t.feedback.c.id)
            for row in conn.execute(select(t.feedback.c.record_id, t.feedback.c.user_id, t.feedback.c.rating,
                                           t.answer_feedback.c.correction, t.answer_feedback.c.chosen)
                                    .select_from(fb).order_by(t.feedback.c.created_at, t.feedback.c.id)):
                feedback[row.record_id].append(AnswerFeedback(row.user_id, row.rating, row.correction, row.chosen))
            rows = conn.execute(select(t.records, t.users.c.consent_training.label("consent_now"))
                                .join(t.users, t.users.c.user_id == t.records.c.user_id)
                                .where(t.records.c.id.in_(select(t.completions.c.record_id)))
                                .order_by(t.records.c.created_at, t.records.c.id)).all()
        return [Exchange(r.id, r.user_id, r.content_hash, r.input, tuple(answers[r.id]), tuple(feedback[r.id]),
                         bool(r.consent_training), bool(r.consent_now), aware(r.created_at), r.model_version or "")
                for r in rows]
