"""One turn of the wheel, top to bottom: the only orchestrator.

    load inputs once -> comply -> curate -> [nothing new: skipped] -> save snapshot + datasheet
                     -> train -> evaluate -> gate -> register -> release

Every stage is a call here with its inputs passed in and its output returned;
stages never touch the store, and nothing below this module calls back up.
A turn whose labels and settings are those the champion was trained on ends
before training, registering nothing (``wheel/novelty.py``).
A retrain-without is the same turn with another way of making the snapshot
(the champion's snapshot minus one user's rows) and a reason to replace the
champion; model v1 at ``init`` is the same train -> evaluate -> register ->
release on the seed set alone. A cycle runs in its own process when started
from the API (``python -m datawheel.wheel.cycle WS CYCLE_ID``) so serving never
waits on training.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datawheel.artifacts import (
    LabelledRecord,
    LabelledSet,
    Progress,
    Snapshot,
    Vote,
    drop_users,
    fingerprint,
    write_parquet,
)
from datawheel.curation import datasheet
from datawheel.curation.valuation import value_contributors
from datawheel.errors import CycleError
from datawheel.models.registry import LoadedModel, Registry
from datawheel.stages import evaluate
from datawheel.stages.comply import comply
from datawheel.stages.curate import CurateInput, CurateOutput, curate
from datawheel.stages.gate import gate
from datawheel.stages.significance import mcnemar_exact
from datawheel.stages.train import TrainedModel, calibrated, train
from datawheel.store.db import utcnow
from datawheel.tasks import GENERATION_TASK
from datawheel.tasks.base import predict_proba
from datawheel.wheel.after_erasure import nothing_to_retrain
from datawheel.wheel.chat_turn import ChatInputs, chat_cycle
from datawheel.wheel.novelty import NO_VOTES, inputs_digest, nothing_new, skip
from datawheel.wheel.outcome import finish, reasons, release_if_clean, save_derived_snapshot, unchanged
from datawheel.wheel.retention import collect_garbage, prune_derived
from datawheel.workspace import Workspace


@dataclass(frozen=True)
class Inputs:
    """What every turn reads before its first stage, read once and passed down."""

    seed: LabelledSet
    golden: LabelledSet
    champion: LoadedModel
    #: the audit sequence number before any record was read: users erased after it may be in this cycle's data
    fence: int = 0

    @property
    def kept_hashes(self) -> set[str]:
        """Content whose derived features (cached embeddings) may outlive the records that held it."""
        return set(self.seed.hashes) | set(self.golden.hashes)


def run_cycle(ws: Workspace, cycle_id: str, progress: Progress | None = None) -> dict:
    """Run the stages for an already-started cycle row; marks it done or failed."""
    store = ws.store
    store.claim_cycle(cycle_id)
    params = store.get_cycle(cycle_id)["params"]
    registry = Registry(ws)
    fence = store.audit_seq()
    seed, golden = ws.seed(), ws.golden()
    try:
        if ws.config.workspace.task == GENERATION_TASK:
            report = chat_cycle(ws, cycle_id, ChatInputs(seed, golden, registry.champion_version(), fence), progress,
                                without_user_ref=params.get("without_user_ref"))
        elif params.get("without_user_ref"):
            inputs = Inputs(seed, golden, registry.load(registry.champion_version()), fence)
            report = _retrain_without(ws, registry, cycle_id, inputs, params["without_user_ref"], progress)
        else:
            inputs = Inputs(seed, golden, registry.load(registry.champion_version()), fence)
            report = _turn(ws, registry, cycle_id, inputs, progress, params.get("warm_start"))
    except BaseException as exc:
        store.finish_cycle(cycle_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        prune_derived(ws, set(seed.hashes) | set(golden.hashes))
        # A snapshot written while an erasure ran may hold the erased user's rows: rewrite it without them.
        ws.scrub_snapshots(store.erased_refs_after(fence))
    return report


def _turn(ws: Workspace, registry: Registry, cycle_id: str, inputs: Inputs, progress: Progress | None,
          warm_start: bool | None) -> dict:
    t0 = time.perf_counter()
    store = ws.store
    ws.record_policy(actor="cycle")
    expired = collect_garbage(ws, actor="cycle", keep=inputs.kept_hashes)
    ws.scrub_snapshots(store.erased_refs())  # files an interrupted cycle or erasure left behind
    records, votes = store.labelled_records()
    kept, comply_verdicts = comply(records)
    curated, lineage = _curate(ws, kept, votes, inputs)
    snapshot = curated.snapshot
    rejected = reasons(comply_verdicts + curated.verdicts)
    store.save_verdicts(cycle_id, [(v.record_id, v.stage, "accepted" if v.accepted else "rejected", v.reason)
                                   for v in comply_verdicts + curated.verdicts])
    store.save_curation(cycle_id, curated.reliability, curated.queue)
    counts = {"retention_deleted": expired, "records_in": len(records),
              "accepted": sum(len(r) for r in snapshot.record_ids), "rejected": sum(rejected.values()),
              "rejected_by_reason": rejected}
    digest = inputs_digest(ws, inputs.seed, lineage["votes_sha256"])
    same = nothing_new(ws, inputs.champion.version, digest)
    if same:
        return skip(ws, cycle_id, inputs.champion.version, same, {
            **counts, "snapshot": {"items": len(snapshot.items), **snapshot.stats},
            "seconds": round(time.perf_counter() - t0, 3)})
    _save_snapshot(ws, cycle_id, snapshot, kept, inputs, rejected, lineage, records_in=len(records))
    outcome = challenge(ws, registry, cycle_id, inputs, snapshot.to_arrow(ws.user_ref), snapshot.id, progress,
                        warm_start=warm_start, digest=digest)
    valuation = store.save_contributor_values(cycle_id, value_contributors(
        ws.task, inputs.champion.network, inputs.champion.model_name, kept, votes, inputs.golden, ws.labels))
    report = {**counts, "snapshot": {"id": snapshot.id, "items": len(snapshot.items), **snapshot.stats},
              **outcome, "valuation": valuation, "seconds": round(time.perf_counter() - t0, 3)}
    return finish(ws, cycle_id, snapshot.id, report)


def _curate(ws: Workspace, kept: list[LabelledRecord], votes: list[Vote],
            inputs: Inputs) -> tuple[CurateOutput, dict]:
    """Curate consented records: anchors from the seed set and annotators, the champion's beliefs as a prior.

    Also returns what the datasheet's lineage needs to know about the votes.
    """
    kept_ids = {r.record_id for r in kept}
    kept_votes = [v for v in votes if v.record_id in kept_ids]
    annotations = ws.store.annotations()
    data_id = hashlib.sha256(("".join(sorted(f"{v.record_id}:{v.user_id}:{v.label};" for v in kept_votes))
                              + "".join(f"{h}={lab};" for h, lab in sorted(annotations.items()))
                              ).encode()).hexdigest()
    # Same votes, same champion, same config: the same fingerprint, so an identical snapshot is reused.
    snapshot_id = fingerprint("curate", [data_id, f"champion-v{inputs.champion.version}"],
                              ws.config.curation.model_dump(mode="json"))
    champion_probs = _champion_beliefs(ws, kept, inputs.champion)
    curated = curate(CurateInput(kept, kept_votes, ws.labels, inputs.seed, inputs.golden, annotations,
                                 champion_probs), task=ws.task, cfg=ws.config.curation, snapshot_id=snapshot_id)
    return curated, {"annotations": len(annotations), "votes_sha256": data_id}


def _champion_beliefs(ws: Workspace, kept: list[LabelledRecord], champion: LoadedModel) -> dict[str, np.ndarray]:
    """The champion's class probabilities per distinct input, the aggregation's per-item prior."""
    unique: dict[str, bytes] = {}
    for r in kept:
        unique.setdefault(r.content_hash, r.input)
    if not unique:
        return {}
    features = ws.task.featurize([ws.task.decode(b) for b in unique.values()], champion.model_name, cache=True)
    probs = predict_proba(champion.module, features).numpy().astype(np.float64)
    return dict(zip(unique, probs))


def _save_snapshot(ws: Workspace, cycle_id: str, snapshot: Snapshot, kept: list[LabelledRecord], inputs: Inputs,
                   rejected: dict[str, int], lineage: dict, records_in: int) -> None:
    """Write the snapshot's Parquet file, its datasheet and its membership rows; an existing one is kept."""
    store = ws.store
    if store.has_snapshot(snapshot.id):
        return
    path = ws.snapshot_path(snapshot.id)
    sha = write_parquet(snapshot.to_arrow(ws.user_ref), path)
    user_of = {r.record_id: r.user_id for r in kept}
    members = [(rid, user_of[rid]) for rids in snapshot.record_ids for rid in rids]
    datasheet.write(datasheet.build(
        snapshot_id=snapshot.id, created_at=utcnow().isoformat(), cycle_id=cycle_id, task=ws.task.name,
        labels=ws.labels, parquet_path=str(path.relative_to(ws.root)), sha256=sha, stats=snapshot.stats,
        rejected_by_reason=rejected, records_in=records_in, records_kept=len(members),
        contributors=len({u for _, u in members}),
        lineage={"champion_version_as_prior": inputs.champion.version, "seed_items": len(inputs.seed),
                 "golden_items_never_trained_on": len(inputs.golden), **lineage,
                 "curation_config": ws.config.curation.model_dump(mode="json")}), path)
    store.save_snapshot(snapshot_id=snapshot.id, cycle_id=cycle_id, path=str(path.relative_to(ws.root)),
                        sha256=sha, rows=len(snapshot.items), members=members)


def _retrain_without(ws: Workspace, registry: Registry, cycle_id: str, inputs: Inputs, user_ref: str,
                     progress: Progress | None) -> dict:
    """The champion's recipe on its own snapshot minus one user's rows, gated like any candidate.

    Approximate unlearning cannot prove a model forgot anything; retraining without the data can. Rows are
    found by the keyed pseudonym the snapshot carries, so this works after the user is erased.
    """
    t0 = time.perf_counter()
    store, champion = ws.store, inputs.champion
    source_id = store.get_model(champion.version)["dataset_id"]
    if source_id is None:
        return unchanged(ws, cycle_id, champion.version,
                         f"champion v{champion.version} was trained on the seed set only; it holds no user's data")
    idle = nothing_to_retrain(ws, champion.version, user_ref)
    if idle:
        return unchanged(ws, cycle_id, champion.version, idle)
    source_path = ws.root / store.get_snapshot(source_id)["path"]
    table = pq.read_table(source_path)
    kept = drop_users(table, {user_ref})
    snapshot_id = fingerprint("retrain-without", [source_id, user_ref], {})
    save_derived_snapshot(ws, cycle_id, snapshot_id, kept, source_id, source_path, removed=len(table) - len(kept),
                          per_label=dict(sorted(Counter(kept.column("label").to_pylist()).items())))
    outcome = challenge(ws, registry, cycle_id, inputs, kept, snapshot_id, progress,
                        replacing="a replacement without one user's rows was asked for")
    report = {"replaces": champion.version, "source_snapshot": source_id, "rows_removed": len(table) - len(kept),
              "snapshot": {"id": snapshot_id, "items": len(kept)}, **outcome,
              "seconds": round(time.perf_counter() - t0, 3)}
    return finish(ws, cycle_id, snapshot_id, report)


def challenge(ws: Workspace, registry: Registry, cycle_id: str, inputs: Inputs, snapshot: pa.Table,
              dataset_id: str, progress: Progress | None = None, *, warm_start: bool | None = None,
              replacing: str = "", digest: str = "") -> dict:
    """Train a candidate on the seed set plus ``snapshot``, evaluate both models on the golden set, gate,
    register, release.

    A rejected candidate is registered too (it was trained on users' data, so lineage must know it), but no
    alias points at it. Users erased since the cycle's fence are dropped before training; one erased while
    it trains makes the candidate unpromotable, and its receipt names the candidate. ``digest``: the turn's
    inputs (``novelty.inputs_digest``), recorded with the candidate so a turn on the same inputs is skipped.
    """
    champion = inputs.champion
    late = ws.store.erased_refs_after(inputs.fence) & _refs(snapshot)
    if late:
        snapshot = drop_users(snapshot, late)
    data, refs = inputs.seed + LabelledSet.from_arrow(snapshot), _refs(snapshot)
    candidate = _train_candidate(ws, data, dataset_id, champion, progress, warm_start, replacing)
    if digest:
        candidate.info["inputs_digest"] = digest
    cand = evaluate.score(ws.task, calibrated(candidate.module, candidate.temperature), candidate.model_name,
                          inputs.golden, ws.labels)
    champ = evaluate.score(ws.task, champion.module, champion.model_name, inputs.golden, ws.labels)
    cand_metrics = evaluate.metrics(cand, ws.labels, inputs.golden.meta)
    champ_metrics = evaluate.metrics(champ, ws.labels, inputs.golden.meta)
    paired = mcnemar_exact(cand.right, champ.right)
    champion_examples = ws.store.get_model(champion.version)["train_info"].get("examples", 0)
    decision = gate(cand_metrics, champ_metrics, ws.config.gate, paired=paired,
                    more_data=len(data) > champion_examples, replacing=replacing)
    version = registry.register(candidate, cand_metrics, dataset_id=dataset_id, parent=champion.version,
                                cycle_id=cycle_id, seed_items=len(inputs.seed),
                                decision={"decision": decision.name, "decision_reasons": decision.reasons,
                                          "mcnemar": paired})
    decision = release_if_clean(ws, registry, version, decision, (inputs.fence, refs))
    return {"trained_on": len(data), "candidate_version": version, "candidate_metrics": cand_metrics,
            "champion_metrics_before": champ_metrics, "decision": decision.name,
            "decision_reasons": decision.reasons, "mcnemar": paired,
            "champion_version": version if decision.promote else champion.version,
            "champion_accuracy": cand_metrics["accuracy"] if decision.promote else champ_metrics["accuracy"]}


def _refs(snapshot: pa.Table) -> set[str]:
    if "user_refs" not in snapshot.column_names:
        return set()
    return {ref for refs in snapshot.column("user_refs").to_pylist() for ref in refs}


def _train_candidate(ws: Workspace, data: LabelledSet, dataset_id: str, champion: LoadedModel,
                     progress: Progress | None, warm_start: bool | None, replacing: str) -> TrainedModel:
    """``warm_start`` overrides the config's ``model.warm_start`` for this candidate."""
    cfg = ws.config.model
    warm = warm_start if warm_start is not None else cfg.warm_start
    # Never start from weights that hold an erased user's data: a replacement exists to drop them, and a
    # champion named in an erasure receipt (a rejected replacement left it in place) still holds them.
    tainted = bool(replacing) or champion.version in ws.store.erased_model_versions()
    if warm and not tainted and champion.model_name != (cfg.name or ws.task.models[0]):
        raise CycleError(f"cannot warm-start: the champion v{champion.version} is a {champion.model_name!r} "
                         f"model and the config trains {cfg.name or ws.task.models[0]!r}")
    checkpoint = ws.checkpoint_path(dataset_id)
    checkpoint.parent.mkdir(mode=0o700, exist_ok=True)  # an erasure deletes it; training never recreates it
    for stale in checkpoint.parent.glob("*.pt"):  # other data's runs can never resume: drop them
        if stale != checkpoint:
            stale.unlink(missing_ok=True)
    candidate = train(ws.task, data, ws.labels, cfg, progress,
                      init_state=champion.network.state_dict() if warm and not tainted else None,
                      checkpoint=checkpoint)
    if warm and not tainted:
        candidate.info["warm_start_from"] = champion.version
    elif warm:
        candidate.info["warm_start_refused"] = ("a replacement without a user's rows" if replacing else
                                                 "the champion's weights hold an erased user's data")
    return candidate


def first_champion(ws: Workspace, seed: LabelledSet, golden: LabelledSet, progress: Progress | None = None) -> int:
    """Model v1 at ``init``: trained on the seed set, evaluated, registered and made champion."""
    trained = train(ws.task, seed, ws.labels, ws.config.model, progress)
    trained.info["inputs_digest"] = inputs_digest(ws, seed, NO_VOTES)
    served = calibrated(trained.module, trained.temperature)
    metrics = evaluate.evaluate(ws.task, served, trained.model_name, golden, ws.labels)
    registry = Registry(ws)
    version = registry.register(trained, metrics, dataset_id=None, parent=None, cycle_id=None, seed_items=len(seed))
    registry.promote(version, actor="init", reason="model trained on the seed set at init")
    return version


def spawn_cycle(ws_root: Path, cycle_id: str) -> subprocess.Popen:
    """Run a started cycle in a child process, so serving keeps its cores' attention."""
    return subprocess.Popen([sys.executable, "-m", "datawheel.wheel.cycle", str(ws_root), cycle_id],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: list[str]) -> int:
    ws = Workspace.open(argv[0])
    try:
        run_cycle(ws, argv[1])
    except Exception as exc:  # noqa: BLE001 - the failure is recorded on the cycle row; exit non-zero for the parent
        print(f"cycle {argv[1]} failed: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
