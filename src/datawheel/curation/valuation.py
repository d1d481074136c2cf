"""What each contributor's labels are worth: KNN-Shapley on the model's embeddings, summed per user.

Counting labels rewards volume: a careless user who labels a thousand items at random would top a
leaderboard of counts while making the data worse. The Shapley value of a training point is its
average marginal contribution to a utility over every order in which the points could have been
added; for a K-nearest-neighbour classifier it has an exact closed form (Jia et al., "Efficient
task-specific data valuation for nearest neighbor algorithms", VLDB 2019) computed in
O(N log N) per test point. Here the utility is the KNN's accuracy on the golden set, in the space
of the serving model's last hidden layer, so a label is worth what it adds to answering held-out
items right: a right label near the items of its class is worth a lot, a wrong one is worth less than
nothing. Shapley values add up (efficiency), so a user's value is the sum over their labels, and the
part of it earned on the golden items of class ``c`` is how many accuracy points on ``c`` their labels
account for.

Only what the consent check kept is valued (the caller passes those records), items that are in the
golden set are left out (they would be judged on themselves), and the caller stores values per user
id, which never leaves the store: faces show keyed pseudonyms.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import nn

from datawheel.artifacts import LabelledRecord, LabelledSet, Vote
from datawheel.tasks.base import Task

METHOD = "knn-shapley"
#: neighbours in the valuing classifier; small K values a label by its immediate neighbourhood
DEFAULT_K = 10
#: golden items used as test points at most (a seeded sample beyond): cost grows with their number
MAX_TEST_POINTS = 1000


def knn_shapley(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                k: int = DEFAULT_K) -> np.ndarray:
    """Exact Shapley values [n_test, n_train] of each training point for an unweighted KNN's accuracy.

    Row ``t`` holds every training point's value for test point ``t``; each row sums to the KNN's utility
    on that point with all the data (the efficiency property the per-class attribution relies on).
    Distances are Euclidean; ties in distance are broken by index so the result is deterministic.
    """
    n_train = len(train_x)
    if n_train == 0 or len(test_x) == 0:
        return np.zeros((len(test_x), n_train))
    dist = (np.square(test_x).sum(1)[:, None] - 2.0 * test_x @ train_x.T + np.square(train_x).sum(1)[None, :])
    order = np.argsort(dist, axis=1, kind="stable")  # [n_test, n_train], nearest first
    match = (train_y[order] == test_y[:, None]).astype(np.float64)
    ranks = np.arange(1, n_train)  # i = 1 .. N-1 (1-indexed position in the sorted order)
    # s_i = s_{i+1} + (m_i - m_{i+1}) / K * min(K, i) / i, and s_N = m_N / N: a reverse cumulative sum.
    steps = (match[:, :-1] - match[:, 1:]) * (np.minimum(k, ranks) / (k * ranks))[None, :]
    sorted_values = np.empty_like(match)
    sorted_values[:, -1] = match[:, -1] / n_train
    if n_train > 1:
        sorted_values[:, :-1] = sorted_values[:, -1:] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
    values = np.empty_like(sorted_values)
    np.put_along_axis(values, order, sorted_values, axis=1)
    return values


def embed(network: nn.Module, features: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """The input of the network's last linear layer: the space its decision is linear in.

    The MLP, the CNN and the MiniLM heads end in an ``nn.Linear``, so this needs nothing model-specific. A
    model that is linear all the way (the text ``tfidf`` model: a sparse weight table over hashed n-grams)
    has no hidden layer; its class scores are then the embedding. Rows are L2-normalized, so distances
    compare directions, not the activations' scale.
    """
    last = [m for m in network.modules() if isinstance(m, nn.Linear)]
    caught: list[torch.Tensor] = []
    hook = (last[-1].register_forward_hook(lambda _m, args, _out: caught.append(args[0].detach().flatten(1)))
            if last else network.register_forward_hook(lambda _m, _args, out: caught.append(out.detach().flatten(1))))
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(features), batch_size):
                network(features[start:start + batch_size])
    finally:
        hook.remove()
        network.train(was_training)
    out = torch.cat(caught).double().numpy() if caught else np.zeros((0, 0))
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Points:
    """The labelled points being valued: one per vote, owned by the user who gave the label."""

    inputs: list[bytes]
    labels: list[str]
    owners: list[str]


def votes_as_points(records: Sequence[LabelledRecord], votes: Sequence[Vote], exclude_hashes: set[str]) -> Points:
    """Each vote on a kept record, with the input it labels; items in ``exclude_hashes`` are left out."""
    by_id = {r.record_id: r for r in records if r.content_hash not in exclude_hashes}
    kept = [(by_id[v.record_id].input, v.label, v.user_id) for v in votes if v.record_id in by_id]
    return Points([i for i, _, _ in kept], [lab for _, lab, _ in kept], [u for _, _, u in kept])


def _test_sample(golden: LabelledSet, limit: int) -> list[int]:
    if len(golden) <= limit:
        return list(range(len(golden)))
    return sorted(np.random.default_rng(0).choice(len(golden), size=limit, replace=False).tolist())


def value_contributors(task: Task, network: nn.Module, model_name: str, records: Sequence[LabelledRecord],
                       votes: Sequence[Vote], golden: LabelledSet, labels: Sequence[str],
                       k: int = DEFAULT_K) -> dict[str, Any]:
    """Per user: the accuracy points (on the golden set, of a KNN over ``network``'s embeddings) their labels
    account for, overall and per class; plus what the computation cost.

    ``records`` must be what the consent check kept: a user who did not consent is never valued.
    """
    started = time.perf_counter()
    points = votes_as_points(records, votes, set(golden.hashes))
    test_idx = _test_sample(golden, MAX_TEST_POINTS)
    users: dict[str, dict[str, Any]] = {}
    if points.inputs and test_idx:
        index = {lab: i for i, lab in enumerate(labels)}
        train_x = embed(network, task.featurize([task.decode(b) for b in points.inputs], model_name, cache=True))
        test_x = embed(network, task.featurize([task.decode(golden.inputs[i]) for i in test_idx], model_name,
                                               cache=True))
        test_y = np.array([index[golden.labels[i]] for i in test_idx])
        owners = sorted(set(points.owners))
        column = {o: j for j, o in enumerate(owners)}
        owner_of = [column[o] for o in points.owners]
        per_user = _per_user_per_test(train_x, np.array([index[lab] for lab in points.labels]), test_x, test_y,
                                      owner_of, len(owners), k)
        users = _summarise(per_user, owners, np.bincount(owner_of, minlength=len(owners)), test_y, labels)
    return {"method": METHOD, "k": k, "embedding": f"{model_name}: input of the last linear layer",
            "points": len(points.inputs), "test_points": len(test_idx), "users": users,
            "seconds": round(time.perf_counter() - started, 3)}


def _per_user_per_test(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       owner_of: list[int], n_users: int, k: int, chunk: int = 64) -> np.ndarray:
    """[n_test, n_users]: each user's summed value per golden item, a chunk of golden items at a time, so
    memory stays at ``chunk x n_train`` however many golden items there are."""
    owner = sparse.csr_matrix((np.ones(len(owner_of)), (np.arange(len(owner_of)), owner_of)),
                              shape=(len(owner_of), n_users))
    out = np.zeros((len(test_x), n_users))
    for start in range(0, len(test_x), chunk):
        values = knn_shapley(train_x, train_y, test_x[start:start + chunk], test_y[start:start + chunk], k)
        out[start:start + chunk] = np.asarray(owner.T.dot(values.T).T)
    return out


def _summarise(per_user: np.ndarray, owners: list[str], counts: np.ndarray, test_y: np.ndarray,
               labels: Sequence[str]) -> dict[str, Any]:
    """Each user's value as accuracy points (x100), overall and per golden class, and how many labels."""
    per_class_n = np.bincount(test_y, minlength=len(labels))
    out: dict[str, Any] = {}
    for j, owner in enumerate(owners):
        by_class = np.bincount(test_y, weights=per_user[:, j], minlength=len(labels))
        out[owner] = {"value": round(float(per_user[:, j].mean()) * 100, 4), "points": int(counts[j]),
                      "per_class": {labels[c]: round(float(by_class[c] / per_class_n[c]) * 100, 4)
                                    for c in range(len(labels)) if per_class_n[c]}}
    return out
