"""The community of contributors: who the wheel owes the most, by a computed value rather than a count.

Values come from the latest cycle's KNN-Shapley valuation (``curation/valuation.py``); the page names
the method and shows what it cost. Contributors appear only under their pseudonym and only while their
training consent stands; an erased user has no row to show.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from datawheel.api.deps import WorkspaceDep
from datawheel.curation.valuation import METHOD
from datawheel.errors import NotFound
from datawheel.web.names import display_name
from datawheel.web.session import SameOrigin, Visitor
from datawheel.workspace import Workspace

router = APIRouter(prefix="/app/community", include_in_schema=False, dependencies=[SameOrigin])

ABOUT = ("Each label's Shapley value for a k-nearest-neighbour classifier on the serving model's embeddings, "
         "judged by accuracy on the golden set (Jia et al., VLDB 2019, exact in O(N log N) per golden item); a "
         "contributor's value is the sum over their labels, in accuracy points. Wrong labels count against it.")


def _latest_valuation(ws: Workspace) -> dict[str, Any] | None:
    done = [c for c in ws.store.list_cycles() if c["status"] == "done" and (c.get("report") or {}).get("valuation")]
    if not done:
        return None
    latest = max(done, key=lambda c: c["started_at"])
    return {"cycle_id": latest["id"], **latest["report"]["valuation"]}


@router.get("")
def community(uid: Visitor, ws: WorkspaceDep) -> dict:
    """Contributors ranked by the value of their labels; the visitor's own row is marked."""
    rows = ws.store.contributor_ranking(limit=100)
    return {"method": METHOD, "about": ABOUT, "valuation": _latest_valuation(ws),
            "contributors": [{"rank": i + 1, "name": display_name(ws.user_ref(r["user_id"])),
                              "value": round(r["value"], 3), "labels": r["points"], "you": r["user_id"] == uid}
                             for i, r in enumerate(rows)]}


@router.get("/me")
def my_contribution(uid: Visitor, ws: WorkspaceDep) -> dict:
    """The visitor's own page: what their labels went into and what they were worth, class by class."""
    value = ws.store.contributor_value(uid)
    task = ws.task
    try:
        data = ws.store.user_data(uid, lambda raw: task.show(task.decode(raw)), actor="web")
    except NotFound:
        data = {"records": []}
    records = data["records"]
    corrections = sum(f["label"] is not None for r in records for f in r["feedback"])
    contributions = sum(r["kind"] == "contribution" for r in records)
    models = sorted({v for r in records for v in r["models"]})
    out: dict[str, Any] = {"you": display_name(ws.user_ref(uid)), "corrections": corrections,
                           "contributions": contributions, "models": models, "valued": value is not None,
                           "consent": ws.store.consent_now(uid)}
    if value is not None:
        per_class = value["per_class"]
        best = max(per_class, key=lambda k: per_class[k]) if per_class else None
        out |= {"value": round(value["value"], 3), "rank": value["rank"], "of": value["of"], "labels": value["points"],
                "per_class": per_class, "best_class": best,
                "best_class_points": round(per_class[best], 3) if best is not None else None}
    return out
