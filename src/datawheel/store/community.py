"""What the web app's faces read beyond the API's queries: contributor values and activity per day.

Contributor values are rewritten whole by each cycle (they describe the latest valuation), only for users
the store still holds, so a cycle that read an erased user's labels cannot write their value back. The
ranking shows only users whose training consent stands now: a user who withdrew it leaves the page at
once, before any cycle runs. Erasure deletes a user's row (``erasure._delete_user_rows``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select

from datawheel.store import tables as t
from datawheel.store.db import aware, utcnow, write


class CommunityQueries:
    engine: Engine

    def save_contributor_values(self, cycle_id: str, valuation: dict[str, Any]) -> dict[str, Any]:
        """Replace every contributor's value with this cycle's; returns the valuation without per-user rows,
        which is what a cycle report may carry (it never names users)."""
        now = utcnow()
        with write(self.engine) as conn:
            held = set(conn.execute(select(t.users.c.user_id)).scalars())
            rows = [{"user_id": user, "cycle_id": cycle_id, "value": v["value"], "points": v["points"],
                     "per_class": v["per_class"], "updated_at": now}
                    for user, v in valuation.get("users", {}).items() if user in held]
            conn.execute(delete(t.contributor_values))
            if rows:
                conn.execute(insert(t.contributor_values), rows)
        return {key: value for key, value in valuation.items() if key != "users"} | {"users_valued": len(rows)}

    def contributor_ranking(self, limit: int = 100) -> list[dict[str, Any]]:
        """Consenting contributors, most valuable first (ties: more labels first, then a stable order)."""
        query = (select(t.contributor_values)
                 .join(t.users, t.users.c.user_id == t.contributor_values.c.user_id)
                 .where(t.users.c.consent_training.is_(True))
                 .order_by(t.contributor_values.c.value.desc(), t.contributor_values.c.points.desc(),
                           t.contributor_values.c.user_id)
                 .limit(limit))
        with self.engine.connect() as conn:
            return [_value_row(r) for r in conn.execute(query)]

    def contributor_value(self, user_id: str) -> dict[str, Any] | None:
        """One user's value and rank among consenting contributors; None when not valued or not consenting."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.contributor_values)
                               .join(t.users, t.users.c.user_id == t.contributor_values.c.user_id)
                               .where(t.contributor_values.c.user_id == user_id,
                                      t.users.c.consent_training.is_(True))).first()
            if row is None:
                return None
            above = conn.execute(select(func.count()).select_from(t.contributor_values)
                                 .join(t.users, t.users.c.user_id == t.contributor_values.c.user_id)
                                 .where(t.users.c.consent_training.is_(True),
                                        t.contributor_values.c.value > row.value)).scalar_one()
            total = conn.execute(select(func.count()).select_from(t.contributor_values)
                                 .join(t.users, t.users.c.user_id == t.contributor_values.c.user_id)
                                 .where(t.users.c.consent_training.is_(True))).scalar_one()
        return _value_row(row) | {"rank": int(above) + 1, "of": int(total)}

    def consent_now(self, user_id: str) -> dict[str, bool] | None:
        """A user's consent in force, or None for a user the store does not hold; read-only (not an export)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users.c.consent_training, t.users.c.consent_analytics)
                               .where(t.users.c.user_id == user_id)).first()
        return None if row is None else {"training": bool(row.consent_training),
                                         "analytics": bool(row.consent_analytics)}

    def activity_per_day(self, days: int = 30) -> list[dict[str, Any]]:
        """Interactions, contributions and feedback per UTC day over the last ``days`` days (oldest first)."""
        since: datetime = utcnow() - timedelta(days=days)
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for table, kind_col in ((t.records, t.records.c.kind), (t.feedback, None)):
                day = func.date(table.c.created_at)
                cols = [day.label("day"), func.count().label("n")] + ([kind_col.label("kind")] if kind_col is not None
                                                                     else [])
                query = select(*cols).where(table.c.created_at >= since).group_by(day, *(
                    [kind_col] if kind_col is not None else []))
                for r in conn.execute(query):
                    entry = out.setdefault(str(r.day), {"day": str(r.day), "interaction": 0, "contribution": 0,
                                                        "feedback": 0})
                    entry[getattr(r, "kind", "feedback")] += int(r.n)
        return [out[d] for d in sorted(out)]


def _value_row(r: Any) -> dict[str, Any]:
    return {"user_id": r.user_id, "cycle_id": r.cycle_id, "value": r.value, "points": r.points,
            "per_class": r.per_class, "updated_at": aware(r.updated_at).isoformat()}
