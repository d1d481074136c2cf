"""Training: the validation split, early stopping, calibration, augmentation, checkpoints and warm start."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from datawheel.artifacts import LabelledSet
from datawheel.config import ModelSection
from datawheel.demo.run import LABELS, DigitSplits
from datawheel.errors import CycleError
from datawheel.models.registry import LoadedModel, Registry
from datawheel.stages.evaluate import evaluate
from datawheel.stages.train import MIN_VALIDATION, TrainedModel, calibrated, train, validation_mask
from datawheel.store.erasure import with_warm_descendants
from datawheel.tasks.image import ImageClassification, normalize
from datawheel.wheel import cycle
from datawheel.workspace import Workspace

TASK = ImageClassification()


def challenge(ws: Workspace, champion: LoadedModel, data: LabelledSet, dataset_id: str, cycle_id: str,
              **options: object) -> dict:
    """The cycle's train -> evaluate -> gate -> register -> release on exactly ``data``, against a champion."""
    inputs = cycle.Inputs(LabelledSet([], [], []), ws.golden(), champion)
    return cycle.challenge(ws, Registry(ws), cycle_id, inputs, data.to_arrow(), dataset_id, **options)


def as_set(pairs: list[tuple[np.ndarray, str]], noise: float = 0.0, seed: int = 0) -> LabelledSet:
    """Digits as a training set; ``noise`` relabels that share of items uniformly at random."""
    rng = np.random.default_rng(seed)
    items = [normalize(p) for p, _ in pairs]
    labels = [str(rng.integers(10)) if rng.random() < noise else lab for _, lab in pairs]
    return LabelledSet([TASK.encode(i) for i in items], labels, [TASK.content_hash(i) for i in items])


def nll(module: torch.nn.Module, data: LabelledSet) -> float:
    x = TASK.featurize([TASK.decode(b) for b in data.inputs])
    y = torch.tensor([LABELS.index(lab) for lab in data.labels])
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(module.eval()(x), y))


def test_validation_split_is_per_class_and_stable_as_data_grows():
    """Each class gives its share; an item's side never changes when other items arrive."""
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(400)]
    labels = ["a" if i % 4 else "b" for i in range(400)]  # 300 a, 100 b
    mask = validation_mask(hashes, labels, 0.1, seed=0)
    assert sum(m for m, lab in zip(mask.tolist(), labels) if lab == "a") == 30
    assert sum(m for m, lab in zip(mask.tolist(), labels) if lab == "b") == 10
    grown = validation_mask([*hashes, hashlib.sha256(b"new").hexdigest()], [*labels, "a"], 0.1, seed=0)
    assert grown[:400].tolist() == mask.tolist()  # 301 a still take 30: the same 30
    assert validation_mask(hashes, labels, 0.1, seed=1).tolist() != mask.tolist()
    assert not validation_mask(hashes, labels, 0.0, seed=0).any()


def test_early_stopping_keeps_the_best_epoch(splits: DigitSplits):
    """On noisy labels the model starts memorizing: training stops ``patience`` epochs after its best."""
    data = as_set(splits.pool[:800], noise=0.3)
    out = train(TASK, data, LABELS, ModelSection(epochs=60, patience=3, lr=3e-3, validation_share=0.2))
    info = out.info
    assert info["validation_examples"] >= MIN_VALIDATION
    assert info["epochs_run"] < 60
    assert info["epochs_run"] - info["best_epoch"] == 3
    assert info["final_val_loss"] > 0  # the last epoch's numbers, not the kept one's, are reported


def test_calibration_tempers_an_overconfident_model(splits: DigitSplits):
    """A model that memorizes noisy labels is overconfident: the temperature fitted on its validation split (> 1)
    lowers the negative log-likelihood on unseen items of the same distribution, and never changes an answer."""
    data = as_set(splits.pool[:800], noise=0.2, seed=0)
    held = as_set(splits.pool[800:1400], noise=0.2, seed=10)
    out = train(TASK, data, LABELS, ModelSection(epochs=30, patience=0, validation_share=0.25, augment=False))
    assert out.info["epochs_run"] == 30
    assert out.temperature > 1.0
    served = calibrated(out.module, out.temperature)
    assert nll(served, held) < nll(out.module, held)
    x = TASK.featurize([TASK.decode(b) for b in held.inputs])
    with torch.no_grad():
        assert torch.equal(served(x).argmax(1), out.module(x).argmax(1))


def test_small_sets_train_without_a_validation_split(splits: DigitSplits):
    """Fewer than MIN_VALIDATION held-out items would make early stopping chase noise: all data trains."""
    out = train(TASK, as_set(splits.seed[:60]), LABELS, ModelSection(epochs=2))
    assert out.info["validation_examples"] == 0 and out.info["train_examples"] == 60
    assert out.temperature == 1.0 and out.info["epochs_run"] == 2


def test_augmentation_moves_ink_but_keeps_the_background_and_is_seeded(splits: DigitSplits):
    x = TASK.featurize([normalize(p) for p, _ in splits.seed[:16]])
    a = TASK.augment(x, torch.Generator().manual_seed(1))
    b = TASK.augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x)
    background = float(x[0, 0, 0, 0])
    assert torch.allclose(a[:, :, 0, 0], torch.full((16, 1), background), atol=1e-5)  # corners stay blank
    out = train(TASK, as_set(splits.pool[:300]), LABELS, ModelSection(epochs=2, augment=True))
    assert out.info["augment"] is True


def test_bfloat16_changes_the_products_not_the_stored_weights_nor_the_accuracy(splits: DigitSplits):
    """The MLP trained with bfloat16 matrix products keeps float32 weights, learns as well on held-out digits as
    in float32 (not the same weights: the products really ran in bfloat16), and says which ran."""
    data, held = as_set(splits.pool[:600]), as_set(splits.pool[600:1200])
    runs = {p: train(TASK, data, LABELS, ModelSection(epochs=6, train_precision=p)) for p in ("float32", "bfloat16")}
    assert {p: r.info["precision"] for p, r in runs.items()} == {"float32": "float32", "bfloat16": "bfloat16"}
    weights = {p: r.module.state_dict() for p, r in runs.items()}
    assert all(w.dtype == torch.float32 for w in weights["bfloat16"].values())
    assert not torch.equal(weights["bfloat16"]["1.weight"], weights["float32"]["1.weight"])
    accuracy = {p: evaluate(TASK, calibrated(r.module, r.temperature), "mlp", held, LABELS)["accuracy"]
                for p, r in runs.items()}
    assert accuracy["bfloat16"] > 0.85 and abs(accuracy["bfloat16"] - accuracy["float32"]) < 0.03


def test_auto_precision_follows_the_cpu_and_unmeasured_models_stay_float32(splits: DigitSplits):
    from datawheel.precision import native_bf16
    from datawheel.tasks.text import TextClassification

    data = as_set(splits.pool[:200])
    auto = train(TASK, data, LABELS, ModelSection(epochs=1))
    assert auto.info["precision"] == ("bfloat16" if native_bf16() else "float32")
    texts = LabelledSet([t.encode() for t in ("good film", "bad film", "great plot", "awful plot")],
                        ["pos", "neg", "pos", "neg"], ["a", "b", "c", "d"])
    text = train(TextClassification(), texts, ("neg", "pos"), ModelSection(name="tfidf", epochs=1,
                                                                          train_precision="bfloat16"))
    assert text.info["precision"] == "float32"


def test_the_card_names_bfloat16_training():
    from datawheel.models.card import render

    metrics = {"accuracy": 0.9, "n": 10, "per_class_recall": {"a": 0.9, "b": 0.9}, "macro_f1": 0.9}

    def card(precision: str) -> str:
        return render(version=1, task="image-classification", labels=("a", "b"), metrics=metrics, dataset_id=None,
                      seed_items=10, parent=None, decision=None,
                      train_info={"model_name": "mlp", "validation_examples": 0, "precision": precision})

    assert "bfloat16" in card("bfloat16") and "bfloat16" not in card("float32")


class Interrupt(Exception):
    pass


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(splits: DigitSplits, tmp_path):
    data = as_set(splits.pool[:400])
    cfg = ModelSection(epochs=5, patience=0, augment=True)
    whole = train(TASK, data, LABELS, cfg)
    ckpt = tmp_path / "run.pt"

    def die_after_two(epoch: int, epochs: int, stats: dict) -> None:
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(TASK, data, LABELS, cfg, die_after_two, checkpoint=ckpt)
    assert ckpt.is_file()
    resumed = train(TASK, data, LABELS, cfg, checkpoint=ckpt)
    assert resumed.info["resumed_from_epoch"] == 2
    assert not ckpt.exists()  # a finished run leaves nothing behind
    for (k, v), w in zip(whole.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(v, w), k


def test_a_checkpoint_of_other_data_is_not_resumed(splits: DigitSplits, tmp_path):
    ckpt = tmp_path / "run.pt"
    cfg = ModelSection(epochs=3, patience=0)

    def die(epoch: int, epochs: int, stats: dict) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        train(TASK, as_set(splits.pool[:200]), LABELS, cfg, die, checkpoint=ckpt)
    out = train(TASK, as_set(splits.pool[200:400]), LABELS, cfg, checkpoint=ckpt)
    assert out.info["resumed_from_epoch"] == 0 and out.info["epochs_run"] == 3
    ckpt.write_bytes(b"half a file")  # damaged: ignored, never an error
    out = train(TASK, as_set(splits.pool[200:400]), LABELS, cfg, checkpoint=ckpt)
    assert out.info["resumed_from_epoch"] == 0 and not ckpt.exists()


def test_warm_start_begins_from_the_champion_and_says_so(ws: Workspace, splits: DigitSplits):
    registry = Registry(ws)
    champion = registry.load(registry.champion_version())
    data = ws.seed() + as_set(splits.pool[:200])
    out = challenge(ws, champion, data, "d1", "c1", warm_start=True)
    info = ws.store.get_model(out["candidate_version"])["train_info"]
    assert info["warm_start"] is True and info["warm_start_from"] == champion.version
    cold = challenge(ws, champion, data, "d1", "c2", warm_start=False)
    assert ws.store.get_model(cold["candidate_version"])["train_info"]["warm_start"] is False
    # A replacement for an erased user's data never starts from the weights that hold it.
    forced = challenge(ws, champion, data, "d2", "c3", warm_start=True,
                                replacing="the champion was trained on an erased user's data")
    assert ws.store.get_model(forced["candidate_version"])["train_info"]["warm_start"] is False


def test_warm_start_refuses_a_champion_of_another_architecture(ws: Workspace, splits: DigitSplits):
    registry = Registry(ws)
    champion = registry.load(registry.champion_version())
    ws.config = ws.config.model_copy(update={"model": ws.config.model.model_copy(update={"name": "cnn"})})
    with pytest.raises(CycleError, match="cannot warm-start"):
        challenge(ws, champion, ws.seed(), "d1", "c1", warm_start=True)



def test_the_registry_serves_a_model_with_its_fitted_temperature(ws: Workspace):
    registry = Registry(ws)
    net = TASK.build_model("mlp", len(LABELS))
    version = registry.register(TrainedModel("mlp", net, {"examples": 1}, temperature=2.0),
                                evaluate(TASK, net, "mlp", ws.golden(), LABELS), dataset_id=None, parent=None,
                                cycle_id=None, seed_items=0)
    loaded = registry.load(version)
    x = TASK.featurize([TASK.decode(b) for b in ws.golden().inputs[:5]])
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), net.eval()(x) / 2.0)
        assert torch.equal(loaded.network(x), net(x))


def test_no_warm_start_from_a_champion_an_erasure_names(ws: Workspace, splits: DigitSplits):
    """If a replacement was rejected, the champion still holds the erased user's data: later cycles train
    from scratch, and the receipt names models warm-started from tainted weights."""
    registry = Registry(ws)
    champion = registry.load(registry.champion_version())
    data = ws.seed() + as_set(splits.pool[:200])
    warm = challenge(ws, champion, data, "d1", "c1", warm_start=True)
    assert ws.store.get_model(warm["candidate_version"])["train_info"]["warm_start_from"] == champion.version
    with ws.store.engine.begin() as conn:
        from datawheel.store import tables as t

        conn.execute(t.erasures.insert().values(id="e1", user_ref="r", records_deleted=1, feedback_deleted=0,
                                                model_versions=[champion.version], at=datetime.now(UTC)))
    again = challenge(ws, champion, data, "d2", "c2", warm_start=True)
    info = ws.store.get_model(again["candidate_version"])["train_info"]
    assert info["warm_start"] is False and "erased" in info["warm_start_refused"]
    with ws.store.engine.connect() as conn:
        assert with_warm_descendants(conn, {champion.version}) == [champion.version,
                                                                            warm["candidate_version"]]


def test_a_cycle_drops_checkpoints_of_other_data(ws: Workspace, splits: DigitSplits):
    registry = Registry(ws)
    stale = ws.checkpoint_path("old-snapshot")
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"a run that can never resume")
    challenge(ws, registry.load(registry.champion_version()), ws.seed(), "d1", "c1")
    assert not stale.exists() and not ws.checkpoint_path("d1").exists()


def test_a_run_never_recreates_the_checkpoint_folder_an_erasure_deleted(splits: DigitSplits, tmp_path):
    """Erasure deletes checkpoints/ under a running cycle; the rest of that run writes no checkpoint."""
    import shutil

    folder = tmp_path / "checkpoints"
    folder.mkdir()

    def erase(epoch: int, model: torch.nn.Module) -> None:
        if epoch == 1:
            shutil.rmtree(folder)
    train(TASK, as_set(splits.pool[:200]), LABELS, ModelSection(epochs=3, patience=0), checkpoint=folder / "run.pt",
          after_epoch=erase)
    assert not folder.exists()


def test_a_checkpoint_holds_the_best_weights_once(splits: DigitSplits, tmp_path, monkeypatch):
    """The best epoch's weights are not written twice when they are the current ones; a model with large
    optimizer moments is checkpointed by its best weights alone and still finishes after a kill."""
    from datawheel.stages import train as train_stage

    data = as_set(splits.pool[:400])
    cfg = ModelSection(epochs=4, patience=0, validation_share=0.25)
    ckpt = tmp_path / "run.pt"
    weights = sum(p.numel() * 4 for p in TASK.build_model("mlp", len(LABELS)).parameters())
    sizes: list[tuple[int, bool]] = []

    def die_after(epoch: int, epochs: int, stats: dict) -> None:
        saved = torch.load(ckpt, weights_only=True)
        sizes.append((ckpt.stat().st_size, "opt" in saved))
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(TASK, data, LABELS, cfg, die_after, checkpoint=ckpt)
    assert sizes[0][1] and sizes[0][0] < 3.3 * weights  # weights + two moments, no second copy of the weights
    monkeypatch.setattr(train_stage, "MAX_CHECKPOINT_OPTIMIZER_BYTES", 0)
    sizes.clear()
    ckpt.unlink()
    with pytest.raises(Interrupt):
        train(TASK, data, LABELS, cfg, die_after, checkpoint=ckpt)
    assert all(not has_opt and size < 1.3 * weights for size, has_opt in sizes)
    saved = torch.load(ckpt, weights_only=True)
    resumed = train(TASK, data, LABELS, cfg, checkpoint=ckpt)
    assert resumed.info["resumed_from_epoch"] == saved["state"]["ran"] and resumed.info["epochs_run"] == 4
    assert not ckpt.exists()


def test_a_fine_tuned_models_card_says_what_fine_tuning_earned():
    from datawheel.models.card import render

    metrics = {"accuracy": 0.8, "n": 10, "per_class_recall": {"a": 0.8, "b": 0.8}, "macro_f1": 0.8}
    card = render(version=3, task="text-classification", labels=("a", "b"), metrics=metrics, dataset_id=None,
                  seed_items=10, parent=None, decision=None,
                  train_info={"model_name": "minilm-finetune", "validation_examples": 0})
    assert "frozen encoder + head (+5.5 points)" in card
    assert "frozen encoder" not in render(version=3, task="text-classification", labels=("a", "b"), metrics=metrics,
                                          dataset_id=None, seed_items=10, parent=None, decision=None,
                                          train_info={"model_name": "tfidf", "validation_examples": 0})
