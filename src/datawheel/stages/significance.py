"""Is a difference between two models real? Bootstrap intervals, McNemar's exact test, calibration.

A golden set of a few hundred items moves by one item per ~0.3 points, so a
candidate that "gains 0.3 points" may have gained nothing. Both models answer
the same items, so the right test is paired: McNemar's exact test looks only at
the items exactly one of them gets right. Intervals are percentile bootstraps
over items, seeded, so a report can be reproduced.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 2000


def bootstrap_ci(correct: np.ndarray, level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a 0/1 vector (accuracy)."""
    n = len(correct)
    if n == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, n, size=(samples, n))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def mcnemar_exact(candidate_correct: np.ndarray, champion_correct: np.ndarray) -> dict:
    """Two-sided exact McNemar test on paired outcomes.

    ``only_candidate``/``only_champion`` count the discordant items; under the
    null hypothesis each discordant item is a fair coin.
    """
    only_cand = int((candidate_correct & ~champion_correct).sum())
    only_champ = int((~candidate_correct & champion_correct).sum())
    n = only_cand + only_champ
    from scipy.stats import binomtest  # where it is used: evaluating model v1 at `init` never needs SciPy

    p = 1.0 if n == 0 else float(binomtest(only_cand, n, 0.5, alternative="two-sided").pvalue)
    return {"only_candidate": only_cand, "only_champion": only_champ, "p_value": p}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by bin size."""
    if len(y) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(total)


def paired_bootstrap(candidate: np.ndarray, champion: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> dict:
    """Two-sided paired bootstrap test on per-item scores in [0, 1] (chrF), where McNemar needs 0/1 outcomes.

    Items are resampled together, so an item hard for both models weighs on neither side.
    """
    n = len(candidate)
    if n == 0:
        return {"mean_difference": 0.0, "p_value": 1.0}
    diff = candidate.astype(np.float64) - champion.astype(np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(samples, n))].mean(axis=1)
    p = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    return {"mean_difference": float(diff.mean()), "p_value": p if diff.any() else 1.0}
