"""One turn of the wheel: comply -> curate -> train -> evaluate -> release.

The only orchestrator. It loads each stage's inputs from the store, calls the
stage, saves the output and records lineage; stages never touch the store.
A cycle runs in its own process when started from the API (``python -m
datawheel.cycle WS CYCLE_ID``) so serving never waits on training.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from datawheel.artifacts import fingerprint, write_parquet
from datawheel.curation import datasheet
from datawheel.forget import retrain_without
from datawheel.registry import Registry
from datawheel.retention import collect_garbage, prune_derived
from datawheel.store.db import utcnow
from datawheel.stages.comply import comply
from datawheel.stages.curate import CurateInput, curate
from datawheel.tasks.base import predict_proba
from datawheel.workspace import Workspace

Progress = Callable[[int, int, dict], None]


def _reasons(verdicts: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts:
        if not v.accepted:
            out[v.reason] = out.get(v.reason, 0) + 1
    return dict(sorted(out.items()))


def run_cycle(ws: Workspace, cycle_id: str, progress: Progress | None = None) -> dict:
    """Run the stages for an already-started cycle row; marks it done or failed."""
    store = ws.store
    store.claim_cycle(cycle_id)
    params = store.get_cycle(cycle_id)["params"]
    forget = params.get("without_user_ref")
    try:
        report = (retrain_without(ws, cycle_id, forget, progress) if forget
                  else _turn(ws, cycle_id, progress, warm_start=params.get("warm_start")))
    except BaseException as exc:
        store.finish_cycle(cycle_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        prune_derived(ws)
    return report


def _turn(ws: Workspace, cycle_id: str, progress: Progress | None, warm_start: bool | None = None) -> dict:
    t0 = time.perf_counter()
    store, task, registry = ws.store, ws.task, Registry(ws)
    cfg = ws.config
    ws.record_policy(actor="cycle")
    expired = collect_garbage(ws, actor="cycle")

    # comply
    records, votes = store.labelled_records()
    kept, comply_verdicts = comply(records)
    kept_ids = {r.record_id for r in kept}
    kept_votes = [v for v in votes if v.record_id in kept_ids]

    # curate: anchors from the seed set and annotators, the champion's beliefs as a soft prior
    champion_version = registry.champion_version()
    champion = registry.load(champion_version)
    seed, golden = ws.seed(), ws.golden()  # golden: never trained on; curation drops it and its near-copies
    annotations = store.annotations()
    unique: dict[str, bytes] = {}
    for r in kept:
        unique.setdefault(r.content_hash, r.input)
    model_probs: dict[str, np.ndarray] = {}
    if unique:
        probs = predict_proba(champion.module, task.featurize([task.decode(b) for b in unique.values()],
                                                              champion.model_name, cache=True))
        model_probs = dict(zip(unique, probs.numpy().astype(np.float64)))
    data_id = hashlib.sha256(("".join(sorted(f"{v.record_id}:{v.user_id}:{v.label};" for v in kept_votes))
                              + "".join(f"{h}={lab};" for h, lab in sorted(annotations.items()))
                              ).encode()).hexdigest()
    snapshot_id = fingerprint("curate", [data_id, f"champion-v{champion_version}"],
                              cfg.curation.model_dump(mode="json"))
    curated = curate(CurateInput(kept, kept_votes, ws.labels, seed, golden, annotations, model_probs),
                     task=task, cfg=cfg.curation, snapshot_id=snapshot_id)
    snapshot, curate_verdicts = curated.snapshot, curated.verdicts
    store.save_verdicts(cycle_id, [(v.record_id, v.stage, "accepted" if v.accepted else "rejected", v.reason)
                                   for v in comply_verdicts + curate_verdicts])
    store.save_curation(cycle_id, curated.reliability, curated.queue)
    rejected = {**_reasons(comply_verdicts), **_reasons(curate_verdicts)}
    # Same inputs, same config, same fingerprint: an identical snapshot is reused, never rewritten.
    if not store.has_snapshot(snapshot.id):
        path = ws.snapshot_path(snapshot.id)
        sha = write_parquet(snapshot.to_arrow(ws.user_ref), path)
        user_of = {r.record_id: r.user_id for r in kept}
        members = [(rid, user_of[rid]) for rids in snapshot.record_ids for rid in rids]
        datasheet.write(datasheet.build(
            snapshot_id=snapshot.id, created_at=utcnow().isoformat(), cycle_id=cycle_id, task=task.name,
            labels=ws.labels, parquet_path=str(path.relative_to(ws.root)), sha256=sha, stats=snapshot.stats,
            rejected_by_reason=rejected, records_in=len(records), records_kept=len(members),
            contributors=len({u for _, u in members}),
            lineage={"champion_version_as_prior": champion_version, "seed_items": len(seed),
                     "golden_items_never_trained_on": len(golden), "annotations": len(annotations),
                     "votes_sha256": data_id, "curation_config": cfg.curation.model_dump(mode="json")}), path)
        store.save_snapshot(snapshot_id=snapshot.id, cycle_id=cycle_id, path=str(path.relative_to(ws.root)),
                            sha256=sha, rows=len(snapshot.items), members=members)

    # train, evaluate, release
    outcome = registry.challenge(seed + snapshot.items, dataset_id=snapshot.id, cycle_id=cycle_id,
                                 champion=champion, progress=progress, warm_start=warm_start)
    report = {
        "retention_deleted": expired,
        "records_in": len(records),
        "accepted": sum(len(r) for r in snapshot.record_ids),
        "rejected": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "snapshot": {"id": snapshot.id, "items": len(snapshot.items), **snapshot.stats},
        **outcome,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    store.finish_cycle(cycle_id, status="done", decision=outcome["decision"],
                       champion_version=outcome["champion_version"], candidate_version=outcome["candidate_version"],
                       snapshot_id=snapshot.id, report=report)
    return report


def spawn_cycle(ws_root: Path, cycle_id: str) -> subprocess.Popen:
    """Run a started cycle in a child process, so serving keeps its cores' attention."""
    return subprocess.Popen([sys.executable, "-m", "datawheel.cycle", str(ws_root), cycle_id],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: list[str]) -> int:
    ws = Workspace.open(argv[0])
    try:
        run_cycle(ws, argv[1])
    except Exception as exc:  # the failure is recorded on the cycle row; exit non-zero for the parent
        print(f"cycle {argv[1]} failed: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
