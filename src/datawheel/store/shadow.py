"""Shadow runs: what a candidate would have answered on live traffic, and how that compares.

Agreement needs no labels; accuracy uses the feedback users gave afterwards
(a correction's label, or a confirmation of the champion's answer).
"""

from __future__ import annotations

from sqlalchemy import Engine, insert, select

from datawheel.store import tables as t
from datawheel.store.db import write


class ShadowQueries:
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
