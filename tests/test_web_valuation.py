"""KNN-Shapley against the definition, and contributor values as the store keeps and forgets them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from datawheel.artifacts import LabelledRecord, Vote
from datawheel.curation.valuation import embed, knn_shapley, votes_as_points
from datawheel.store.db import utcnow


def _knn_utility(subset: list[int], train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray, y: int, k: int) -> float:
    if not subset:
        return 0.0
    dist = np.square(train_x[subset] - x).sum(1)
    nearest = [subset[i] for i in np.argsort(dist, kind="stable")[:k]]
    return sum(train_y[j] == y for j in nearest) / k


def _brute_shapley(train_x, train_y, x, y, k) -> np.ndarray:
    """The definition: the average marginal contribution over every order of the training points."""
    n = len(train_x)
    values = np.zeros(n)
    for perm in itertools.permutations(range(n)):
        before: list[int] = []
        for j in perm:
            gain = _knn_utility([*before, j], train_x, train_y, x, y, k) - _knn_utility(before, train_x, train_y,
                                                                                         x, y, k)
            values[j] += gain
            before.append(j)
    return values / math.factorial(n)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_knn_shapley_equals_the_definition(k):
    rng = np.random.default_rng(k)
    train_x, train_y = rng.normal(size=(6, 2)), rng.integers(0, 2, size=6)
    test_x, test_y = rng.normal(size=(3, 2)), rng.integers(0, 2, size=3)
    fast = knn_shapley(train_x, train_y, test_x, test_y, k)
    for t in range(3):
        np.testing.assert_allclose(fast[t], _brute_shapley(train_x, train_y, test_x[t], test_y[t], k), atol=1e-12)
        # efficiency: the values add up to the utility of all the data
        assert fast[t].sum() == pytest.approx(_knn_utility(list(range(6)), train_x, train_y, test_x[t],
                                                           test_y[t], k))


def test_a_wrong_label_is_worth_less_than_a_right_one():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    train_y = np.repeat([0, 1], 20)
    train_x = centres[train_y] + rng.normal(scale=0.5, size=(40, 2))
    noisy = train_y.copy()
    noisy[:5] = 1  # five points of class 0 labelled 1
    test_y = np.repeat([0, 1], 30)
    test_x = centres[test_y] + rng.normal(scale=0.5, size=(60, 2))
    values = knn_shapley(train_x, noisy, test_x, test_y, k=5).sum(0)
    assert values[:5].mean() < 0 < values[5:].mean()
    assert values[:5].max() < np.median(values[5:])


def test_embed_takes_the_input_of_the_last_linear_layer():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(7, 4)
    hidden = torch.relu(net[0](x)).detach().double().numpy()
    expected = hidden / np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(embed(net, x, batch_size=3), expected, atol=1e-6)


def test_points_are_votes_on_kept_records_outside_the_golden_set():
    now = utcnow()
    recs = [LabelledRecord("r1", "u1", "contribution", "h1", b"a", True, True, now),
            LabelledRecord("r2", "u2", "interaction", "golden", b"b", True, True, now)]
    votes = [Vote("r1", "u1", "3", "contribution"), Vote("r2", "u2", "4", "correction"),
             Vote("r3", "u3", "5", "correction")]  # r3: not kept (no consent)
    points = votes_as_points(recs, votes, {"golden"})
    assert (points.inputs, points.labels, points.owners) == ([b"a"], ["3"], ["u1"])


def test_values_are_replaced_per_cycle_hidden_without_consent_and_erased(ws):
    store = ws.store
    for user in ("helpful-1", "careless-1", "private-1"):
        store.set_consent(user, {"training": True})
    valuation = {"method": "knn-shapley", "seconds": 0.1, "users": {
        "helpful-1": {"value": 2.5, "points": 10, "per_class": {"7": 1.2}},
        "careless-1": {"value": -0.4, "points": 30, "per_class": {"7": -0.1}},
        "private-1": {"value": 9.0, "points": 1, "per_class": {}},
        "gone-1": {"value": 1.0, "points": 1, "per_class": {}}}}  # not held any more: never written back
    summary = store.save_contributor_values("c1", valuation)
    assert "users" not in summary and summary["users_valued"] == 3
    store.set_consent("private-1", {"training": False})
    assert [r["user_id"] for r in store.contributor_ranking()] == ["helpful-1", "careless-1"]
    assert store.contributor_value("helpful-1")["rank"] == 1
    assert store.contributor_value("private-1") is None
    ws.erase_user("helpful-1")
    assert [r["user_id"] for r in store.contributor_ranking()] == ["careless-1"]
    assert store.contributor_value("helpful-1") is None


def test_a_cycle_values_contributors_and_reports_the_cost(ws, splits):
    """Honest labels outrank random ones after a real cycle; the report states the method and its seconds."""
    from datawheel.wheel.cycle import run_cycle

    rng = np.random.default_rng(1)
    task = ws.task
    for image, truth in splits.pool[:120]:
        for user, label in (("honest-1", truth), ("careless-1", str(rng.integers(0, 10)))):
            item = task.parse({"pixels": image.tolist()})
            ws.store.add_record(user_id=user, kind="contribution", input=task.encode(item),
                                content_hash=task.content_hash(item), consent={"training": True},
                                label=label, predicted_label=None, model_name=None, model_version=None, meta=None,
                                require=None)
    report = run_cycle(ws, ws.store.start_cycle("test"))
    valuation = report["valuation"]
    assert valuation["method"] == "knn-shapley" and valuation["seconds"] > 0 and valuation["users_valued"] == 2
    ranking = ws.store.contributor_ranking()
    assert [r["user_id"] for r in ranking] == ["honest-1", "careless-1"]
    assert ranking[0]["value"] > ranking[1]["value"]


def test_per_user_sums_are_the_same_chunk_by_chunk():
    from datawheel.curation.valuation import _per_user_per_test

    rng = np.random.default_rng(3)
    train_x, train_y = rng.normal(size=(50, 4)), rng.integers(0, 3, size=50)
    test_x, test_y = rng.normal(size=(23, 4)), rng.integers(0, 3, size=23)
    owner_of = rng.integers(0, 4, size=50).tolist()
    full = knn_shapley(train_x, train_y, test_x, test_y, k=5)
    expected = np.stack([full[:, [i for i, o in enumerate(owner_of) if o == u]].sum(1) for u in range(4)], axis=1)
    np.testing.assert_allclose(_per_user_per_test(train_x, train_y, test_x, test_y, owner_of, 4, 5, chunk=7),
                               expected, atol=1e-12)
