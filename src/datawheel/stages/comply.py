"""The consent check: only data a user agreed to give, and still agrees to, may train a model.

A record passes only if its user had training consent when it was made *and*
still has it now, so withdrawing consent takes effect at the next cycle.
Erased users' records are already gone from the store; whatever reaches here
is judged on consent alone. Every record gets a verdict with a reason code.
"""

from __future__ import annotations

from datawheel.artifacts import LabelledRecord, Verdict

STAGE = "comply"


def comply(records: list[LabelledRecord]) -> tuple[list[LabelledRecord], list[Verdict]]:
    kept: list[LabelledRecord] = []
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
