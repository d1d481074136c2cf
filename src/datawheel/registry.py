"""The model registry: versioned artifacts with checksums, golden-set metrics, lineage and aliases.

An artifact stores the config that produced it (as nanoGPT checkpoints do), so
a model file alone says what it is. Loading verifies the sha256 recorded at
registration: a tampered or truncated file is refused rather than served.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from datawheel import model_card
from datawheel.artifacts import LabelledSet, atomic_write_bytes, sha256_file
from datawheel.errors import CycleError, WorkspaceError
from datawheel.stages import release
from datawheel.stages.evaluate import classification_metrics, gate, slice_accuracy
from datawheel.stages.significance import bootstrap_ci, expected_calibration_error, mcnemar_exact
from datawheel.stages.train import TrainedModel, calibrated, train
from datawheel.tasks.base import predict_proba
from datawheel.workspace import Workspace


@dataclass(frozen=True)
class LoadedModel:
    version: int
    model_name: str
    #: what serves: the network with its calibration temperature applied
    module: nn.Module
    #: the bare network, whose weights a warm start begins from
    network: nn.Module


class Registry:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.store = ws.store

    def _predict(self, module: nn.Module, model_name: str, data: LabelledSet) -> tuple[np.ndarray, np.ndarray]:
        task = self.ws.task
        index = {lab: j for j, lab in enumerate(self.ws.labels)}
        features = task.featurize([task.decode(b) for b in data.inputs], model_name, cache=True)
        probs = predict_proba(module, features).numpy()
        return probs, np.array([index[lab] for lab in data.labels], dtype=np.int64)

    def evaluate(self, module: nn.Module, model_name: str, data: LabelledSet) -> dict:
        return self._metrics(*self._predict(module, model_name, data), data.meta)

    def _metrics(self, probs: np.ndarray, y: np.ndarray, meta: list[dict[str, str]] | None) -> dict:
        """Golden-set metrics with a bootstrap 95 % interval on accuracy, the calibration error and, where the
        golden set carries metadata, accuracy per slice."""
        metrics = classification_metrics(y, probs.argmax(1), self.ws.labels)
        right = probs.argmax(1) == y
        lo, hi = bootstrap_ci(right.astype(np.float64))
        out = {**metrics, "accuracy_ci95": [round(lo, 6), round(hi, 6)],
               "ece": round(expected_calibration_error(probs, y), 6)}
        if meta is not None:
            out["slices"] = slice_accuracy(right, meta)
        return out

    def register(self, trained: TrainedModel, metrics: dict, *, dataset_id: str | None, parent: int | None,
                 cycle_id: str | None, decision: dict | None = None) -> int:
        version = self.store.next_model_version()
        buf = io.BytesIO()
        torch.save({"format": 1, "task": self.ws.task.name, "labels": list(self.ws.labels),
                    "model_name": trained.model_name, "config": self.ws.config.model_dump(mode="json"),
                    "temperature": trained.temperature, "state_dict": trained.module.state_dict()}, buf)
        path = self.ws.model_path(version)
        atomic_write_bytes(path, buf.getvalue())
        model_card.write(path, model_card.render(
            version=version, task=self.ws.task.name, labels=self.ws.labels, train_info=trained.info,
            metrics=metrics, dataset_id=dataset_id, seed_items=len(self.ws.seed()), parent=parent,
            decision=decision))
        self.store.add_model(version=version, model_name=trained.model_name,
                             path=str(path.relative_to(self.ws.root)), sha256=sha256_file(path),
                             metrics=metrics, dataset_id=dataset_id, parent=parent, cycle_id=cycle_id,
                             train_info=trained.info)
        return version

    def load(self, version: int) -> LoadedModel:
        row = self.store.get_model(version)
        path = self.ws.root / row["path"]
        if not path.is_file() or sha256_file(path) != row["sha256"]:
            raise WorkspaceError(f"model v{version}: artifact {path.name} is missing or fails its sha256 check")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        encoder = blob["config"]["model"].get("encoder", "")
        if blob["model_name"].startswith("minilm") and encoder != self.ws.config.model.encoder:
            raise WorkspaceError(f"model v{version} embeds text with encoder {encoder or '(bundled MiniLM)'!r} but "
                                 f"model.encoder is now {self.ws.config.model.encoder or '(bundled MiniLM)'!r}; "
                                 "set it back, or train a new model with the new encoder")
        module = self.ws.task.build_model(blob["model_name"], len(blob["labels"]))
        module.load_state_dict(blob["state_dict"])
        module.eval()
        return LoadedModel(version, blob["model_name"], calibrated(module, blob.get("temperature", 1.0)), module)

    def champion_version(self, aliases: dict[str, int] | None = None) -> int:
        """The champion's version, from ``aliases`` when the caller has just read them."""
        aliases = self.store.aliases() if aliases is None else aliases
        if "champion" not in aliases:
            raise WorkspaceError("the workspace has no champion model; was `datawheel init` completed?")
        return aliases["champion"]

    def promote(self, version: int, actor: str, reason: str) -> dict[str, int]:
        self.store.get_model(version)  # raises NotFound for an unknown version
        new = release.promote(self.store.aliases(), version)
        self.store.set_aliases(new, actor, "promotion", {"version": version, "reason": reason})
        return new

    def trial(self, name: str, version: int | None, actor: str, reason: str = "") -> dict[str, int]:
        """Start (or with None, stop) a ``shadow`` or ``canary`` trial of ``version`` beside the champion."""
        if version is not None:
            self.store.get_model(version)  # raises NotFound for an unknown version
        new = release.trial(self.store.aliases(), name, version)
        self.store.set_aliases(new, actor, name, {"version": version, **({"reason": reason} if reason else {})})
        return new

    def rollback(self, actor: str) -> dict[str, int]:
        new = release.rollback(self.store.aliases())
        self.store.set_aliases(new, actor, "rollback", {"version": new["champion"]})
        return new

    def challenge(self, data: LabelledSet, *, dataset_id: str, cycle_id: str, champion: LoadedModel,
                  progress: Callable[[int, int, dict], None] | None = None, replacing: str = "",
                  warm_start: bool | None = None) -> dict:
        """Train a candidate on ``data``, gate it against the champion on the golden set, release if it passes.

        ``warm_start`` overrides the config's ``model.warm_start`` for this candidate.

        A rejected candidate is registered too (it was trained on users' data, so lineage must know it),
        but no alias points at it.
        """
        golden = self.ws.golden()
        cfg = self.ws.config.model
        warm = warm_start if warm_start is not None else cfg.warm_start
        # Never start from weights that hold an erased user's data: a replacement exists to drop them, and a
        # champion named in an erasure receipt (a rejected replacement left it in place) still holds them.
        tainted = bool(replacing) or champion.version in self.store.erased_model_versions()
        if warm and not tainted and champion.model_name != (cfg.name or self.ws.task.models[0]):
            raise CycleError(f"cannot warm-start: the champion v{champion.version} is a {champion.model_name!r} "
                             f"model and the config trains {cfg.name or self.ws.task.models[0]!r}")
        checkpoint = self.ws.checkpoint_path(dataset_id)
        for stale in checkpoint.parent.glob("*.pt"):  # other data's runs can never resume: drop them
            if stale != checkpoint:
                stale.unlink(missing_ok=True)
        candidate = train(self.ws.task, data, self.ws.labels, cfg, progress,
                          init_state=champion.network.state_dict() if warm and not tainted else None,
                          checkpoint=checkpoint)
        if warm and not tainted:
            candidate.info["warm_start_from"] = champion.version
        elif warm:
            candidate.info["warm_start_refused"] = "the champion's weights hold an erased user's data"
        served = calibrated(candidate.module, candidate.temperature)
        cand_probs, y = self._predict(served, candidate.model_name, golden)
        champ_probs, _ = self._predict(champion.module, champion.model_name, golden)
        cand_metrics = self._metrics(cand_probs, y, golden.meta)
        champ_metrics = self._metrics(champ_probs, y, golden.meta)
        paired = mcnemar_exact(cand_probs.argmax(1) == y, champ_probs.argmax(1) == y)
        champion_examples = self.store.get_model(champion.version)["train_info"].get("examples", 0)
        decision = gate(cand_metrics, champ_metrics, self.ws.config.gate, paired=paired,
                        more_data=len(data) > champion_examples, replacing=replacing)
        version = self.register(candidate, cand_metrics, dataset_id=dataset_id, parent=champion.version,
                                cycle_id=cycle_id, decision={"decision": decision.name,
                                                             "decision_reasons": decision.reasons,
                                                             "mcnemar": paired})
        if decision.promote:
            self.promote(version, actor="cycle", reason="; ".join(decision.reasons))
        return {
            "trained_on": len(data),
            "candidate_version": version,
            "candidate_metrics": cand_metrics,
            "champion_metrics_before": champ_metrics,
            "decision": decision.name,
            "decision_reasons": decision.reasons,
            "mcnemar": paired,
            "champion_version": version if decision.promote else champion.version,
            "champion_accuracy": cand_metrics["accuracy"] if decision.promote else champ_metrics["accuracy"],
        }

    def bootstrap(self, seed: LabelledSet, golden: LabelledSet,
                  progress: Callable[[int, int, dict], None] | None = None) -> int:
        """Train model v1 on the seed set and make it champion."""
        trained = train(self.ws.task, seed, self.ws.labels, self.ws.config.model, progress)
        served = calibrated(trained.module, trained.temperature)
        metrics = self.evaluate(served, trained.model_name, golden)
        version = self.register(trained, metrics, dataset_id=None, parent=None, cycle_id=None)
        self.promote(version, actor="init", reason="model trained on the seed set at init")
        return version
