"""What the benchmark scripts share: one stratified train/test split, so every run sees the same data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from datawheel.artifacts import LabelledSet
from datawheel.tasks.base import Task


def stratified_split(task: Task, items: Sequence[Any], labels: Sequence[str], seed: int,
                     limit: int | None = None) -> tuple[LabelledSet, LabelledSet]:
    """80/20 per label after a seeded shuffle (of at most ``limit`` items), as canonical labelled sets."""
    order = np.random.default_rng(seed).permutation(len(items))[:limit]
    train_idx: list[int] = []
    test_idx: list[int] = []
    for lab in sorted(set(labels)):
        idx = [int(i) for i in order if labels[i] == lab]
        cut = int(len(idx) * 0.8)
        train_idx += idx[:cut]
        test_idx += idx[cut:]

    def as_set(idx: list[int]) -> LabelledSet:
        return LabelledSet([task.encode(items[i]) for i in idx], [labels[i] for i in idx],
                           [task.content_hash(items[i]) for i in idx])

    return as_set(sorted(train_idx)), as_set(sorted(test_idx))
