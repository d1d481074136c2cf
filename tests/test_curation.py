"""The curation algorithms alone: aggregation, label issues, near-duplicates, quality filters, ranking."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from datawheel.artifacts import LabelledRecord, LabelledSet, Vote
from datawheel.config import CurationSection
from datawheel.curation.aggregate import aggregate
from datawheel.curation.label_issues import find_label_issues, out_of_fold_probs
from datawheel.curation.near_dup import image_clusters, text_clusters
from datawheel.curation.ranking import WEIGHTS, rank
from datawheel.demo.simulate import parse_population, population
from datawheel.stages.curate import CurateInput, curate
from datawheel.tasks.image import ImageClassification, normalize
from datawheel.tasks.text import TextClassification

NOW = datetime(2026, 1, 1, tzinfo=UTC)
IMAGE = ImageClassification()
TEXT = TextClassification()
DIGITS = load_digits()
DIGIT_ITEMS = [normalize(x * 255 / 16) for x in DIGITS.images]


def synthetic_crowd(rng, n_items=300, k=4, accuracies=(0.95, 0.9, 0.9, 0.85, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45),
                    votes_per_item=3):
    """Users with known confusions: each is right with their accuracy, else picks a fixed wrong class."""
    truth = rng.integers(0, k, n_items)
    confusion_target = rng.permutation(k)
    item_votes = []
    for i in range(n_items):
        votes = []
        for u in rng.choice(len(accuracies), votes_per_item, replace=False):
            right = rng.random() < accuracies[u]
            wrong = confusion_target[truth[i]] if confusion_target[truth[i]] != truth[i] else (truth[i] + 1) % k
            votes.append((int(u), int(truth[i] if right else wrong)))
        item_votes.append(votes)
    return truth, item_votes, np.array(accuracies)


def test_aggregation_recovers_true_labels_and_ranks_users_by_their_real_accuracy():
    """Dawid–Skene beats majority vote on a crowd with systematic confusions and recovers who is reliable."""
    rng = np.random.default_rng(0)
    truth, item_votes, acc = synthetic_crowd(rng)
    k = 4
    post, rel, counts, _ = aggregate(item_votes, len(acc), k, np.full((len(truth), k), 1 / k), {}, 50)
    ds_acc = (post.argmax(1) == truth).mean()
    maj = np.array([np.bincount([lab for _, lab in v], minlength=k).argmax() for v in item_votes])
    assert ds_acc >= 0.85 and ds_acc >= (maj == truth).mean() + 0.05
    order = np.argsort(rel)
    assert np.corrcoef(order, np.argsort(acc))[0, 1] > 0.8
    assert counts.sum() == 3 * len(truth)


def test_a_coordinated_tenth_of_users_is_down_weighted_and_cannot_move_labels():
    """10 % of users giving the same wrong mapping end below the trust threshold; every item keeps its truth."""
    rng = np.random.default_rng(1)
    k, n_items, honest, adversaries = 5, 200, 18, 2
    truth = rng.integers(0, k, n_items)
    item_votes = []
    for i in range(n_items):
        votes = [(int(u), int(truth[i])) for u in rng.choice(honest, 2, replace=False)]
        votes += [(honest + a, int((truth[i] + 1) % k)) for a in range(adversaries)]  # outnumber on ties
        item_votes.append(votes)
    anchored = {i: int(truth[i]) for i in range(10)}  # the seed set
    post, rel, _, kept = aggregate(item_votes, honest + adversaries, k, np.full((n_items, k), 1 / k), anchored, 50)
    assert (rel[honest:] < 0.5).all() and (rel[:honest] > 0.9).all()
    assert all(u < honest for votes in kept for u, _ in votes)
    assert (post.argmax(1) == truth).all()


def _flipped(rng, n, rate, k=10):
    y = DIGITS.target[:n].copy()
    flip = rng.random(n) < rate
    y[flip] = (y[flip] + rng.integers(1, k, flip.sum())) % k
    return y, flip


def test_confident_learning_finds_injected_label_flips():
    """On digits with 10 % of labels flipped, most flags are real flips and most flips are flagged."""
    rng = np.random.default_rng(0)
    y, flip = _flipped(rng, 800, 0.10)
    x = IMAGE.vectorize(DIGIT_ITEMS[:800])
    issues = find_label_issues(out_of_fold_probs(x, y, 10), y, 10)
    found = issues.flagged
    assert issues.informative
    assert (found & flip).sum() / found.sum() >= 0.85  # precision
    assert (found & flip).sum() / flip.sum() >= 0.7  # recall
    assert 0.06 <= issues.noise_rate <= 0.14


def test_confident_learning_leaves_a_clean_set_and_anchors_alone():
    """A clean set loses almost nothing; items marked as known-good are never flagged."""
    rng = np.random.default_rng(1)
    x = IMAGE.vectorize(DIGIT_ITEMS[:600])
    clean = find_label_issues(out_of_fold_probs(x, DIGITS.target[:600], 10), DIGITS.target[:600], 10)
    assert clean.flagged.sum() <= 6
    y, _ = _flipped(rng, 600, 0.15)
    protected = np.zeros(600, dtype=bool)
    protected[:300] = True
    issues = find_label_issues(out_of_fold_probs(x, y, 10), y, 10, candidates=~protected)
    assert not issues.flagged[:300].any() and issues.flagged[300:].any()


def test_confident_learning_flags_nothing_when_its_model_knows_nothing():
    """Random features cannot tell a wrong label from a right one: no flags, no noise estimate."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    issues = find_label_issues(out_of_fold_probs(rng.normal(size=(300, 5)), y, 3), y, 3)
    assert not issues.informative and not issues.flagged.any()


def _reencode(img: np.ndarray, fmt: str, brighten: int = 0) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.clip(img.astype(int) + brighten, 0, 255).astype(np.uint8)).save(buf, fmt, quality=95)
    return IMAGE.parse({"image": base64.b64encode(buf.getvalue()).decode()})


def test_image_near_duplicates_collapse_and_distinct_digits_do_not():
    """A PNG re-saved as JPEG or brightened is the same item; 500 different digits stay (almost all) apart."""
    originals = DIGIT_ITEMS[:40]
    copies = [_reencode(im, "JPEG") for im in originals[:20]] + [_reencode(im, "PNG", 12) for im in originals[20:]]
    assert not any(np.array_equal(a, b) for a, b in zip(originals, copies))  # not exact duplicates
    ids = image_clusters(originals + copies)
    same = sum(ids[i] == ids[40 + i] for i in range(40))
    assert same >= 36
    distinct = image_clusters(DIGIT_ITEMS[:500])
    assert len(set(distinct)) >= 497


def test_text_near_duplicates_collapse_and_distinct_texts_do_not():
    """One changed word in a sentence is a near-duplicate; different sentences are not."""
    texts = ["The delivery arrived two days late and the box was crushed on one side",
             "The delivery arrived three days late and the box was crushed on one side",
             "Excellent battery life, I charge it once a week at most",
             "Excellent battery life; I charge it once a week at most!",
             "The screen cracked after a week",
             "外卖送得很快，味道也不错，下次还会再点"]
    ids = text_clusters(texts)
    assert ids[0] == ids[1] and ids[2] == ids[3]
    assert len({ids[0], ids[2], ids[4], ids[5]}) == 4


def rec(rid: str, user: str, item, task, kind: str = "interaction") -> LabelledRecord:
    data = task.encode(item)
    return LabelledRecord(rid, user, kind, task.content_hash(item), data, True, True, NOW)


def empty_set() -> LabelledSet:
    return LabelledSet([], [], [])


def test_curate_pools_votes_of_near_duplicates_and_drops_near_copies_of_golden_items():
    """Near-copies become one snapshot item with everyone's votes; a re-encoded golden item never enters."""
    a, a_copy = DIGIT_ITEMS[0], _reencode(DIGIT_ITEMS[0], "JPEG")
    gold = DIGIT_ITEMS[1]
    golden = LabelledSet([IMAGE.encode(gold)], ["1"], [IMAGE.content_hash(gold)])
    records = [rec("r1", "u1", a, IMAGE), rec("r2", "u2", a_copy, IMAGE), rec("r3", "u3", _reencode(gold, "JPEG"),
                                                                              IMAGE)]
    votes = [Vote("r1", "u1", "0", "correction"), Vote("r2", "u2", "0", "correction"),
             Vote("r3", "u3", "1", "correction")]
    labels = tuple(str(d) for d in range(10))
    out = curate(CurateInput(records, votes, labels, empty_set(), golden, {}, {}), task=IMAGE,
                 cfg=CurationSection(min_confidence=0.5), snapshot_id="s")
    reasons = {v.record_id: v.reason for v in out.verdicts}
    assert reasons == {"r1": "kept", "r2": "merged_duplicate", "r3": "near_golden_set"}
    assert out.snapshot.record_ids == [["r1", "r2"]] and out.snapshot.items.labels == ["0"]
    assert out.snapshot.stats["near_duplicates_merged"] == 1


def test_quality_filters_give_each_dropped_record_a_reason():
    """Blank, placeholder-only and undecodable inputs are dropped with their own reason codes."""
    records = [rec("ok", "u", "a fine sentence about apples", TEXT), rec("blank", "u", "  !? ", TEXT),
               rec("pii", "u", "<EMAIL> <PHONE:kdjfhgpalemc>", TEXT),
               LabelledRecord("bad", "u", "interaction", "h-bad", b"\xff\xfe\xfa", True, True, NOW)]
    votes = [Vote(r.record_id, "u", "a", "correction") for r in records]
    out = curate(CurateInput(records, votes, ("a", "b"), empty_set(), empty_set(), {}, {}), task=TEXT,
                 cfg=CurationSection(min_confidence=0.5), snapshot_id="s")
    assert {v.record_id: v.reason for v in out.verdicts} == {
        "ok": "kept", "blank": "blank_input", "pii": "only_placeholders", "bad": "invalid_input"}
    assert out.snapshot.stats["dropped"] == {"blank_input": 1, "invalid_input": 1, "only_placeholders": 1}


def test_an_annotation_overrides_users_and_the_item_leaves_the_queue():
    """An annotator's label is an anchor: it wins over users' votes, and the item is no longer queued."""
    records = [rec(f"r{i}", f"u{i}", f"review number {i} about the parcel", TEXT) for i in range(3)]
    votes = [Vote(r.record_id, r.user_id, "a", "correction") for r in records]
    hashes = [r.content_hash for r in records]
    out = curate(CurateInput(records, votes, ("a", "b"), empty_set(), empty_set(), {hashes[0]: "b"}, {}),
                 task=TEXT, cfg=CurationSection(min_confidence=0.5, near_duplicates=False), snapshot_id="s")
    labels = dict(zip(out.snapshot.items.hashes, out.snapshot.items.labels))
    assert labels[hashes[0]] == "b" and labels[hashes[1]] == "a"
    assert hashes[0] not in {q.content_hash for q in out.queue} and len(out.queue) == 2
    assert out.snapshot.stats["annotated_items"] == 1


def test_the_queue_orders_by_the_value_it_claims():
    """Scores are the weighted sum of the signals, sorted; uncertainty, disagreement, flags and rarity all count."""
    probs = np.array([[0.98, 0.01, 0.01],   # sure, agreed, common class
                      [0.40, 0.35, 0.25],   # unsure
                      [0.98, 0.01, 0.01],   # sure but users disagree
                      [0.98, 0.01, 0.01],   # sure but flagged
                      [0.01, 0.01, 0.98]])  # sure, rare class
    votes = [[0, 0], [0], [0, 1, 1, 0], [0], [2]]
    flagged = np.array([False, False, False, True, False])
    ranked = rank(probs, votes, flagged, np.array([50, 40, 5]), limit=5)
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    for r in ranked:
        assert r.score == pytest.approx(sum(WEIGHTS[k] * v for k, v in r.signals.items()), abs=1e-5)
    position = {r.index: n for n, r in enumerate(ranked)}
    assert position[0] == 4  # the item worth least is last
    assert ranked[position[1]].signals["uncertainty"] > 0.9
    assert ranked[position[2]].signals["disagreement"] == 1.0
    assert ranked[position[3]].signals["label_issue"] == 1.0
    assert ranked[position[4]].signals["class_balance"] == 1.0
    assert len(rank(probs, votes, flagged, np.array([50, 40, 5]), limit=2)) == 2


def test_population_shares_and_kinds():
    """Populations are built from shares per kind; a typo or a malformed spec is refused with the reason."""
    profiles = parse_population("honest=0.7, careless=0.2, adversarial=0.1")
    assert [(p.name, round(p.share, 2)) for p in profiles] == [("honest", 0.7), ("careless", 0.2),
                                                               ("adversarial", 0.1)]
    assert population(spammer=1)[0].error_rate == 1.0
    with pytest.raises(ValueError, match="unknown user kind"):
        population(honset=1)
    with pytest.raises(ValueError, match="kind=share"):
        parse_population("honest")


# --- Hugging Face export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task, payloads, column", [
    (IMAGE, [{"pixels": (DIGITS.images[i] * 15).tolist()} for i in range(3)], "image"),
    (TEXT, [{"text": "great product"}, {"text": "非常差"}, {"text": "so-so"}], "text"),
])
def test_huggingface_export_types_the_input_column_from_what_annotators_are_shown(task, payloads, column, tmp_path,
                                                                                 monkeypatch):
    """The export's input column is the item as ``Task.show`` gives it: a PNG Image feature or a string Value."""
    from datawheel.curation.datasheet import export_huggingface

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    items = [task.parse(p) for p in payloads]
    data = LabelledSet([task.encode(it) for it in items], ["a", "b", "a"], [task.content_hash(it) for it in items])
    out = export_huggingface(data, [0.9, 0.8, 1.0], task, ("a", "b"), None, tmp_path / "export")
    card = (out / "README.md").read_text()
    assert f"- name: {column}\n    dtype: {'image' if column == 'image' else 'string'}\n" in card
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert loaded.column_names == [column, "label", "content_hash", "confidence"]
    assert [loaded.features["label"].int2str(v) for v in loaded["label"]] == ["a", "b", "a"]
    if column == "image":
        assert [np.array_equal(np.asarray(img), it) for img, it in zip(loaded["image"], items)] == [True] * 3
    else:
        assert loaded["text"] == items


def test_an_empty_snapshot_exports_without_an_input_column(tmp_path):
    """With no item to show, the export still writes the label, hash and confidence columns and a card."""
    import pyarrow.parquet as pq

    from datawheel.curation.datasheet import export_huggingface

    out = export_huggingface(LabelledSet([], [], []), [], TEXT, ("a", "b"), None, tmp_path / "export")
    table = pq.read_table(out / "data" / "train-00000-of-00001.parquet")
    assert table.column_names == ["label", "content_hash", "confidence"] and table.num_rows == 0
    assert "- name: label" in (out / "README.md").read_text()
