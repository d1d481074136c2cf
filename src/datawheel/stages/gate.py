"""The release gate: a candidate replaces the champion only if it is really better, or safely not worse.

Both models are scored on the same frozen golden set. The candidate must not
lose more than ``tolerance`` on accuracy or macro-F1, nor more than
``per_class_tolerance`` on any class's recall, nor more than ``slice_tolerance``
on any slice of the golden set (its items sharing a metadata value, such as a
locale or a device): an overall gain bought by abandoning one class or one group
of users is a regression for them. Past those
blocks it is promoted when its gain is significant (McNemar's exact test at
``alpha``), or when it is not worse and was trained on more data (the
champion's data plus the new cycle's, so the difference is noise either way
and the larger sample generalizes at least as well), or when the champion must
be replaced anyway (it holds an erased user's data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datawheel.config import GateSection

#: a loss of exactly the tolerance is within it; float rounding (0.95 - 1.0) must not turn it into a block
_EPS = 1e-9


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "promoted" if self.promote else "rejected"


def gate(candidate: dict, champion: dict, policy: GateSection, *, paired: dict | None = None,
         more_data: bool = True, replacing: str = "") -> Decision:
    """``paired`` is :func:`significance.mcnemar_exact`'s result; ``replacing`` says why the champion must go."""
    reasons: list[str] = []
    for key in ("accuracy", "macro_f1"):
        delta = candidate[key] - champion[key]
        if delta < -policy.tolerance - _EPS:
            reasons.append(f"{key} fell by {-delta:.4f} (> tolerance {policy.tolerance})")
    for label, champ_recall in champion["per_class_recall"].items():
        delta = candidate["per_class_recall"].get(label, 0.0) - champ_recall
        if delta < -policy.per_class_tolerance - _EPS:
            reasons.append(f"recall of class {label!r} fell by {-delta:.4f} "
                           f"(> per-class tolerance {policy.per_class_tolerance})")
    reasons += _slice_drops(candidate, champion, policy, "accuracy")
    if reasons:
        return Decision(False, reasons)
    p = 1.0 if paired is None else paired["p_value"]
    summary = (f"accuracy {champion['accuracy']:.4f} -> {candidate['accuracy']:.4f}, "
               f"macro-F1 {champion['macro_f1']:.4f} -> {candidate['macro_f1']:.4f}, McNemar p={p:.3g}, "
               "no class" + (" or slice" if champion.get("slices") else "") + " beyond tolerance")
    return _verdict(candidate["accuracy"] > champion["accuracy"] and p < policy.alpha, summary, policy,
                    more_data, replacing)


def _slice_drops(candidate: dict, champion: dict, policy: GateSection, key: str) -> list[str]:
    """A reason per golden slice (large enough to judge) whose ``key`` score fell beyond the slice tolerance."""
    reasons = []
    for name, champ_slice in champion.get("slices", {}).items():
        cand_slice = candidate.get("slices", {}).get(name)
        if cand_slice is None or champ_slice["n"] < policy.min_slice_size:
            continue
        delta = cand_slice[key] - champ_slice[key]
        if delta < -policy.slice_tolerance - _EPS:
            reasons.append(f"{key} on slice {name} ({champ_slice['n']} items) fell by {-delta:.4f} "
                           f"(> slice tolerance {policy.slice_tolerance})")
    return reasons


def _verdict(significant: bool, summary: str, policy: GateSection, more_data: bool, replacing: str) -> Decision:
    """Past the blocks: promote on a significant gain, for a champion that must go, or on more data."""
    if significant:
        return Decision(True, [f"significant improvement (p < {policy.alpha}): {summary}"])
    if replacing:
        return Decision(True, [f"not worse within tolerance and {replacing}: {summary}"])
    if more_data:
        return Decision(True, [f"not worse within tolerance and trained on more data: {summary}"])
    return Decision(False, [f"no significant improvement and not trained on more data: {summary}"])


def gate_generation(candidate: dict, champion: dict, policy: GateSection, *, paired: dict | None = None,
                    more_data: bool = True, replacing: str = "") -> Decision:
    """The same rules for a language model: its golden ``score`` (exact match, chrF or JSON field match) and
    each slice's may not fall beyond tolerance; past that, promotion needs a significant paired gain, more data,
    or a champion that must go."""
    reasons: list[str] = []
    delta = candidate["score"] - champion["score"]
    if delta < -policy.tolerance - _EPS:
        reasons.append(f"{candidate['metric']} fell by {-delta:.4f} (> tolerance {policy.tolerance})")
    reasons += _slice_drops(candidate, champion, policy, "score")
    if reasons:
        return Decision(False, reasons)
    p = 1.0 if paired is None else paired["p_value"]
    summary = f"{candidate['metric']} {champion['score']:.4f} -> {candidate['score']:.4f}, paired p={p:.3g}"
    return _verdict(delta > 0 and p < policy.alpha, summary, policy, more_data, replacing)
