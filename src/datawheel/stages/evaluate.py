"""Evaluation: score a model on the frozen golden set, item by item, and summarise with uncertainty.

Per-item results (:class:`Scores`) are kept, not only the summary, because the
gate compares two models on the *same* items (a paired test) and slices of the
golden set are judged on their own. The golden set is never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datawheel.artifacts import LabelledSet
from datawheel.stages.significance import bootstrap_ci, expected_calibration_error
from datawheel.tasks.base import Predictor, Task, predict_proba


@dataclass(frozen=True)
class Scores:
    """One model's class probabilities on every golden item, beside the true class indices."""

    probs: np.ndarray  # [N, n_classes]
    y: np.ndarray  # [N]

    @property
    def right(self) -> np.ndarray:
        return self.probs.argmax(1) == self.y


def score(task: Task, module: Predictor, model_name: str, data: LabelledSet, labels: tuple[str, ...]) -> Scores:
    index = {lab: j for j, lab in enumerate(labels)}
    features = task.featurize([task.decode(b) for b in data.inputs], model_name, cache=True)
    return Scores(predict_proba(module, features).numpy(),
                  np.array([index[lab] for lab in data.labels], dtype=np.int64))


def metrics(scores: Scores, labels: tuple[str, ...], meta: list[dict[str, str]] | None) -> dict:
    """Golden-set metrics with a bootstrap 95 % interval on accuracy, the calibration error and, where the
    golden set carries metadata, accuracy per slice."""
    out = classification_metrics(scores.y, scores.probs.argmax(1), labels)
    lo, hi = bootstrap_ci(scores.right.astype(np.float64))
    out.update({"accuracy_ci95": [round(lo, 6), round(hi, 6)],
                "ece": round(expected_calibration_error(scores.probs, scores.y), 6)})
    if meta is not None:
        out["slices"] = slice_accuracy(scores.right, meta)
    return out


def evaluate(task: Task, module: Predictor, model_name: str, golden: LabelledSet,
             labels: tuple[str, ...]) -> dict:
    """:func:`score` then :func:`metrics`, for a caller that needs only the summary."""
    return metrics(score(task, module, model_name, golden, labels), labels, golden.meta)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_recall": {labels[j]: float(recall[j]) for j in range(k) if present[j]},
        "n": int(cm.sum()),
    }


def slice_accuracy(right: np.ndarray, meta: list[dict[str, str]]) -> dict[str, dict]:
    """Accuracy per ``key=value`` slice of the golden set, e.g. ``locale=zh-CN``."""
    members: dict[str, list[int]] = {}
    for i, m in enumerate(meta):
        for key, value in m.items():
            members.setdefault(f"{key}={value}", []).append(i)
    return {name: {"n": len(idx), "accuracy": round(float(right[idx].mean()), 6)}
            for name, idx in sorted(members.items())}
