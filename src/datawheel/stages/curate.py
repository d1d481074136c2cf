"""Curation: from noisy, repeated user labels to one trustworthy label per distinct item.

Users' corrections are the wheel's fuel and they are noisy: some users are
careless, a few are wrong on purpose, the same item arrives many times. In order:

1. quality filters: inputs that cannot be decoded (``invalid_input``), carry no
   signal (``blank_input``) or are only redaction placeholders
   (``only_placeholders``) are dropped; so are golden-set items
   (``in_golden_set``): training on the test set would make every gate a lie;
2. exact duplicates (same content hash) pool their votes; near-duplicates
   (perceptual hash for images, MinHash/LSH for text) are clustered with them and
   with the golden and seed sets, so a re-encoded golden image is dropped too
   (``near_golden_set``) and a cluster keeps one representative;
3. labels are aggregated Dawid–Skene style (``curation/aggregate.py``), anchored
   by seed and annotated labels and with the champion's beliefs as a soft prior;
   users whose estimated accuracy is too low are excluded (``unreliable_user``),
   unsure items are dropped (``low_confidence``);
4. confident learning on out-of-fold probabilities (``curation/label_issues.py``)
   drops the labels most likely still wrong (``label_issue``);
5. everything not anchored is ranked for the annotation queue.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from datawheel.artifacts import LabelledRecord, LabelledSet, Snapshot, Verdict, Vote
from datawheel.config import CurationSection
from datawheel.curation.aggregate import MIN_USER_RELIABILITY, aggregate
from datawheel.curation.label_issues import find_label_issues, out_of_fold_probs
from datawheel.curation.ranking import rank
from datawheel.tasks.base import Task

STAGE = "curate"


@dataclass(frozen=True)
class CurateInput:
    records: list[LabelledRecord]
    votes: list[Vote]
    labels: tuple[str, ...]
    #: trained on already; its items anchor the aggregation and are not repeated in the snapshot
    seed: LabelledSet
    #: never trained on; its items (and near-duplicates of them) are dropped
    golden: LabelledSet
    #: content hash -> label given by an annotator (a high-trust anchor)
    annotations: Mapping[str, str]
    #: content hash -> champion's class probabilities (same order as labels)
    model_probs: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class UserReliability:
    user_id: str
    reliability: float
    votes: int
    excluded: bool


@dataclass(frozen=True)
class QueueItem:
    content_hash: str
    record_id: str
    score: float
    signals: dict[str, float]


@dataclass(frozen=True)
class CurateOutput:
    snapshot: Snapshot
    verdicts: list[Verdict]
    reliability: list[UserReliability]
    queue: list[QueueItem]


@dataclass
class _Cluster:
    """Records of one item, its exact copies and its near-duplicates."""

    hashes: list[str]
    records: list[LabelledRecord]
    anchor: int | None = None
    anchor_source: str = ""  # seed | annotation

    @cached_property
    def representative(self) -> LabelledRecord:
        """Computed once, after clustering has added every record."""
        counts = Counter(r.content_hash for r in self.records)
        best = max(self.hashes, key=lambda h: counts[h])  # first of the most repeated
        return next(r for r in self.records if r.content_hash == best)


class _Drops:
    """Every dropped record's verdict, and the count per reason."""

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []
        self.counts: dict[str, int] = defaultdict(int)

    def __call__(self, recs: list[LabelledRecord], reason: str) -> None:
        for r in recs:
            self.verdicts.append(Verdict(r.record_id, STAGE, False, reason))
            self.counts[reason] += 1


@dataclass(frozen=True)
class _Aggregated:
    users: list[str]
    item_votes: list[list[tuple[int, int]]]  # per cluster: (user index, label index)
    probs: np.ndarray  # [clusters, k] the champion's beliefs
    posterior: np.ndarray  # [clusters, k]
    reliability: np.ndarray  # [users]
    vote_counts: np.ndarray  # [users]
    kept_votes: list[list[tuple[int, int]]]  # votes left after unreliable users are excluded


def curate(inp: CurateInput, *, task: Task, cfg: CurationSection, snapshot_id: str) -> CurateOutput:
    index = {lab: j for j, lab in enumerate(inp.labels)}
    drop = _Drops()
    groups, items = _filter(inp, task, drop)  # 1. quality filters, golden leakage, exact duplicates
    clusters = _cluster(groups, items, inp, task, cfg, drop)  # 2. near-duplicates, also of golden and seed items
    _anchor_annotated(clusters, inp.annotations, index)
    agg = _aggregate(clusters, inp, cfg, index)  # 3. aggregation with user reliability
    chosen = _choose(clusters, agg, cfg, drop)
    # 4. confident learning on out-of-fold probabilities
    chosen, flagged, noise_rate = _drop_label_issues(clusters, chosen, items, inp, task, cfg, index, drop)
    snapshot = _snapshot(snapshot_id, clusters, chosen, inp.labels, drop.verdicts)
    k = len(inp.labels)
    seed_counts = np.bincount([index[lab] for lab in inp.seed.labels], minlength=k)
    snap_counts = np.bincount([j for _, j, _ in chosen], minlength=k)
    queue = _queue(clusters, agg.probs, agg.item_votes, flagged, seed_counts + snap_counts, cfg.queue_size)
    excluded = agg.reliability < MIN_USER_RELIABILITY
    reliability = [UserReliability(u, round(float(agg.reliability[j]), 4), int(agg.vote_counts[j]),
                                   bool(excluded[j])) for j, u in enumerate(agg.users)]
    kinds = Counter(r.kind for ci, _, _ in chosen for r in clusters[ci].records)
    snapshot.stats.update({
        "dropped": dict(sorted(drop.counts.items())),
        "duplicates_merged": sum(len(c.records) - 1 for c in clusters) - _near_merged(clusters),
        "near_duplicates_merged": _near_merged(clusters),
        "users": len(agg.users),
        "users_excluded": int(excluded.sum()),
        "annotated_items": sum(1 for c in clusters if c.anchor_source == "annotation"),
        "label_issues": len(flagged),
        "label_noise_estimate": None if noise_rate is None else round(noise_rate, 4),
        "per_label": {lab: int(snap_counts[j]) for j, lab in enumerate(inp.labels)},
        "per_source": dict(sorted(kinds.items())),
    })
    return CurateOutput(snapshot, drop.verdicts, reliability, queue)


def _filter(inp: CurateInput, task: Task,
            drop: _Drops) -> tuple[dict[str, list[LabelledRecord]], dict[str, object]]:
    """Records grouped by content hash, minus unusable inputs and copies of golden items."""
    golden_hashes = set(inp.golden.hashes)
    groups: dict[str, list[LabelledRecord]] = {}
    items: dict[str, object] = {}
    for rec in inp.records:
        try:
            item = task.decode(rec.input)
        except (ValueError, UnicodeDecodeError):
            drop([rec], "invalid_input")
            continue
        issue = task.quality_issue(item)
        if issue:
            drop([rec], issue)
        elif rec.content_hash in golden_hashes:
            drop([rec], "in_golden_set")
        else:
            groups.setdefault(rec.content_hash, []).append(rec)
            items.setdefault(rec.content_hash, item)
    return groups, items


def _anchor_annotated(clusters: list[_Cluster], annotations: Mapping[str, str], index: dict[str, int]) -> None:
    for c in clusters:
        for h in c.hashes if c.anchor_source != "seed" else ():
            if h in annotations and annotations[h] in index:
                c.anchor, c.anchor_source = index[annotations[h]], "annotation"
                break


def _aggregate(clusters: list[_Cluster], inp: CurateInput, cfg: CurationSection,
               index: dict[str, int]) -> _Aggregated:
    k = len(index)
    owner = {r.record_id: ci for ci, c in enumerate(clusters) for r in c.records}
    users = sorted({v.user_id for v in inp.votes if v.record_id in owner})
    uidx = {u: j for j, u in enumerate(users)}
    item_votes: list[list[tuple[int, int]]] = [[] for _ in clusters]
    for v in inp.votes:
        if v.record_id in owner and v.label in index:
            item_votes[owner[v.record_id]].append((uidx[v.user_id], index[v.label]))
    uniform = np.full(k, 1.0 / k)
    probs = np.array([inp.model_probs.get(c.representative.content_hash, uniform) for c in clusters],
                     dtype=np.float64).reshape(len(clusters), k)
    prior = probs ** cfg.model_prior_weight
    prior /= prior.sum(axis=1, keepdims=True)
    anchored = {ci: c.anchor for ci, c in enumerate(clusters) if c.anchor is not None}
    post, rel, counts, kept_votes = aggregate(item_votes, len(users), k, prior, anchored, cfg.em_iterations)
    return _Aggregated(users, item_votes, probs, post, rel, counts, kept_votes)


def _choose(clusters: list[_Cluster], agg: _Aggregated, cfg: CurationSection,
            drop: _Drops) -> list[tuple[int, int, float]]:
    """(cluster, label index, confidence) for every cluster whose label is trusted enough to train on."""
    chosen: list[tuple[int, int, float]] = []
    for ci, c in enumerate(clusters):
        if c.anchor_source == "seed":
            drop(c.records, "in_seed_set")  # trained on already, with its known label
        elif c.anchor_source == "annotation" and c.anchor is not None:
            chosen.append((ci, c.anchor, 1.0))
        elif not agg.kept_votes[ci]:
            drop(c.records, "unreliable_user")
        elif agg.posterior[ci].max() < cfg.min_confidence:
            drop(c.records, "low_confidence")
        else:
            j = int(agg.posterior[ci].argmax())
            chosen.append((ci, j, float(agg.posterior[ci, j])))
    return chosen


def _drop_label_issues(clusters: list[_Cluster], chosen: list[tuple[int, int, float]], items: dict[str, object],
                       inp: CurateInput, task: Task, cfg: CurationSection, index: dict[str, int],
                       drop: _Drops) -> tuple[list[tuple[int, int, float]], set[int], float | None]:
    """Drop chosen clusters whose label confident learning finds likely wrong; seed items inform, never go."""
    if not cfg.label_issues or not chosen:
        return chosen, set(), None
    seed_items = [task.decode(b) for b in inp.seed.inputs]
    x = task.vectorize(seed_items + [items[clusters[ci].representative.content_hash] for ci, _, _ in chosen])
    y = np.array([index[lab] for lab in inp.seed.labels] + [j for _, j, _ in chosen], dtype=np.int64)
    may_flag = np.array([False] * len(seed_items) + [clusters[ci].anchor is None for ci, _, _ in chosen])
    issues = find_label_issues(out_of_fold_probs(x, y, len(index)), y, len(index), may_flag)
    flagged = {chosen[i - len(seed_items)][0] for i in np.flatnonzero(issues.flagged)}
    for ci in sorted(flagged):
        drop(clusters[ci].records, "label_issue")
    return ([entry for entry in chosen if entry[0] not in flagged], flagged,
            issues.noise_rate if issues.informative else None)


def _cluster(groups: dict[str, list[LabelledRecord]], items: dict[str, object], inp: CurateInput, task: Task,
             cfg: CurationSection, drop: _Drops) -> list[_Cluster]:
    hashes = list(groups)
    seed_label = dict(zip(inp.seed.hashes, inp.seed.labels))
    index = {lab: j for j, lab in enumerate(inp.labels)}
    if cfg.near_duplicates and hashes:
        golden_items = [task.decode(b) for b in inp.golden.inputs]
        seed_items = [task.decode(b) for b in inp.seed.inputs]
        ids = task.near_duplicate_clusters([items[h] for h in hashes] + golden_items + seed_items)
    else:
        ids = list(range(len(hashes)))  # exact copies only; seed items are matched by hash below
    n, g = len(hashes), len(inp.golden)
    golden_ids = set(ids[n:n + g])
    seed_ids = dict(zip(ids[n + g:], inp.seed.labels))
    by_id: dict[int, _Cluster] = {}
    for i, h in enumerate(hashes):
        if ids[i] in golden_ids:
            drop(groups[h], "near_golden_set")
            continue
        c = by_id.setdefault(ids[i], _Cluster([], []))
        c.hashes.append(h)
        c.records.extend(groups[h])
        lab = seed_label.get(h, seed_ids.get(ids[i]))
        if lab is not None and lab in index:
            c.anchor, c.anchor_source = index[lab], "seed"
    return list(by_id.values())


def _near_merged(clusters: list[_Cluster]) -> int:
    return sum(len(c.hashes) - 1 for c in clusters)


def _snapshot(snapshot_id: str, clusters: list[_Cluster], chosen: list[tuple[int, int, float]],
              labels: tuple[str, ...], verdicts: list[Verdict]) -> Snapshot:
    inputs, out_labels, hashes, confidence, record_ids, user_ids = [], [], [], [], [], []
    for ci, j, conf in chosen:
        c = clusters[ci]
        rep = c.representative
        inputs.append(rep.input)
        out_labels.append(labels[j])
        hashes.append(rep.content_hash)
        confidence.append(conf)
        record_ids.append([r.record_id for r in c.records])
        user_ids.append(sorted({r.user_id for r in c.records}))
        for r in c.records:
            verdicts.append(Verdict(r.record_id, STAGE, True, "kept" if r is rep else "merged_duplicate"))
    return Snapshot(snapshot_id, LabelledSet(inputs, out_labels, hashes), confidence, record_ids, user_ids,
                    {"items": len(out_labels)})


def _queue(clusters: list[_Cluster], probs: np.ndarray, item_votes: list[list[tuple[int, int]]],
           flagged: set[int], class_counts: np.ndarray, limit: int) -> list[QueueItem]:
    open_ = [ci for ci, c in enumerate(clusters) if c.anchor is None]
    if not open_ or limit == 0:
        return []
    ranked = rank(probs[open_], [[lab for _, lab in item_votes[ci]] for ci in open_],
                  np.array([ci in flagged for ci in open_]), class_counts, limit)
    out = []
    for r in ranked:
        rep = clusters[open_[r.index]].representative
        out.append(QueueItem(rep.content_hash, rep.record_id, r.score, r.signals))
    return out

