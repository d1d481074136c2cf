"""Training: a candidate model on seed + snapshot, reproducible given the config's seed.

AdamW with a one-cycle learning-rate schedule: far fewer epochs than the seed
document's plain SGD recipe for the same accuracy on CPU; the models a task names in
``bf16_models`` multiply in bfloat16 where the CPU does so natively (``train_precision``),
twice as fast per epoch, keeping float32 weights. A validation split is
carved from the training data (never the golden set, which only the gate may
see): it stops training once validation accuracy stops improving, keeps the best
epoch's weights, and fits the temperature that calibrates the model's probabilities.
The same seed, data, thread count and precision give the same weights, and a run killed
mid-way resumes from its last epoch's checkpoint to those same weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from datawheel.artifacts import LabelledSet, Progress, atomic_write_bytes
from datawheel.config import ModelSection
from datawheel.errors import CycleError
from datawheel.precision import train_in_bf16
from datawheel.tasks.base import Task, predict_logits
from datawheel.tasks.sklearn_model import SklearnModel

#: called after each epoch with (epoch, epochs, {"loss": ..., "train_accuracy": ..., "val_accuracy": ...})
#: called after each epoch with (epoch, the model in eval mode); benchmarks score it on their test set
AfterEpoch = Callable[[int, nn.Module], None]
#: below this many validation items early stopping and calibration would chase noise, so they are skipped
MIN_VALIDATION = 20
#: a model whose AdamW moments exceed this is checkpointed by its best weights alone: a fine-tuned MiniLM's
#: moments are 180 MB, twice its weights, and its checkpoint was 270-360 MB rewritten every epoch
MAX_CHECKPOINT_OPTIMIZER_BYTES = 64 * 2 ** 20


@dataclass(frozen=True)
class TrainedModel:
    model_name: str
    module: nn.Module
    info: dict
    #: divide the logits by this to calibrate the probabilities (1.0: not fitted)
    temperature: float = 1.0


class Calibrated(nn.Module):
    """A model whose logits are divided by a fitted temperature: same argmax, honest confidence."""

    temperature: torch.Tensor

    def __init__(self, inner: nn.Module, temperature: float) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) / self.temperature


def warm_up() -> None:
    """Import now what the first optimizer call would import later: torch._dynamo, 1.5-2 s.

    torch wraps its optimizers' methods so that their first call imports torch._dynamo. ``init`` calls this
    while worker processes decode the seed set, so the import costs no wait of its own.
    """
    import torch._dynamo  # noqa: F401


def calibrated(module: nn.Module, temperature: float) -> nn.Module:
    """The module as served: wrapped with its temperature unless that is 1."""
    return module if temperature == 1.0 else Calibrated(module, temperature).eval()


def validation_mask(hashes: list[str], labels: list[str], share: float, seed: int) -> torch.Tensor:
    """Which items validate: a stable hash of (seed, content), so an item stays on its side across cycles.

    Per class, the items with the smallest hashes go to validation, so every class with enough items is
    represented in proportion and the split does not move when other items arrive.
    """
    mask = torch.zeros(len(hashes), dtype=torch.bool)
    if share <= 0:
        return mask
    by_class: dict[str, list[tuple[str, int]]] = {}
    for i, (h, lab) in enumerate(zip(hashes, labels)):
        by_class.setdefault(lab, []).append((hashlib.sha256(f"{seed}:{h}".encode()).hexdigest(), i))
    for members in by_class.values():
        take = int(len(members) * share)
        for _, i in sorted(members)[:take]:
            mask[i] = True
    return mask


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature minimizing validation NLL (Guo et al., 2017), searched over log T so T stays positive."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)
    loss_fn = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return round(t, 6) if math.isfinite(t) and 0.05 <= t <= 20 else 1.0


def _run_key(data: LabelledSet, labels: tuple[str, ...], cfg: ModelSection, model_name: str,
             init_state: Mapping[str, torch.Tensor] | None) -> str:
    """What a checkpoint must match to be resumed: the same data, labels, recipe and starting weights."""
    h = hashlib.sha256()
    for part in (*data.hashes, "|", *data.labels, "|", *labels, "|", model_name, cfg.model_dump_json()):
        h.update(part.encode())
        h.update(b"\0")
    if init_state is not None:
        for k in sorted(init_state):
            h.update(k.encode())
            h.update(init_state[k].detach().cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass
class _Run:
    """Where a training run stands; saved with every checkpoint (as a dict) so a resumed run continues it."""

    epoch: int = 0
    ran: int = 0
    best_accuracy: float = -1.0
    best_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    last: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Split:
    x: torch.Tensor  # [N_train, ...]
    y: torch.Tensor  # [N_train]
    x_val: torch.Tensor  # [N_val, ...]
    y_val: torch.Tensor  # [N_val]


def train(task: Task, data: LabelledSet, labels: tuple[str, ...], cfg: ModelSection,
          progress: Progress | None = None, *, init_state: Mapping[str, torch.Tensor] | None = None,
          checkpoint: Path | None = None, after_epoch: AfterEpoch | None = None) -> TrainedModel:
    """``init_state``: weights to start from (warm start); ``checkpoint``: where each epoch is saved and
    resumed from, deleted once training finishes."""
    if len(data) == 0:
        raise CycleError("nothing to train on: the seed set and the snapshot are both empty")
    model_name = cfg.name or task.models[0]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    split = _split(task, data, labels, cfg, model_name)
    model = task.build_model(model_name, len(labels))
    if isinstance(model, SklearnModel):
        return _fit_estimator(model, len(data), split, cfg, progress)
    _warm_start(model, model_name, init_state)
    opt, sched = _optimizer(model, cfg, len(split.y))
    gen = torch.Generator().manual_seed(cfg.seed)
    key = _run_key(data, labels, cfg, model_name, init_state)
    run = _resume(checkpoint, key, model, opt, sched, gen)
    resumed_from = run.ran
    bf16 = model_name in task.bf16_models and train_in_bf16(cfg.train_precision)
    while run.epoch < cfg.epochs:
        _one_epoch(task, model, split, cfg, opt, sched, gen, run, bf16)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, key, model, opt, sched, gen, run)
        if after_epoch is not None:
            after_epoch(run.ran, model.eval())
        if progress is not None:
            progress(run.ran, cfg.epochs, run.last)
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    temperature = 1.0
    if len(split.y_val) > 0 and cfg.calibrate:
        temperature = fit_temperature(predict_logits(model, split.x_val), split.y_val)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    info = {"model_name": model_name, "examples": len(data), "train_examples": len(split.y),
            "validation_examples": len(split.y_val), "epochs": cfg.epochs, "epochs_run": run.ran,
            "best_epoch": run.best_epoch or None, "seed": cfg.seed, "optimizer": "AdamW", "schedule": "one-cycle",
            "augment": cfg.augment, "precision": "bfloat16" if bf16 else "float32",
            "temperature": temperature, "warm_start": init_state is not None,
            "resumed_from_epoch": resumed_from, **{f"final_{k}": round(v, 6) for k, v in run.last.items()}}
    return TrainedModel(model_name, model, info, temperature)


def _split(task: Task, data: LabelledSet, labels: tuple[str, ...], cfg: ModelSection, model_name: str) -> _Split:
    index = {lab: j for j, lab in enumerate(labels)}
    x_all = task.featurize([task.decode(b) for b in data.inputs], model_name, cache=True)  # [N, ...]
    y_all = torch.tensor([index[lab] for lab in data.labels], dtype=torch.long)  # [N]
    val = validation_mask(data.hashes, data.labels, cfg.validation_share, cfg.seed)
    if int(val.sum()) < MIN_VALIDATION:  # share < 1 leaves every class at least one training item
        val = torch.zeros(len(y_all), dtype=torch.bool)
    return _Split(x_all[~val], y_all[~val], x_all[val], y_all[val])


def _fit_estimator(model: SklearnModel, examples: int, split: _Split, cfg: ModelSection,
                   progress: Progress | None) -> TrainedModel:
    """A scikit-learn estimator fits in one call: no epochs, so nothing to stop early, checkpoint or warm-start
    (it always starts from its factory). The validation split still scores it and fits its temperature."""
    spec = cfg.estimator or model.default_estimator(cfg.language)
    model.fit(split.x, split.y, spec, threads=cfg.threads, seed=cfg.seed)
    model.eval()
    last = {"train_accuracy": float((predict_logits(model, split.x).argmax(1) == split.y).float().mean())}
    temperature = 1.0
    if len(split.y_val) > 0:
        val_logits = predict_logits(model, split.x_val)
        last["val_accuracy"] = float((val_logits.argmax(1) == split.y_val).float().mean())
        if cfg.calibrate:
            temperature = fit_temperature(val_logits, split.y_val)
    if progress is not None:
        progress(1, 1, last)
    info = {"model_name": "sklearn", "estimator": spec, "examples": examples, "train_examples": len(split.y),
            "validation_examples": len(split.y_val), "epochs": 1, "epochs_run": 1, "best_epoch": None,
            "seed": cfg.seed, "optimizer": f"scikit-learn {spec}", "schedule": "no", "augment": False,
            "temperature": temperature, "warm_start": False, "resumed_from_epoch": 0,
            **{f"final_{k}": round(v, 6) for k, v in last.items()}}
    return TrainedModel("sklearn", model, info, temperature)


def _warm_start(model: nn.Module, model_name: str, init_state: Mapping[str, torch.Tensor] | None) -> None:
    if init_state is not None:
        try:
            model.load_state_dict(init_state)
        except RuntimeError as exc:
            raise CycleError(f"cannot warm-start a {model_name!r} model from the champion's weights: "
                             "they belong to a different architecture or label set") from exc


def _optimizer(model: nn.Module, cfg: ModelSection,
               n_train: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    # A model may ask for its own learning rates per part (a pretrained encoder wants a far smaller one).
    param_groups = getattr(model, "param_groups", None)
    groups: list[dict[str, Any]] = (param_groups(cfg) if callable(param_groups)
              else [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}])
    # fused: one kernel per step instead of five per parameter; it took a quarter of an MLP's training time
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[float(g["lr"]) for g in groups], epochs=cfg.epochs,
                                                steps_per_epoch=math.ceil(n_train / cfg.batch_size))
    return opt, sched


def _resume(checkpoint: Path | None, key: str, model: nn.Module, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator) -> _Run:
    """A full checkpoint resumes to the very weights an uninterrupted run reaches; a light one (best weights, no
    optimizer moments) continues from its best epoch with fresh moments on the same schedule."""
    saved = _load_checkpoint(checkpoint, key)
    if saved is None:
        return _Run()
    model.load_state_dict(saved["model"])
    if "opt" in saved:
        opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    for group, lr in zip(opt.param_groups, sched.get_last_lr()):
        group["lr"] = lr
    gen.set_state(saved["gen"])
    torch.set_rng_state(saved["torch_rng"])
    run = _Run(**saved["state"])
    if saved.get("best_is_current"):
        run.best_state = {k: v.detach().clone() for k, v in saved["model"].items()}
    return run


def _light(opt: torch.optim.Optimizer) -> bool:
    """Whether the optimizer's moments (two per trainable value) are too large to write every epoch."""
    values = sum(p.numel() * p.element_size() for g in opt.param_groups for p in g["params"])
    return 2 * values > MAX_CHECKPOINT_OPTIMIZER_BYTES


def _one_epoch(task: Task, model: nn.Module, split: _Split, cfg: ModelSection, opt: torch.optim.Optimizer,
               sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator, run: _Run, bf16: bool) -> None:
    """Train one epoch, score the validation split, keep the best weights, decide whether to stop."""
    loss_fn = nn.CrossEntropyLoss()
    last = _train_epoch(task, model, split.x, split.y, cfg, opt, sched, gen, loss_fn, bf16)
    has_val = len(split.y_val) > 0
    if has_val:
        val_logits = predict_logits(model, split.x_val)
        val_loss = float(loss_fn(val_logits, split.y_val))
        val_acc = float((val_logits.argmax(1) == split.y_val).float().mean())
        last |= {"val_loss": val_loss, "val_accuracy": val_acc}
        # Accuracy first: late in a one-cycle run the loss can rise with confidence while answers still
        # improve; calibration repairs the confidence afterwards. The loss breaks ties.
        if (val_acc, -val_loss) > (run.best_accuracy, -run.best_loss):
            run.best_accuracy, run.best_loss, run.best_epoch = val_acc, val_loss, run.epoch + 1
            run.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    run.epoch = run.ran = run.epoch + 1
    run.last = last
    if has_val and cfg.patience > 0 and run.epoch - run.best_epoch >= cfg.patience:
        run.epoch = cfg.epochs  # a resumed run must not train past the stopping point either


def _train_epoch(task: Task, model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ModelSection,
                 opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator,
                 loss_fn: nn.Module, bf16: bool) -> dict:
    """One pass over the training items in a seeded order; returns the epoch's mean loss and accuracy.

    ``bf16``: the forward pass (and so the backward's matrix products) runs under bfloat16 autocast; the weights,
    their updates and the loss stay float32.
    """
    model.train()
    order = torch.randperm(len(y), generator=gen)
    total, correct, loss_sum = 0, 0, 0.0
    for start in range(0, len(y), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        xb = task.augment(x[idx], gen) if cfg.augment else x[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb).float()  # [B, n_classes]
        loss = loss_fn(logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y[idx]).sum())
        total += len(idx)
    return {"loss": loss_sum / total, "train_accuracy": correct / total}


def _load_checkpoint(path: Path | None, key: str) -> dict | None:
    """The saved run if it is this run; a checkpoint of other data, or one that cannot be read, is ignored."""
    if path is None or not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many types for a damaged or foreign file; training from scratch is safe
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def _save_checkpoint(path: Path, key: str, model: nn.Module, opt: torch.optim.Optimizer,
                     sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator, run: _Run) -> None:
    """Everything the next epoch depends on, written whole so a kill leaves the previous epoch's file.

    Best effort: an erasure deletes the folder (the weights were trained on the erased user), and the run
    must not bring it back; losing a checkpoint only costs a resume. The caller creates the folder.
    """
    if not path.parent.is_dir():
        return
    state = {f.name: getattr(run, f.name) for f in fields(run)} | {"best_state": None}
    # The best weights are written once: as the model's when this epoch is the best, else on their own.
    current = run.best_state is None or run.best_epoch == run.epoch
    payload = {"key": key, "sched": sched.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
               "state": state, "best_is_current": run.best_state is not None and current}
    if _light(opt):  # big moments: keep the best weights only, rewritten when they change (or with no validation)
        if not current:
            return
        payload["model"] = model.state_dict()
    else:
        payload |= {"model": model.state_dict(), "opt": opt.state_dict()}
        state["best_state"] = None if current else run.best_state
    buf = io.BytesIO()
    torch.save(payload, buf)
    with contextlib.suppress(FileNotFoundError):
        atomic_write_bytes(path, buf.getvalue())
