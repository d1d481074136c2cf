"""Live evaluation: shadow runs and canaries, judged on real traffic rather than the golden set.

A shadow's answers are stored beside the champion's; agreement needs no labels.
Accuracy uses the feedback users gave afterwards: a correction's label, a
confirmation (rating +1) of the answer, or a rejection (rating -1) of it.
"""

from __future__ import annotations

from sqlalchemy import Engine, insert, or_, select

from datawheel.store import tables as t
from datawheel.store.db import write


class LiveQueries:
    engine: Engine

    def add_shadow_prediction(self, record_id: str, version: int, label: str) -> None:
        with write(self.engine) as conn:
            conn.execute(insert(t.shadow_predictions).values(record_id=record_id, version=version, label=label))

    def shadow_report(self, version: int) -> dict:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.shadow_predictions.c.record_id, t.shadow_predictions.c.label.label("shadow"),
                       t.records.c.predicted_label.label("champion"))
                .join(t.records, t.records.c.id == t.shadow_predictions.c.record_id)
                .where(t.shadow_predictions.c.version == version)).all()
            truth: dict[str, str] = {}
            for f in conn.execute(select(t.feedback.c.record_id, t.feedback.c.label, t.feedback.c.rating)
                                  .where(t.feedback.c.record_id.in_([r.record_id for r in rows]))
                                  .order_by(t.feedback.c.created_at)):
                if f.label is not None:
                    truth[f.record_id] = f.label
                elif f.rating == 1:
                    truth.setdefault(f.record_id, "")  # a confirmation: the champion's answer, filled below
        n = len(rows)
        labelled = [(r, truth[r.record_id] or r.champion) for r in rows if r.record_id in truth]
        return {
            "version": version,
            "predictions": n,
            "agreement_with_champion": round(sum(r.shadow == r.champion for r in rows) / n, 6) if n else None,
            "with_feedback": len(labelled),
            "champion_accuracy": round(sum(r.champion == y for r, y in labelled) / len(labelled), 6)
            if labelled else None,
            "shadow_accuracy": round(sum(r.shadow == y for r, y in labelled) / len(labelled), 6)
            if labelled else None,
        }

    def live_accuracy(self, version: int) -> tuple[int, int]:
        """(answers with feedback, answers judged right) for the interactions ``version`` answered."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.records.c.id, t.records.c.predicted_label, t.feedback.c.label, t.feedback.c.rating)
                .join(t.feedback, t.feedback.c.record_id == t.records.c.id)
                .where(t.records.c.kind == "interaction", t.records.c.model_version == str(version),
                       or_(t.feedback.c.label.is_not(None), t.feedback.c.rating.is_not(None)))
                .order_by(t.feedback.c.created_at)).all()
        verdict: dict[str, bool] = {}
        for r in rows:  # the latest judgement of each answer counts
            verdict[r.id] = (r.label == r.predicted_label) if r.label is not None else r.rating == 1
        return len(verdict), sum(verdict.values())
