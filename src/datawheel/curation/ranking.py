"""Which items an annotator's next minute is worth most on (active learning).

Four signals, each in [0, 1], combined with fixed weights so the order can be
explained item by item: the model's uncertainty (one minus the margin between
its two most likely classes), disagreement between the users who labelled the
item, a confident-learning label-issue flag, and class balance (items that look
like a rare class in the current snapshot come first, so a skewed dataset is
evened out rather than reinforced).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHTS = {"uncertainty": 0.4, "disagreement": 0.25, "label_issue": 0.25, "class_balance": 0.1}


@dataclass(frozen=True)
class Ranked:
    index: int
    score: float
    signals: dict[str, float]


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): 0 for a sure model, 1 for a coin toss between two classes."""
    if probs.shape[1] < 2:
        return np.zeros(len(probs))
    top = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top[:, 1] - top[:, 0])


def disagreement(label_votes: list[list[int]]) -> np.ndarray:
    """Share of an item's votes that differ from its most common label (0 with fewer than two votes)."""
    out = np.zeros(len(label_votes))
    for i, votes in enumerate(label_votes):
        if len(votes) >= 2:
            out[i] = 1.0 - np.bincount(votes).max() / len(votes)
    return np.clip(out * 2.0, 0.0, 1.0)  # an even split between two labels is full disagreement


def class_balance(guess: np.ndarray, class_counts: np.ndarray) -> np.ndarray:
    """1 for an item whose likely class is the rarest in the snapshot, 0 for the most common."""
    counts = class_counts.astype(np.float64)
    spread = counts.max() - counts.min()
    if spread <= 0:
        return np.zeros(len(guess))
    return (counts.max() - counts[guess]) / spread


def rank(probs: np.ndarray, label_votes: list[list[int]], flagged: np.ndarray, class_counts: np.ndarray,
         limit: int) -> list[Ranked]:
    """The ``limit`` most valuable items, best first; ties keep input order."""
    signals = {
        "uncertainty": uncertainty(probs),
        "disagreement": disagreement(label_votes),
        "label_issue": flagged.astype(np.float64),
        "class_balance": class_balance(probs.argmax(axis=1), class_counts),
    }
    score: np.ndarray = np.sum([WEIGHTS[name] * values for name, values in signals.items()], axis=0)
    order = np.argsort(-score, kind="stable")[:limit]
    return [Ranked(int(i), round(float(score[i]), 6), {n: round(float(v[i]), 6) for n, v in signals.items()})
            for i in order]
