"""Forgetting a user honestly: retrain the champion's recipe on its own snapshot minus that user's rows.

Approximate "unlearning" cannot prove a model forgot anything; retraining
without the data can. The replacement is trained from the champion's snapshot
with every row the user contributed to removed (found by the keyed pseudonym
the snapshot carries, so this works after erasure too), and must pass the same
gate as any candidate before it replaces the champion.
"""

from __future__ import annotations

import time
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from datawheel.artifacts import LabelledSet, fingerprint, write_parquet
from datawheel.registry import Registry
from datawheel.workspace import Workspace


def retrain_without(ws: Workspace, cycle_id: str, user_ref: str,
                    progress: Callable[[int, int, dict], None] | None = None) -> dict:
    t0 = time.perf_counter()
    store, registry = ws.store, Registry(ws)
    champion = registry.load(registry.champion_version())
    source_id = store.get_model(champion.version)["dataset_id"]
    if source_id is None:
        report = {"decision": "unchanged", "champion_version": champion.version, "rows_removed": 0,
                  "decision_reasons": [f"champion v{champion.version} was trained on the seed set only; "
                                       "it holds no user's data"]}
        store.finish_cycle(cycle_id, status="done", decision="unchanged", champion_version=champion.version,
                           report=report)
        return report
    table = pq.read_table(ws.root / store.get_snapshot(source_id)["path"])
    kept = table.filter(pa.array([user_ref not in refs for refs in table.column("user_refs").to_pylist()],
                                 pa.bool_()))
    snapshot_id = fingerprint("forget", [source_id, user_ref], {})
    if not store.has_snapshot(snapshot_id):
        path = ws.snapshot_path(snapshot_id)
        sha = write_parquet(kept, path)
        kept_records = {r for rids in kept.column("record_ids").to_pylist() for r in rids}
        store.save_snapshot(snapshot_id=snapshot_id, cycle_id=cycle_id, path=str(path.relative_to(ws.root)),
                            sha256=sha, rows=len(kept),
                            members=[(r, u) for r, u in store.snapshot_members(source_id) if r in kept_records])
    outcome = registry.challenge(ws.seed() + LabelledSet.from_arrow(kept), dataset_id=snapshot_id,
                                 cycle_id=cycle_id, champion=champion, progress=progress,
                                 replacing="the champion was trained on an erased user's data")
    report = {"replaces": champion.version, "source_snapshot": source_id, "rows_removed": len(table) - len(kept),
              "snapshot": {"id": snapshot_id, "items": len(kept)}, **outcome,
              "seconds": round(time.perf_counter() - t0, 3)}
    store.finish_cycle(cycle_id, status="done", decision=outcome["decision"],
                       champion_version=outcome["champion_version"], candidate_version=outcome["candidate_version"],
                       snapshot_id=snapshot_id, report=report)
    return report
