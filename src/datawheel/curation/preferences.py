"""One target answer per prompt from many users' corrections and thumbs, weighted by how reliable each user is.

Users disagree, some carelessly and some on purpose (a coordinated group can
push one wrong answer to many prompts). Each vote (a correction, an answer rated
up, the answer picked of two) names a text; votes are compared after
normalization. A user's reliability is how often their votes agree with the
weighted consensus of *other* users on the same prompt, and with a trusted
reference where one exists (the golden or seed answer of a near-identical
prompt), with a Beta(1, 1) prior so one vote proves little. Consensus and
reliability are refined together for a few rounds (as in Dawid–Skene); users
below ``min_reliability`` are left out, so a group that agrees only with itself
and contradicts the references loses its vote everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ROUNDS = 5
#: votes that contradict a trusted reference weigh this many ordinary disagreements
REFERENCE_WEIGHT = 3.0


@dataclass(frozen=True)
class Vote:
    group: int
    user_id: str
    text: str  # the answer the user stands behind
    kind: str  # correction | rated_up | chosen


@dataclass
class Choice:
    """The target chosen for one prompt group, with the weight behind it and everyone who voted for it."""

    text: str
    weight: float
    voters: set[str] = field(default_factory=set)


def reliability(votes: list[Vote], normalize: Callable[[str], str], references: Mapping[int, str],
                rounds: int = ROUNDS) -> dict[str, float]:
    """Each user's estimated share of votes that are right (posterior mean under a Beta(1, 1) prior)."""
    weights = {v.user_id: 1.0 for v in votes}
    by_group: dict[int, list[Vote]] = defaultdict(list)
    for v in votes:
        by_group[v.group].append(v)
    for _ in range(rounds):
        agree: dict[str, float] = defaultdict(float)
        total: dict[str, float] = defaultdict(float)
        for group, group_votes in by_group.items():
            ref = references.get(group)
            for v in group_votes:
                if ref is not None:
                    hit = normalize(v.text) == normalize(ref)
                    agree[v.user_id] += REFERENCE_WEIGHT * hit
                    total[v.user_id] += REFERENCE_WEIGHT
                others: dict[str, float] = defaultdict(float)
                for o in group_votes:
                    if o.user_id != v.user_id:
                        others[normalize(o.text)] += weights[o.user_id]
                if others:
                    best, best_weight = max(others.items(), key=lambda kv: kv[1])
                    share = best_weight / sum(others.values())
                    agree[v.user_id] += share * (normalize(v.text) == best)
                    total[v.user_id] += share
        weights = {u: (agree[u] + 1) / (total[u] + 2) for u in weights}
    return weights


def choose_targets(votes: list[Vote], normalize: Callable[[str], str], weights: Mapping[str, float],
                   min_reliability: float) -> dict[int, Choice]:
    """Per group, the normalized text with the most reliable weight; the users left out never count."""
    tallies: dict[int, dict[str, Choice]] = defaultdict(dict)
    for v in votes:
        w = weights.get(v.user_id, 0.0)
        if w < min_reliability:
            continue
        key = normalize(v.text)
        choice = tallies[v.group].setdefault(key, Choice(v.text, 0.0))
        choice.weight += w
        choice.voters.add(v.user_id)
    return {g: max(options.values(), key=lambda c: (c.weight, len(c.voters), c.text))
            for g, options in tallies.items() if options}
