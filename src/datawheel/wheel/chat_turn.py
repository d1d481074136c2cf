"""One turn of the wheel for a text-generation workspace, top to bottom.

    load inputs once -> comply -> curate (SFT / DPO / KTO) -> [nothing new: skipped]
                     -> save snapshot + datasheet -> train (LoRA SFT) -> evaluate (golden) -> gate
                     -> register -> release

The same steps as the classifier turn (``wheel/cycle.py`` calls this one for
generation workspaces), ending in the same fenced release (``wheel/outcome.py``):
an erasure during the turn keeps its candidate from ever serving. Model v1 at
``init`` is the better of the base model zero-shot and the base fine-tuned on
the seed set, by the gate's rules.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from datawheel.artifacts import Exchange, LabelledSet, Progress, drop_users, fingerprint, write_parquet
from datawheel.curation import datasheet
from datawheel.models.adapters import AdapterRegistry
from datawheel.stages import evaluate_text
from datawheel.stages.comply import comply
from datawheel.stages.curate_chat import ChatCurated, curate_chat
from datawheel.stages.gate import Decision, gate_generation
from datawheel.stages.train_lora import SftExample, TrainedAdapter, train_lora
from datawheel.stages.train_preferences import dpo_rows, kto_rows, train_preferences
from datawheel.store.db import utcnow
from datawheel.tasks.chat import TextGeneration
from datawheel.tasks.language_model import Generator, LanguageModel, load_language_model
from datawheel.wheel.after_erasure import nothing_to_retrain
from datawheel.wheel.novelty import NO_VOTES, inputs_digest, nothing_new, skip
from datawheel.wheel.outcome import finish, reasons, release_if_clean, save_derived_snapshot, unchanged
from datawheel.wheel.retention import collect_garbage
from datawheel.workspace import Workspace


@dataclass(frozen=True)
class ChatInputs:
    seed: LabelledSet
    golden: LabelledSet
    champion: int
    fence: int


def _task(ws: Workspace) -> TextGeneration:
    task = ws.task
    assert isinstance(task, TextGeneration)
    return task


def chat_cycle(ws: Workspace, cycle_id: str, inputs: ChatInputs, progress: Progress | None,
               without_user_ref: str | None = None) -> dict:
    """One generation turn on everything users said since the workspace began (curation is idempotent), or,
    with ``without_user_ref``, a replacement for the champion trained without one user's rows."""
    if without_user_ref:
        return _retrain_without(ws, cycle_id, inputs, without_user_ref, progress)
    t0 = time.perf_counter()
    store, cfg = ws.store, ws.config.generation
    torch.set_num_threads(cfg.threads)
    ws.record_policy(actor="cycle")
    expired = collect_garbage(ws, actor="cycle", keep=set(inputs.seed.hashes) | set(inputs.golden.hashes))
    ws.scrub_snapshots(store.erased_refs())
    distilled = _upstream_versions(ws) if ws.config.upstream.distill_unrated else set()
    exchanges = [e for e in store.exchanges() if e.feedback or e.model_version in distilled]
    kept, comply_verdicts = comply(exchanges)
    curated = curate_chat(kept, inputs.seed, inputs.golden, _task(ws), min_reliability=cfg.min_reliability,
                          max_answer_chars=cfg.max_answer_chars, accepted_versions=distilled)
    store.save_verdicts(cycle_id, [(v.record_id, v.stage, "accepted" if v.accepted else "rejected", v.reason)
                                   for v in comply_verdicts + curated.verdicts])
    rejected = reasons(comply_verdicts + curated.verdicts)
    votes = _feedback_hash(kept)
    snapshot_id = fingerprint("curate-chat", [votes, f"champion-v{inputs.champion}"],
                              {"generation": cfg.model_dump(mode="json")})
    table = curated.table(ws.user_ref)
    counts = {"retention_deleted": expired, "records_in": len(exchanges),
              "accepted": sum(1 for v in curated.verdicts if v.accepted), "rejected": sum(rejected.values()),
              "rejected_by_reason": rejected, "users_excluded": len(curated.excluded)}
    digest = inputs_digest(ws, inputs.seed, votes)
    same = _nothing_to_train(ws, inputs, table, digest)
    if same:
        return skip(ws, cycle_id, inputs.champion, same, {
            **counts, "snapshot": {"items": len(table), **curated.counts()},
            "seconds": round(time.perf_counter() - t0, 3)})
    _save_snapshot(ws, cycle_id, snapshot_id, table, curated, kept, inputs, rejected, len(exchanges))
    outcome = challenge_chat(ws, AdapterRegistry(ws), cycle_id, inputs, table, snapshot_id, progress, digest=digest)
    report = {**counts, "snapshot": {"id": snapshot_id, "items": len(table), **curated.counts()}, **outcome,
              "seconds": round(time.perf_counter() - t0, 3)}
    return finish(ws, cycle_id, snapshot_id, report)


def _nothing_to_train(ws: Workspace, inputs: ChatInputs, table: pa.Table, digest: str) -> str | None:
    """Why this turn would teach nothing new: no SFT row at all, or the feedback and settings a model was
    already trained on against this champion."""
    if len(snapshot_sft(table)) == 0:
        return "no new training example (no correction or answer reliable users approved)"
    return nothing_new(ws, inputs.champion, digest)


def _retrain_without(ws: Workspace, cycle_id: str, inputs: ChatInputs, user_ref: str,
                     progress: Progress | None) -> dict:
    """The champion's snapshot minus one user's rows (found by pseudonym, so this works after erasure), gated."""
    t0 = time.perf_counter()
    store = ws.store
    torch.set_num_threads(ws.config.generation.threads)
    source_id = store.get_model(inputs.champion)["dataset_id"]
    if source_id is None:
        return unchanged(ws, cycle_id, inputs.champion, f"champion v{inputs.champion} was not trained on users' data")
    idle = nothing_to_retrain(ws, inputs.champion, user_ref)
    if idle:
        return unchanged(ws, cycle_id, inputs.champion, idle)
    source_path = ws.root / store.get_snapshot(source_id)["path"]
    table = pq.read_table(source_path)
    kept = drop_users(table, {user_ref})
    snapshot_id = fingerprint("retrain-without", [source_id, user_ref], {})
    save_derived_snapshot(ws, cycle_id, snapshot_id, kept, source_id, source_path, removed=len(table) - len(kept),
                          per_label=dict(Counter(kept.column("kind").to_pylist())))
    outcome = challenge_chat(ws, AdapterRegistry(ws), cycle_id, inputs, kept, snapshot_id, progress,
                             replacing="a replacement without one user's rows was asked for")
    report = {"replaces": inputs.champion, "source_snapshot": source_id, "rows_removed": len(table) - len(kept),
              "snapshot": {"id": snapshot_id, "items": len(kept)}, **outcome,
              "seconds": round(time.perf_counter() - t0, 3)}
    return finish(ws, cycle_id, snapshot_id, report)


def _upstream_versions(ws: Workspace) -> set[str]:
    return {str(m["version"]) for m in ws.store.list_models() if m["model_name"] == "upstream"}


def _feedback_hash(exchanges: list[Exchange]) -> str:
    h = hashlib.sha256()
    for ex in exchanges:
        h.update(f"{ex.record_id}:{ex.user_id}:{ex.answers}:{ex.feedback};".encode())
    return h.hexdigest()


def _save_snapshot(ws: Workspace, cycle_id: str, snapshot_id: str, table: pa.Table, curated: ChatCurated,
                   kept: list[Exchange], inputs: ChatInputs, rejected: dict[str, int], records_in: int) -> None:
    store = ws.store
    if store.has_snapshot(snapshot_id):
        return
    path = ws.snapshot_path(snapshot_id)
    sha = write_parquet(table, path)
    user_of = {ex.record_id: ex.user_id for ex in kept}
    members = sorted({(rid, user_of[rid]) for row in curated.rows for rid in row["record_ids"]})
    counts = curated.counts()
    stats = {"items": len(table), "per_label": counts, "per_source": _vote_sources(kept), "annotated_items": 0,
             "duplicates_merged": 0, "near_duplicates_merged": len(members) - len({r["content_hash"]
                                                                                   for r in curated.rows}),
             "users": len(curated.reliability), "users_excluded": len(curated.excluded), "label_issues": 0,
             "label_noise_estimate": None}
    datasheet.write(datasheet.build(
        snapshot_id=snapshot_id, created_at=utcnow().isoformat(), cycle_id=cycle_id, task=ws.task.name, labels=(),
        parquet_path=str(path.relative_to(ws.root)), sha256=sha, stats=stats, rejected_by_reason=rejected,
        records_in=records_in, records_kept=len(members), contributors=len({u for _, u in members}),
        lineage={"champion_version": inputs.champion, "seed_items": len(inputs.seed),
                 "golden_items_never_trained_on": len(inputs.golden),
                 "sets": "kind = sft (conversation, label) | dpo (conversation, label ≻ rejected) | "
                         "kto (conversation, label, desirable)",
                 "generation_config": ws.config.generation.model_dump(mode="json")}), path)
    store.save_snapshot(snapshot_id=snapshot_id, cycle_id=cycle_id, path=str(path.relative_to(ws.root)),
                        sha256=sha, rows=len(table), members=members)


def _vote_sources(kept: list[Exchange]) -> dict[str, int]:
    out = {"corrections": 0, "ratings": 0, "choices": 0}
    for ex in kept:
        for fb in ex.feedback:
            out["corrections"] += fb.correction is not None
            out["ratings"] += fb.rating is not None
            out["choices"] += fb.chosen is not None
    return out


def sft_examples(task: TextGeneration, data: LabelledSet) -> list[SftExample]:
    return [SftExample(task.decode(b), target) for b, target in data]


def snapshot_sft(table: pa.Table) -> LabelledSet:
    """The snapshot's SFT rows as (conversation, target) pairs."""
    rows = table.filter(pc.equal(table.column("kind"), "sft"))
    return LabelledSet(rows.column("input").to_pylist(), rows.column("label").to_pylist(),
                       rows.column("content_hash").to_pylist())


def _refs(table: pa.Table) -> set[str]:
    return {ref for refs in table.column("user_refs").to_pylist() for ref in refs}


def challenge_chat(ws: Workspace, registry: AdapterRegistry, cycle_id: str, inputs: ChatInputs, table: pa.Table,
                   dataset_id: str, progress: Progress | None, replacing: str = "", digest: str = "") -> dict:
    """Train a candidate adapter on the seed set plus the snapshot's SFT rows, score both models on the
    golden set, gate, register, release. ``digest``: the turn's inputs, recorded with the candidate."""
    late = ws.store.erased_refs_after(inputs.fence) & _refs(table)
    if late:
        table = drop_users(table, late)
    data = inputs.seed + snapshot_sft(table)
    candidate, lm = _train(ws, registry, data, dataset_id, progress, table)
    if digest:
        candidate.info["inputs_digest"] = digest
    try:
        cand = _score(ws, lm, inputs.golden)
        champ = _score(ws, registry.load_generator(inputs.champion), inputs.golden)
        metric = ws.config.generation.metric
        cand_m = evaluate_text.metrics(cand, metric, inputs.golden.meta)
        champ_m = evaluate_text.metrics(champ, metric, inputs.golden.meta)
        paired = evaluate_text.paired_test(metric, cand, champ)
        champion_examples = ws.store.get_model(inputs.champion)["train_info"].get("examples", 0)
        decision = gate_generation(cand_m, champ_m, ws.config.gate, paired=paired,
                                   more_data=len(data) > champion_examples, replacing=replacing)
        if registry.is_upstream(inputs.champion):
            decision = against_upstream(cand_m, champ_m, ws, decision)
        version = registry.register_adapter(candidate.folder, candidate.info | {"examples": len(data)}, cand_m,
                                            dataset_id=dataset_id, parent=inputs.champion, cycle_id=cycle_id,
                                            decision={"decision": decision.name,
                                                      "decision_reasons": decision.reasons, "paired": paired})
    finally:
        shutil.rmtree(candidate.folder.parent, ignore_errors=True)
    decision = release_if_clean(ws, registry, version, decision, (inputs.fence, _refs(table)))
    return {"trained_on": len(data), "candidate_version": version, "candidate_metrics": cand_m,
            "champion_metrics_before": champ_m, "decision": decision.name, "decision_reasons": decision.reasons,
            "paired_test": paired, "training_seconds": candidate.info["seconds"],
            "champion_version": version if decision.promote else inputs.champion,
            "champion_score": cand_m["score"] if decision.promote else champ_m["score"]}


def _train(ws: Workspace, registry: AdapterRegistry, data: LabelledSet, dataset_id: str | None,
           progress: Progress | None, snapshot: pa.Table | None = None) -> tuple[TrainedAdapter, LanguageModel]:
    """A fresh adapter in a temporary folder (the registry copies it in), and the model it makes: SFT, then
    DPO or KTO on the snapshot's preference rows when there are enough of them."""
    base, sha = registry.base()
    cfg = ws.config.generation
    checkpoint = ws.checkpoint_path(f"{dataset_id or 'seed'}.lora")
    checkpoint.parent.mkdir(mode=0o700, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="datawheel-adapter-")) / "adapter"
    trained = train_lora(base, sha, sft_examples(_task(ws), data), cfg, out, checkpoint=checkpoint,
                         progress=progress)
    trained.info["base_model"] = cfg.base_model or "SmolLM2-135M-Instruct"
    rows = _preference_rows(_task(ws), snapshot, cfg.preference) if snapshot is not None else []
    if rows and len(rows) >= cfg.preference_min_rows:
        tuned = out.with_name("preference")
        trained.info.update(train_preferences(base, out, rows, cfg.preference, cfg, tuned))
        shutil.rmtree(out)
        tuned.rename(out)
    return trained, load_language_model(base, out)


def _preference_rows(task: TextGeneration, table: pa.Table, kind: str) -> list[dict]:
    if kind == "none":
        return []
    rows = table.filter(pc.equal(table.column("kind"), kind)).to_pylist()
    if kind == "dpo":
        return dpo_rows([(task.decode(r["input"]), r["label"], r["rejected"]) for r in rows])
    return kto_rows([(task.decode(r["input"]), r["label"], bool(r["desirable"])) for r in rows])


def against_upstream(local: dict, upstream: dict, ws: Workspace, gated: Decision) -> Decision:
    """Whether a local model replaces the upstream that serves now, by ``[release] serve_from``."""
    release, metric = ws.config.release, local["metric"]
    summary = f"local {metric} {local['score']:.4f} vs upstream {upstream['score']:.4f}"
    if release.serve_from == "upstream":
        return Decision(False, [f"serve_from is upstream: local models are trained and scored, never served "
                                f"({summary})"])
    if release.serve_from == "local":
        return gated
    if local["score"] >= upstream["score"] - release.auto_margin:
        return Decision(True, [f"within auto_margin {release.auto_margin} of the upstream: {summary}"])
    return Decision(False, [f"more than auto_margin {release.auto_margin} below the upstream: {summary}"])


def _score(ws: Workspace, lm: Generator, golden: LabelledSet) -> evaluate_text.TextScores:
    cfg = ws.config.generation
    convs = [_task(ws).decode(b) for b in golden.inputs]
    return evaluate_text.evaluate(lm, golden, convs, cfg.metric, max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.eval_batch_size)


def first_chat_champion(ws: Workspace, seed: LabelledSet, golden: LabelledSet,
                        progress: Progress | None = None) -> int:
    """Model v1 at ``init``: the base model zero-shot is registered and made champion; the base fine-tuned on the
    seed set replaces it if the gate says so. Returns the champion's version."""
    registry = AdapterRegistry(ws)
    torch.set_num_threads(ws.config.generation.threads)
    base, sha = registry.base()
    metric = ws.config.generation.metric
    zero = _score(ws, load_language_model(base), golden)
    zero_m = evaluate_text.metrics(zero, metric, golden.meta)
    v_base = registry.register_base(sha, zero_m)
    registry.promote(v_base, actor="init", reason="the base model zero-shot")
    candidate, lm = _train(ws, registry, seed, None, progress)
    candidate.info["inputs_digest"] = inputs_digest(ws, seed, NO_VOTES)
    try:
        tuned = _score(ws, lm, golden)
        tuned_m = evaluate_text.metrics(tuned, metric, golden.meta)
        paired = evaluate_text.paired_test(metric, tuned, zero)
        decision: Decision = gate_generation(tuned_m, zero_m, ws.config.gate, paired=paired, more_data=True)
        version = registry.register_adapter(candidate.folder, candidate.info | {"examples": len(seed)}, tuned_m,
                                            dataset_id=None, parent=v_base, cycle_id=None,
                                            decision={"decision": decision.name,
                                                      "decision_reasons": decision.reasons, "paired": paired})
    finally:
        shutil.rmtree(candidate.folder.parent, ignore_errors=True)
    if decision.promote:
        registry.promote(version, actor="init", reason="; ".join(decision.reasons))
    local, local_m = (version, tuned_m) if decision.promote else (v_base, zero_m)
    upstream = registry.upstream()
    if upstream is None:
        return local
    up_m = evaluate_text.metrics(_score(ws, upstream, golden), metric, golden.meta)
    v_up = registry.register_upstream(upstream, up_m)
    verdict = against_upstream(local_m, up_m, ws, Decision(True, ["serve_from is local"]))
    if verdict.promote:
        return local
    registry.promote(v_up, actor="init", reason="; ".join(verdict.reasons))
    return v_up
