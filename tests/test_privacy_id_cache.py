"""The screen remembers the user ids that passed: the same verdicts as a fresh scan, forgotten under a new policy or
new detectors, bounded, and never a refusal.

The ids come from Faker (e-mails, phones in several locales, resident IDs, card numbers, IBANs, UUIDs, user names,
hex digests) and from the shapes products use (``wx-`` prefixes, numeric ids, ``auth0|`` ids), not from the
detectors' own patterns.
"""

from __future__ import annotations

import random
import re
import threading
import zlib
from collections.abc import Callable

import pytest
from faker import Faker

from datawheel.errors import InvalidInput
from datawheel.privacy import screen as screen_module
from datawheel.privacy.detectors import DEFAULT_DETECTORS, Finding
from datawheel.privacy.policy import Policy
from datawheel.privacy.screen import Screen


def _faker(locale: str) -> Faker:
    fake = Faker(locale)
    fake.seed_instance(zlib.crc32(locale.encode()))  # the same corpus on every run
    return fake


def _corpus() -> list[str]:
    """Ids a product might send: pseudonymous ones, and personal data sent as an id by mistake."""
    ids: list[str] = []
    for locale in ("en_US", "zh_CN", "en_GB", "de_DE", "fr_FR", "nl_NL"):
        fake = _faker(locale)
        for _ in range(12):
            ids += [fake.email(), fake.phone_number(), fake.user_name(), fake.uuid4(), fake.md5(),
                    fake.credit_card_number(), f"wx-{fake.msisdn()}", f"u{fake.random_int(1, 10**7)}",
                    f"auth0|{fake.hexify('^' * 24)}", fake.ipv4(), fake.iban()]
        if locale == "zh_CN":
            ids += [fake.ssn() for _ in range(12)]
    return ids


CORPUS = _corpus()


def _verdict(screen: Screen, user_id: str) -> tuple[str, ...] | None:
    """None when the id passes; the refusal's finding types (as the metrics hook hears them) when it is refused."""
    heard: list[str] = []
    screen.on_finding = lambda kind, action: heard.append(f"{kind}:{action}")
    try:
        assert screen.check_user_id(user_id) == user_id
    except InvalidInput as exc:
        assert user_id not in str(exc)
        return tuple(heard)
    assert heard == []
    return None


def test_remembered_verdicts_are_the_fresh_scans_verdicts():
    """Each id, checked again and again in a shuffled order on one screen, gets what a fresh screen gives it."""
    assert len(CORPUS) > 500
    fresh = {user_id: _verdict(Screen(Policy(), "k"), user_id) for user_id in CORPUS}
    assert any(v is None for v in fresh.values()) and any(v is not None for v in fresh.values())
    screen = Screen(Policy(), "k")
    order = CORPUS * 3
    random.Random(7).shuffle(order)
    for user_id in order:
        assert _verdict(screen, user_id) == fresh[user_id], "the remembered verdict differs from a scan"


def test_a_refusal_is_never_remembered():
    """A refused id is scanned, counted and refused every time it comes back."""
    screen = Screen(Policy(), "k")
    for _ in range(3):
        assert _verdict(screen, "alice.smith@example.com") == ("EMAIL:reject",)


class _Counting:
    """A detector that finds nothing and counts the texts it was asked about: how a test sees a scan happen."""

    type = "SECRET"

    def __init__(self) -> None:
        self.calls = 0

    def find(self, text: str) -> list[Finding]:
        self.calls += 1
        return []


class _Prefix:
    """A detector a workspace might add later: account numbers written ``acct-`` and digits."""

    type = "SECRET"

    def find(self, text: str) -> list[Finding]:
        return [Finding(self.type, m.start(), m.end()) for m in re.finditer(r"acct[- ]\d+", text)]


def test_an_id_that_passed_is_refused_once_the_detectors_would_refuse_it():
    screen = Screen(Policy(), "k")
    assert screen.check_user_id("acct-88120") == "acct-88120"
    screen.detectors = (*screen.detectors, _Prefix())
    with pytest.raises(InvalidInput):
        screen.check_user_id("acct-88120")
    assert screen.check_user_id("u-88120") == "u-88120"


def test_a_policy_change_forgets_every_remembered_id():
    """A verdict is reused only under the policy and detectors it was reached under."""
    counting = _Counting()
    screen = Screen(Policy(), "k", detectors=(*DEFAULT_DETECTORS, counting))
    screen.check_user_id("u-1")
    scans = counting.calls
    screen.check_user_id("u-1")
    assert counting.calls == scans  # remembered
    screen.policy = Policy(pii={"EMAIL": "reject"})
    screen.check_user_id("u-1")
    assert counting.calls > scans  # scanned again under the new policy
    scans = counting.calls
    screen.check_user_id("u-1")
    assert counting.calls == scans


def test_the_remembered_ids_are_bounded_and_the_least_recent_goes_first(monkeypatch):
    monkeypatch.setattr(screen_module, "PASSED_IDS", 8)
    counting = _Counting()
    screen = Screen(Policy(), "k", detectors=(*DEFAULT_DETECTORS, counting))
    for n in range(8):
        screen.check_user_id(f"u-{n}")
    screen.check_user_id("u-0")  # seen again: now the most recent
    screen.check_user_id("u-8")  # pushes out u-1, the least recent
    assert len(screen._passed) == 8

    def scanned(user_id: str) -> bool:
        before = counting.calls
        screen.check_user_id(user_id)
        return counting.calls > before

    assert not scanned("u-0") and not scanned("u-8")
    assert scanned("u-1")
    for n in range(10_000):  # many more ids than it keeps: it never grows past its bound
        screen.check_user_id(f"v-{n}")
    assert len(screen._passed) == 8


def test_threads_checking_at_once_get_the_fresh_verdicts():
    fresh = {user_id: _verdict(Screen(Policy(), "k"), user_id) for user_id in CORPUS[:200]}
    screen = Screen(Policy(), "k")
    wrong: list[str] = []

    def work(seed: int, check: Callable[[str], str] = screen.check_user_id) -> None:
        ids = list(fresh)
        random.Random(seed).shuffle(ids)
        for user_id in ids * 2:
            try:
                check(user_id)
                got = None
            except InvalidInput:
                got = "refused"
            if (got is None) != (fresh[user_id] is None):
                wrong.append(user_id)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wrong == []
