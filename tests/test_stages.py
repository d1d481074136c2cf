"""Each stage alone, on small hand-made inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from datawheel.artifacts import LabelledRecord, LabelledSet, Vote
from datawheel.config import CurationSection, GateSection, ModelSection
from datawheel.errors import Conflict, CycleError
from datawheel.stages import release
from datawheel.stages.comply import comply
from datawheel.stages.curate import CurateInput, curate
from datawheel.stages.evaluate import classification_metrics
from datawheel.stages.gate import gate
from datawheel.stages.significance import bootstrap_ci, expected_calibration_error, mcnemar_exact
from datawheel.stages.train import train
from datawheel.tasks.text import TextClassification

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LABELS = ("a", "b", "c")


def rec(rid: str, user: str, content: str, consent_then: bool = True, consent_now: bool = True) -> LabelledRecord:
    return LabelledRecord(rid, user, "interaction", f"h-{content}", content.encode(), consent_then, consent_now, NOW)


def labelled(pairs: dict[str, str]) -> LabelledSet:
    """Items named like rec()'s contents, so their hashes match."""
    return LabelledSet([c.encode() for c in pairs], list(pairs.values()), [f"h-{c}" for c in pairs])


def run_curate(records, votes, seed=None, golden=None, annotations=None, min_confidence=0.6, full=False,
               **cfg):
    cfg = CurationSection(min_confidence=min_confidence, em_iterations=30, model_prior_weight=0.5,
                          **{"label_issues": False, **cfg})
    out = curate(CurateInput(records, votes, LABELS, labelled(seed or {}), labelled(golden or {}),
                             annotations or {}, {}), task=TextClassification(), cfg=cfg, snapshot_id="s1")
    return out if full else (out.snapshot, out.verdicts)


def test_comply_keeps_only_records_consented_then_and_now():
    """A record passes only if its user consented when it was made and still consents."""
    records = [rec("1", "u", "x"), rec("2", "u", "y", consent_then=False), rec("3", "u", "z", consent_now=False)]
    kept, verdicts = comply(records)
    assert [r.record_id for r in kept] == ["1"]
    assert {v.record_id: v.reason for v in verdicts} == {
        "1": "consented", "2": "no_consent_at_creation", "3": "consent_withdrawn"}
    assert len(kept) + sum(not v.accepted for v in verdicts) == len(records)


def test_curate_merges_exact_duplicates_and_drops_blank_and_golden():
    """Same content is one item with pooled votes; blank inputs and golden-set items never enter a snapshot."""
    records = [rec("1", "u1", "cat"), rec("2", "u2", "cat"), rec("3", "u1", "   "), rec("4", "u2", "gold")]
    votes = [Vote("1", "u1", "a", "correction"), Vote("2", "u2", "a", "correction"),
             Vote("3", "u1", "b", "correction"), Vote("4", "u2", "c", "correction")]
    snap, verdicts = run_curate(records, votes, golden={"gold": "c"})
    assert snap.items.labels == ["a"]
    assert snap.record_ids == [["1", "2"]]
    reasons = {v.record_id: v.reason for v in verdicts}
    assert reasons["3"] == "blank_input" and reasons["4"] == "in_golden_set"
    assert reasons["2"] == "merged_duplicate"


def test_curate_excludes_a_coordinated_adversarial_minority():
    """Users who consistently give one wrong mapping are found unreliable and cannot move an item's label."""
    rng = np.random.default_rng(0)
    truth = {f"item{i}": LABELS[i % 3] for i in range(60)}
    wrong = {"a": "b", "b": "c", "c": "a"}
    honest = [f"h{i}" for i in range(9)]
    adversaries = ["x1", "x2"]
    records, votes = [], []
    n = 0
    for item, label in truth.items():
        for user in list(rng.choice(honest, 3, replace=False)) + adversaries:
            n += 1
            records.append(rec(str(n), user, item))
            given = wrong[label] if user in adversaries else label
            votes.append(Vote(str(n), user, given, "correction"))
    out = run_curate(records, votes, full=True)
    snap = out.snapshot
    assert dict(zip([h[2:] for h in snap.items.hashes], snap.items.labels)) == truth
    reliability = {r.user_id: r for r in out.reliability}
    assert all(reliability[a].reliability < 0.5 and reliability[a].excluded for a in adversaries)
    assert all(reliability[h].reliability > 0.9 and not reliability[h].excluded for h in honest)
    assert reliability["x1"].votes == 60
    assert snap.stats["users_excluded"] == 2


def test_curate_adversary_alone_on_an_item_does_not_label_it():
    """An item only an excluded user labelled is dropped as unreliable, not trained on with the wrong label."""
    records, votes = [], []
    for i in range(20):
        records.append(rec(f"h{i}", "honest", f"i{i}"))
        votes.append(Vote(f"h{i}", "honest", "a", "correction"))
        records.append(rec(f"x{i}", "adv", f"i{i}"))
        votes.append(Vote(f"x{i}", "adv", "b", "correction"))
    # the seed says these items are "a": the anchors reveal who is wrong
    seed = {f"i{i}": "a" for i in range(10)}
    records.append(rec("lone", "adv", "lonely"))
    votes.append(Vote("lone", "adv", "b", "correction"))
    snap, verdicts = run_curate(records, votes, seed=seed)
    reasons = {v.record_id: v.reason for v in verdicts}
    assert reasons["lone"] == "unreliable_user"
    assert set(snap.items.labels) == {"a"}
    assert reasons["h0"] == "in_seed_set"


def test_curate_low_confidence_items_are_dropped():
    """Two equally trusted users disagreeing on an item leave it too uncertain to train on."""
    records = [rec("1", "u1", "q"), rec("2", "u2", "q")]
    votes = [Vote("1", "u1", "a", "correction"), Vote("2", "u2", "b", "correction")]
    snap, verdicts = run_curate(records, votes, min_confidence=0.9)
    assert len(snap.items) == 0
    assert {v.reason for v in verdicts} == {"low_confidence"}


def _text_set(n: int = 60) -> LabelledSet:
    task = TextClassification()
    words = {"a": "good great 好", "b": "bad awful 差", "c": "blue green 蓝"}
    texts = [f"{words[LABELS[i % 3]]} sample {i}" for i in range(n)]
    items = [task.parse({"text": t}) for t in texts]
    return LabelledSet([task.encode(x) for x in items], [LABELS[i % 3] for i in range(n)],
                       [task.content_hash(x) for x in items])


def test_train_is_deterministic_given_the_seed():
    """Same data, same seed: identical weights; and the model learns the training set."""
    data = _text_set()
    cfg = ModelSection(epochs=5, batch_size=16, lr=0.05, seed=3)
    a = train(TextClassification(), data, LABELS, cfg)
    b = train(TextClassification(), data, LABELS, cfg)
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.info["final_train_accuracy"] > 0.9


def test_train_refuses_empty_data():
    """Training on nothing is a broken precondition, reported clearly."""
    with pytest.raises(CycleError, match="nothing to train on"):
        train(TextClassification(), LabelledSet([], [], []), LABELS, ModelSection())


def test_metrics_match_hand_computation():
    """Accuracy, macro-F1 and per-class recall agree with a hand-worked confusion matrix."""
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y_true, y_pred, LABELS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 0.5}
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_gate_rejects_overall_or_per_class_regressions():
    """Within tolerance promotes; a drop overall or in one class beyond its tolerance rejects, with reasons."""
    champ = {"accuracy": 0.9, "macro_f1": 0.9, "per_class_recall": {"a": 0.9, "b": 0.9}}
    policy = GateSection(tolerance=0.01, per_class_tolerance=0.05)
    ok = gate({"accuracy": 0.895, "macro_f1": 0.9, "per_class_recall": {"a": 0.9, "b": 0.88}}, champ, policy)
    assert ok.promote
    worse = gate({"accuracy": 0.85, "macro_f1": 0.9, "per_class_recall": {"a": 0.9, "b": 0.9}}, champ, policy)
    assert not worse.promote and "accuracy" in worse.reasons[0]
    one_class = gate({"accuracy": 0.95, "macro_f1": 0.95, "per_class_recall": {"a": 1.0, "b": 0.8}}, champ, policy)
    assert not one_class.promote and "'b'" in one_class.reasons[0]


def test_release_aliases():
    """Promotion keeps the old champion as previous; rollback swaps them; no previous means no rollback."""
    assert release.promote({"champion": 1}, 2) == {"champion": 2, "previous": 1}
    assert release.rollback({"champion": 2, "previous": 1}) == {"champion": 1, "previous": 2}
    with pytest.raises(Conflict):
        release.rollback({"champion": 1})


def test_bootstrap_interval_covers_the_accuracy_and_narrows_with_more_items():
    """The 95 % interval contains the point estimate and shrinks as the golden set grows."""
    rng = np.random.default_rng(0)
    small = (rng.random(100) < 0.9).astype(float)
    large = (rng.random(2000) < 0.9).astype(float)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 2
    assert bootstrap_ci(small) == (lo_s, hi_s)  # seeded: reproducible


def test_mcnemar_counts_only_discordant_items():
    """10 items only the candidate gets right vs 0 the other way is significant; 6 vs 4 is not."""
    agree = np.ones(300, dtype=bool)
    cand = np.concatenate([agree, np.ones(10, bool)])
    champ = np.concatenate([agree, np.zeros(10, bool)])
    clear = mcnemar_exact(cand, champ)
    assert clear["only_candidate"] == 10 and clear["only_champion"] == 0 and clear["p_value"] < 0.01
    mixed = mcnemar_exact(np.array([True] * 6 + [False] * 4), np.array([False] * 6 + [True] * 4))
    assert mixed["p_value"] > 0.5
    assert mcnemar_exact(agree, agree)["p_value"] == 1.0


def test_calibration_error_is_zero_when_confidence_matches_accuracy():
    """A model 80 % sure and 80 % right is calibrated; one 100 % sure and 50 % right is not."""
    y = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(calibrated, y) == pytest.approx(0.0)
    overconfident = np.tile([1.0, 0.0], (10, 1))
    assert expected_calibration_error(overconfident, np.array([0, 1] * 5)) == pytest.approx(0.5)


def test_gate_needs_significance_more_data_or_a_reason_to_replace():
    """Within tolerance but not significant: promoted only with more data or when the champion must go."""
    policy = GateSection(tolerance=0.01, per_class_tolerance=0.05, alpha=0.05)
    champ = {"accuracy": 0.90, "macro_f1": 0.90, "per_class_recall": {"a": 0.9}}
    cand = {"accuracy": 0.905, "macro_f1": 0.90, "per_class_recall": {"a": 0.9}}
    noise = {"only_candidate": 3, "only_champion": 2, "p_value": 1.0}
    real = {"only_candidate": 20, "only_champion": 2, "p_value": 0.0001}
    assert gate(cand, champ, policy, paired=real, more_data=False).promote
    assert gate(cand, champ, policy, paired=noise, more_data=True).promote
    held = gate(cand, champ, policy, paired=noise, more_data=False)
    assert not held.promote and "not trained on more data" in held.reasons[0]
    assert gate(cand, champ, policy, paired=noise, more_data=False, replacing="erasure").promote
    worse = {"accuracy": 0.85, "macro_f1": 0.85, "per_class_recall": {"a": 0.85}}
    assert not gate(worse, champ, policy, paired=real, replacing="erasure").promote


def test_slice_accuracy_groups_items_by_each_metadata_value():
    from datawheel.stages.evaluate import slice_accuracy

    right = np.array([True, False, True, True])
    meta = [{"locale": "en", "device": "ios"}, {"locale": "en"}, {"locale": "zh"}, {}]
    assert slice_accuracy(right, meta) == {"device=ios": {"n": 1, "accuracy": 1.0},
                                           "locale=en": {"n": 2, "accuracy": 0.5},
                                           "locale=zh": {"n": 1, "accuracy": 1.0}}


def test_gate_blocks_a_regression_on_a_slice_big_enough_to_measure():
    """Overall better, but one locale's users lose 10 points: blocked. A 5-item slice cannot block."""
    base = {"macro_f1": 0.9, "per_class_recall": {"a": 0.9}}
    champ = {**base, "accuracy": 0.90, "slices": {"locale=zh": {"n": 40, "accuracy": 0.90},
                                                  "device=tv": {"n": 5, "accuracy": 1.0}}}
    cand = {**base, "accuracy": 0.93, "slices": {"locale=zh": {"n": 40, "accuracy": 0.80},
                                                 "device=tv": {"n": 5, "accuracy": 0.4}}}
    policy = GateSection(slice_tolerance=0.05, min_slice_size=20)
    d = gate(cand, champ, policy, paired={"p_value": 0.001})
    assert not d.promote and len(d.reasons) == 1 and "locale=zh" in d.reasons[0]
    cand["slices"]["locale=zh"]["accuracy"] = 0.88
    assert gate(cand, champ, policy, paired={"p_value": 0.001}).promote


def test_a_loss_of_exactly_the_tolerance_is_within_it():
    """One item of a 20-item slice is 0.05 exactly; float rounding (0.95 - 1.0) must not make it a block."""
    base = {"macro_f1": 0.9, "per_class_recall": {"a": 1.0}, "accuracy": 0.9}
    champ = {**base, "slices": {"locale=zh": {"n": 20, "accuracy": 1.0}}}
    cand = {**base, "per_class_recall": {"a": 0.95}, "slices": {"locale=zh": {"n": 20, "accuracy": 0.95}}}
    assert gate(cand, champ, GateSection(per_class_tolerance=0.05, slice_tolerance=0.05), more_data=True).promote
    cand["slices"]["locale=zh"]["accuracy"] = 0.9
    assert not gate(cand, champ, GateSection(slice_tolerance=0.05), more_data=True).promote
