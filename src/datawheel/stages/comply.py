"""The consent check: only data a user agreed to give, and still agrees to, may train a model.

A record passes only if its user had training consent when it was made *and*
still has it now, so withdrawing consent takes effect at the next cycle.
Erased users' records are already gone from the store; whatever reaches here
is judged on consent alone. Every record gets a verdict with a reason code.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from datawheel.artifacts import Verdict

STAGE = "comply"


class Consented(Protocol):
    """A labelled record or a text-generation exchange: anything stored with its user's consent then and now."""

    @property
    def record_id(self) -> str: ...
    @property
    def consent_at_creation(self) -> bool: ...
    @property
    def consent_now(self) -> bool: ...


R = TypeVar("R", bound=Consented)


def comply(records: list[R]) -> tuple[list[R], list[Verdict]]:
    kept: list[R] = []
    verdicts: list[Verdict] = []
    for rec in records:
        if not rec.consent_at_creation:
            verdicts.append(Verdict(rec.record_id, STAGE, False, "no_consent_at_creation"))
        elif not rec.consent_now:
            verdicts.append(Verdict(rec.record_id, STAGE, False, "consent_withdrawn"))
        else:
            verdicts.append(Verdict(rec.record_id, STAGE, True, "consented"))
            kept.append(rec)
    return kept, verdicts
