"""Simulated user populations that drive a workspace through its HTTP API.

The demo, the tests and the benchmarks use the same population kinds: honest
users who make the odd mistake, careless users who often label at random,
spammers who always do, a coordinated adversarial group with one fixed wrong
mapping, and users who never consent to training. Shares are configurable
(:func:`population`, :func:`parse_population`); randomness is injected, so a
run is repeatable. Everything goes through the HTTP API, so any workspace can
be driven.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datawheel.client import Client, ClientError


@dataclass(frozen=True)
class Profile:
    name: str
    share: float
    #: chance a label is replaced by a uniformly random one
    error_rate: float = 0.0
    #: consistently give ``mapping[true_label]`` instead of the truth (adversarial)
    adversarial: bool = False
    consent: bool = True
    #: chance that an interaction is a donated, labelled example rather than a prediction
    donate_rate: float = 0.1


#: how each kind of user behaves; a population only chooses their shares
KINDS: dict[str, dict[str, Any]] = {
    "honest": {"error_rate": 0.02},
    "careless": {"error_rate": 0.30},
    "spammer": {"error_rate": 1.0},
    "adversarial": {"adversarial": True},
    "nonconsenting": {"error_rate": 0.02, "consent": False},
}


def population(**shares: float) -> list[Profile]:
    """Profiles from shares per kind, e.g. ``population(honest=0.7, careless=0.2, adversarial=0.1)``."""
    unknown = set(shares) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown user kind(s) {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
    if any(s < 0 for s in shares.values()) or sum(shares.values()) <= 0:
        raise ValueError("shares must be non-negative and not all zero")
    total = sum(shares.values())
    return [Profile(kind, share / total, **KINDS[kind]) for kind, share in shares.items() if share > 0]


def parse_population(spec: str) -> list[Profile]:
    """``"honest=0.7,careless=0.2,adversarial=0.1"`` -> profiles (for command-line options)."""
    shares = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, sep, value = part.partition("=")
        try:
            shares[kind.strip()] = float(value)
        except ValueError:
            raise ValueError(f"population: '{part}' is not kind=share (e.g. honest=0.7)") from None
        if not sep:
            raise ValueError(f"population: '{part}' is not kind=share (e.g. honest=0.7)")
    return population(**shares)


def default_population() -> list[Profile]:
    return population(honest=0.60, careless=0.15, adversarial=0.10, nonconsenting=0.15)


@dataclass
class SimUser:
    user_id: str
    profile: Profile


@dataclass
class Simulation:
    client: Client
    #: (input object for the API, true label)
    pool: list[tuple[dict, str]]
    labels: tuple[str, ...]
    profiles: list[Profile] = field(default_factory=default_population)
    n_users: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        shift = self.rng.randrange(1, len(self.labels))
        # One fixed wrong mapping shared by the whole adversarial group (a coordinated attack).
        self.mapping = {lab: self.labels[(i + shift) % len(self.labels)] for i, lab in enumerate(self.labels)}
        self.users: list[SimUser] = []
        for p in self.profiles:
            for j in range(max(1, round(p.share * self.n_users)) if p.share > 0 else 0):
                self.users.append(SimUser(f"{p.name}-{j:03d}", p))

    def label_for(self, user: SimUser, truth: str) -> str:
        if user.profile.adversarial:
            return self.mapping[truth]
        if self.rng.random() < user.profile.error_rate:
            return self.rng.choice(self.labels)
        return truth

    def run(self, interactions: int) -> Counter:
        """Make ``interactions`` uses of the product; return counts of what was sent, by profile and kind."""
        sent: Counter = Counter()
        for _ in range(interactions):
            user = self.rng.choice(self.users)
            item, truth = self.rng.choice(self.pool)
            given = self.label_for(user, truth)
            if self.rng.random() < user.profile.donate_rate:
                try:
                    self.client.contribute(user.user_id, item, given, consent=user.profile.consent)
                    sent[(user.profile.name, "contribution")] += 1
                except ClientError as exc:
                    if exc.status != 403:  # the policy may refuse donations without training consent
                        raise
                    sent[(user.profile.name, "contribution_refused")] += 1
                continue
            answer = self.client.predict(user.user_id, item, consent=user.profile.consent)
            sent[(user.profile.name, "prediction")] += 1
            if answer.label == given:
                self.client.feedback(answer.interaction_id, user.user_id, rating=1)
                sent[(user.profile.name, "confirmation")] += 1
            else:
                self.client.feedback(answer.interaction_id, user.user_id, label=given)
                sent[(user.profile.name, "correction")] += 1
        return sent
