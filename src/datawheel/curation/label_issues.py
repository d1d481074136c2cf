"""Noisy-label detection by confident learning (Northcutt, Jiang & Chuang, JAIR 2021).

Out-of-fold predicted probabilities come from a simple, well-calibrated model
(multinomial logistic regression on the task's fixed-length vectors), so every
item is judged by a model that never saw its label. Per-class thresholds (the
mean self-confidence of each given class) build the confident joint; it is
calibrated to the label counts and the estimated number of flips from class i
to j is pruned, taking the items whose probability of j most exceeds that of i
("prune by noise rate"). cleanlab implements the same method but is AGPL-3.0,
so it can never be a dependency of this Apache-2.0 project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:  # scikit-learn is imported where it is used: `datawheel init` never needs it
    from sklearn.linear_model import LogisticRegression

#: folds for the out-of-fold probabilities (fewer when a class has fewer members)
FOLDS = 4
#: the out-of-fold model must beat the commonest-class baseline by this much to be trusted
MIN_LIFT = 0.1
#: fewer items than this give per-class thresholds too noisy to act on: nothing is flagged
MIN_ITEMS = 100


@dataclass(frozen=True)
class LabelIssues:
    #: boolean mask over the items: likely wrong label
    flagged: np.ndarray
    #: out-of-fold probabilities [n, k]
    probs: np.ndarray
    #: estimated share of wrong labels (off-diagonal mass of the calibrated confident joint)
    noise_rate: float
    #: accuracy of the out-of-fold predictions against the given labels
    oof_accuracy: float
    #: False when there are too few items, or the out-of-fold model does no better than always
    #: guessing the commonest class: then it cannot tell a wrong label from a right one, and
    #: nothing is flagged
    informative: bool


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Probabilities for each item from a model trained on the other folds.

    Classes with a single member cannot be held out; their items get the
    in-sample fit (so they are never confidently contradicted by an unseen model).
    """
    n = len(y)
    probs = np.full((n, k), 1.0 / k)
    if n == 0 or len(np.unique(y)) < 2:
        return probs
    counts = np.bincount(y, minlength=k)
    folds = int(min(FOLDS, max(2, counts[counts > 0].min())))
    splittable = counts[y] >= folds
    idx = np.flatnonzero(splittable)
    if len(np.unique(y[idx])) >= 2:
        from sklearn.model_selection import StratifiedKFold

        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for train_i, test_i in skf.split(x[idx], y[idx]):
            tr, te = idx[train_i], idx[test_i]
            probs[te] = _fit(x[tr], y[tr], k, seed).predict_proba_full(x[te])
    rest = np.flatnonzero(~splittable)
    if len(rest):
        probs[rest] = _fit(x, y, k, seed).predict_proba_full(x[rest])
    return probs


class _Model:
    def __init__(self, clf: LogisticRegression, k: int) -> None:
        self.clf, self.k = clf, k

    def predict_proba_full(self, x: np.ndarray) -> np.ndarray:
        """Probabilities over all k classes, zero for classes absent from the training folds."""
        out = np.zeros((x.shape[0], self.k))
        out[:, self.clf.classes_] = self.clf.predict_proba(x)
        return out


def _fit(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> _Model:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=300, random_state=seed)
    # One BLAS thread: beside torch's OpenMP pool, more threads contend and a 0.05 s fit takes 2.5 s.
    with threadpool_limits(1):
        clf.fit(x, y)
    return _Model(clf, k)


def confident_joint(probs: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """C[i, j]: items labelled i whose probability of j reaches class j's threshold (argmax among those)."""
    counts = np.bincount(y, minlength=k)
    thresholds = np.array([probs[y == j, j].mean() if counts[j] else 1.0 for j in range(k)])
    above = probs >= thresholds - 1e-12  # [n, k]
    masked = np.where(above, probs, -1.0)
    best = masked.argmax(axis=1)
    confident = above.any(axis=1)
    joint = np.zeros((k, k))
    np.add.at(joint, (y[confident], best[confident]), 1.0)
    return joint


def find_label_issues(probs: np.ndarray, y: np.ndarray, k: int, candidates: np.ndarray | None = None) -> LabelIssues:
    """Flag the estimated number of wrong labels per (given, true) pair.

    ``candidates`` restricts which items may be flagged (known-good anchors
    still inform the thresholds but are never flagged).
    """
    n = len(y)
    flagged = np.zeros(n, dtype=bool)
    if n == 0:
        return LabelIssues(flagged, probs, 0.0, 0.0, False)
    predicted = probs.argmax(axis=1)
    accuracy = float((predicted == y).mean())
    if n < MIN_ITEMS or accuracy < np.bincount(y).max() / n + MIN_LIFT:
        return LabelIssues(flagged, probs, 0.0, accuracy, False)
    allowed = np.ones(n, dtype=bool) if candidates is None else candidates.astype(bool)
    joint = confident_joint(probs, y, k)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    row = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(joint, row, out=np.zeros_like(joint), where=row > 0) * counts[:, None]
    noise_rate = float((calibrated.sum() - np.trace(calibrated)) / n)
    for i in range(k):
        members = np.flatnonzero((y == i) & allowed)
        for j in range(k):
            m = round(calibrated[i, j])
            if i == j or m == 0 or not len(members):
                continue
            margin = probs[members, j] - probs[members, i]
            order = members[np.argsort(-margin, kind="stable")][:m]
            flagged[order] = True
    # An item the model agrees with is never called mislabelled (as cleanlab does).
    flagged &= predicted != y
    return LabelIssues(flagged, probs, noise_rate, accuracy, True)
