"""How a turn ends, for every task: the release guarded by the erasure fence, and the cycle row closed.

Both the classifier turn and the text-generation turn end here, so a candidate
that saw an erased user's data can be promoted by neither; a retrain-without's
snapshot is saved here for both too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from datawheel.artifacts import Verdict, write_parquet
from datawheel.curation import datasheet
from datawheel.errors import ErasedDuringCycle
from datawheel.models.registry import Registry
from datawheel.stages.gate import Decision
from datawheel.store.db import utcnow
from datawheel.workspace import Workspace


def release_if_clean(ws: Workspace, registry: Registry, version: int, decision: Decision,
                     fence: tuple[int, set[str]]) -> Decision:
    """Promote if the gate says so and no user whose data the candidate saw was erased meanwhile.

    The check runs inside the alias transaction, so an erasure lands either before it (no promotion, the
    receipt names the candidate) or after it (the erasure's receipt finds the model through the snapshot).
    """
    late = ws.store.erased_refs_after(fence[0]) & fence[1]
    if not late and decision.promote:
        try:
            registry.promote(version, actor="cycle", reason="; ".join(decision.reasons), unless_erased=fence)
            return decision
        except ErasedDuringCycle as exc:
            late = exc.user_refs
    if late:
        ws.store.name_in_receipts(late, version, actor="cycle")
        return Decision(False, [f"{len(late)} user(s) whose data the candidate saw were erased while it trained; "
                                "it is named in their erasure receipts and never serves", *decision.reasons])
    return decision


def finish(ws: Workspace, cycle_id: str, snapshot_id: str, report: dict) -> dict:
    ws.store.finish_cycle(cycle_id, status="done", decision=report["decision"],
                          champion_version=report["champion_version"],
                          candidate_version=report["candidate_version"], snapshot_id=snapshot_id, report=report)
    return report


def reasons(verdicts: list[Verdict]) -> dict[str, int]:
    return dict(sorted(Counter(v.reason for v in verdicts if not v.accepted).items()))


def unchanged(ws: Workspace, cycle_id: str, champion: int, reason: str) -> dict:
    """A turn that had nothing to train: the champion stays, and the cycle row says why."""
    report = {"decision": "unchanged", "champion_version": champion, "rows_removed": 0, "decision_reasons": [reason]}
    ws.store.finish_cycle(cycle_id, status="done", decision="unchanged", champion_version=champion, report=report)
    return report


def save_derived_snapshot(ws: Workspace, cycle_id: str, snapshot_id: str, kept: pa.Table, source_id: str,
                          source_path: Path, removed: int, per_label: dict[str, int]) -> None:
    """A retrain-without's snapshot: the source's rows minus one user's, its members and a derived datasheet."""
    store = ws.store
    if store.has_snapshot(snapshot_id):
        return
    path = ws.snapshot_path(snapshot_id)
    sha = write_parquet(kept, path)
    kept_records = {r for rids in kept.column("record_ids").to_pylist() for r in rids}
    members = [(r, u) for r, u in store.snapshot_members(source_id) if r in kept_records]
    datasheet.write(datasheet.derive(
        datasheet.read(source_path), snapshot_id=snapshot_id, created_at=utcnow().isoformat(), cycle_id=cycle_id,
        parquet_path=str(path.relative_to(ws.root)), sha256=sha,
        per_label=per_label, records=len(members),
        contributors=len({u for _, u in members}), source_id=source_id, removed_rows=removed), path)
    store.save_snapshot(snapshot_id=snapshot_id, cycle_id=cycle_id, path=str(path.relative_to(ws.root)),
                        sha256=sha, rows=len(kept), members=members)
