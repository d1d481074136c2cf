"""Curation: from noisy, repeated user labels to one trustworthy label per distinct item.

Users' corrections are the wheel's fuel and they are noisy: some users are
careless, a few are wrong on purpose, the same item arrives many times. So:

1. inputs that carry no signal are dropped (``blank_input``, ``invalid_input``);
2. exact duplicates (same content hash) become one item whose votes are pooled;
3. items that are in the golden set are dropped (``in_golden_set``): training on
   the test set would make every later gate decision a lie;
4. labels are aggregated Dawid–Skene style: each user gets a confusion matrix,
   estimated by EM from agreement with the other users, with the known labels
   of seed/golden items (anchors), and with the champion's prediction as a soft
   prior. Users whose estimated accuracy is below ``min_user_reliability`` are
   excluded, so a coordinated minority giving a fixed wrong mapping cannot move
   the model; items whose aggregated label is not confident enough are dropped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from datawheel.artifacts import LabelledRecord, LabelledSet, Snapshot, Verdict, Vote

STAGE = "curate"
MIN_USER_RELIABILITY = 0.5
RELIABILITY_PRIOR = 0.8
RELIABILITY_PSEUDO_VOTES = 4.0


@dataclass(frozen=True)
class CurateInput:
    records: list[LabelledRecord]
    votes: list[Vote]
    labels: tuple[str, ...]
    #: content hash -> known true label, from the seed and golden sets
    anchors: Mapping[str, str]
    #: content hashes of the golden set (never trained on)
    golden: frozenset[str]
    #: content hash -> champion's class probabilities (same order as labels)
    prior: Mapping[str, np.ndarray]


def _dawid_skene(item_votes: list[list[tuple[int, int]]], n_users: int, k: int, prior: np.ndarray,
                 anchored: dict[int, int], iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (item posteriors [n_items, k], user confusion matrices [n_users, k, k]).

    A diagonal-heavy Dirichlet prior on each confusion row keeps users with few
    votes near "mostly right" until the data says otherwise.
    """
    if not item_votes:
        return np.zeros((0, k)), np.zeros((n_users, k, k))
    flat = [(i, u, lab) for i, votes in enumerate(item_votes) for u, lab in votes]
    ii, uu, ll = (np.array(col, dtype=np.int64) for col in zip(*flat)) if flat else (np.zeros(0, np.int64),) * 3
    anchor_i = np.array(list(anchored), dtype=np.int64)
    anchor_post = np.eye(k)[np.array(list(anchored.values()), dtype=np.int64)] if anchored else None
    log_prior = np.log(np.clip(prior, 1e-6, 1.0))
    # Start from the model prior plus the raw vote counts.
    post = np.array(prior, dtype=np.float64)
    np.add.at(post, (ii, ll), 1.0)
    if anchored:
        post[anchor_i] = anchor_post
    post /= post.sum(axis=1, keepdims=True)
    conf = np.zeros((n_users, k, k))
    for _ in range(iterations):
        # M-step: per-user confusion counts (true class x given label) plus pseudo-counts.
        conf[:] = 0.2 / k
        conf[:, np.arange(k), np.arange(k)] += 2.0
        conf_t = conf.transpose(0, 2, 1)  # a view: [user, given label, true class]
        np.add.at(conf_t, (uu, ll), post[ii])
        conf /= conf.sum(axis=2, keepdims=True)
        class_prior = np.clip(post.mean(axis=0), 1e-3, None)
        # E-step: log posterior = prior terms + each vote's log-likelihood under its user's confusion.
        logp = log_prior + np.log(class_prior / class_prior.sum())
        np.add.at(logp, ii, np.log(conf)[uu, :, ll])
        logp -= logp.max(axis=1, keepdims=True)
        new = np.exp(logp)
        new /= new.sum(axis=1, keepdims=True)
        if anchored:
            new[anchor_i] = anchor_post
        converged = np.abs(new - post).max() < 1e-6
        post = new
        if converged:
            break
    return post, conf


def curate(inp: CurateInput, *, decode: Callable[[bytes], object], is_blank: Callable[[object], bool],
           min_confidence: float, em_iterations: int, model_prior_weight: float,
           snapshot_id: str) -> tuple[Snapshot, list[Verdict]]:
    k = len(inp.labels)
    index = {lab: j for j, lab in enumerate(inp.labels)}
    verdicts: list[Verdict] = []
    dropped: dict[str, int] = defaultdict(int)

    def drop(record_id: str, reason: str) -> None:
        verdicts.append(Verdict(record_id, STAGE, False, reason))
        dropped[reason] += 1

    # 1-3: validity, golden leakage, grouping of exact duplicates.
    groups: dict[str, list[LabelledRecord]] = {}
    for rec in inp.records:
        try:
            item = decode(rec.input)
        except (ValueError, UnicodeDecodeError):
            drop(rec.record_id, "invalid_input")
            continue
        if is_blank(item):
            drop(rec.record_id, "blank_input")
        elif rec.content_hash in inp.golden:
            drop(rec.record_id, "in_golden_set")
        else:
            groups.setdefault(rec.content_hash, []).append(rec)

    hashes = list(groups)
    pos = {h: i for i, h in enumerate(hashes)}
    owner = {r.record_id: r.content_hash for recs in groups.values() for r in recs}
    users = sorted({v.user_id for v in inp.votes if v.record_id in owner})
    uidx = {u: j for j, u in enumerate(users)}
    item_votes: list[list[tuple[int, int]]] = [[] for _ in hashes]
    for v in inp.votes:
        if v.record_id in owner and v.label in index:
            item_votes[pos[owner[v.record_id]]].append((uidx[v.user_id], index[v.label]))

    uniform = np.full(k, 1.0 / k)
    prior = np.array([inp.prior.get(h, uniform) for h in hashes]).reshape(len(hashes), k)
    prior = prior ** model_prior_weight
    prior /= prior.sum(axis=1, keepdims=True)
    anchored = {pos[h]: index[lab] for h, lab in inp.anchors.items() if h in pos and lab in index}

    # 4: aggregate, exclude unreliable users, aggregate again without them.
    post, conf = _dawid_skene(item_votes, len(users), k, prior, anchored, em_iterations)
    reliability = _reliability(item_votes, post, len(users))
    trusted = {u for u in range(len(users)) if reliability[u] >= MIN_USER_RELIABILITY}
    if len(trusted) < len(users):
        kept_votes = [[(u, lab) for u, lab in votes if u in trusted] for votes in item_votes]
        post, _ = _dawid_skene(kept_votes, len(users), k, prior, anchored, em_iterations)
    else:
        kept_votes = item_votes

    inputs, labels, out_hashes, confidence, record_ids, user_ids = [], [], [], [], [], []
    for i, h in enumerate(hashes):
        recs = groups[h]
        if h in inp.anchors:
            # Seed items are trained on already with their known label.
            for r in recs:
                drop(r.record_id, "in_seed_set")
            continue
        if not kept_votes[i]:
            for r in recs:
                drop(r.record_id, "unreliable_user")
            continue
        j = int(post[i].argmax())
        if post[i, j] < min_confidence:
            for r in recs:
                drop(r.record_id, "low_confidence")
            continue
        inputs.append(recs[0].input)
        labels.append(inp.labels[j])
        out_hashes.append(h)
        confidence.append(float(post[i, j]))
        record_ids.append([r.record_id for r in recs])
        user_ids.append(sorted({r.user_id for r in recs}))
        verdicts.append(Verdict(recs[0].record_id, STAGE, True, "kept"))
        for r in recs[1:]:
            verdicts.append(Verdict(r.record_id, STAGE, True, "merged_duplicate"))

    stats = {
        "items": len(labels),
        "dropped": dict(sorted(dropped.items())),
        "duplicates_merged": sum(len(r) - 1 for r in record_ids),
        "users": len(users),
        "users_excluded": len(users) - len(trusted),
        "user_reliability": {u: round(float(reliability[uidx[u]]), 4) for u in users},
        "per_label": {lab: labels.count(lab) for lab in inp.labels},
    }
    snapshot = Snapshot(snapshot_id, LabelledSet(inputs, labels, out_hashes), confidence, record_ids,
                        user_ids, stats)
    return snapshot, verdicts


def _reliability(item_votes: list[list[tuple[int, int]]], post: np.ndarray, n_users: int) -> np.ndarray:
    """A user's expected accuracy: the posterior mass of the labels they gave.

    Shrunk towards "mostly right" by a few pseudo-votes, so one unlucky
    disagreement does not exclude a newcomer; a consistent liar still sinks.
    """
    hit = np.full(n_users, RELIABILITY_PRIOR * RELIABILITY_PSEUDO_VOTES)
    count = np.full(n_users, RELIABILITY_PSEUDO_VOTES)
    for i, votes in enumerate(item_votes):
        for u, lab in votes:
            hit[u] += post[i, lab]
            count[u] += 1
    return hit / count
