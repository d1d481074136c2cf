"""The model registry: versioned artifacts with checksums, golden-set metrics, lineage and aliases.

It keeps artifacts and nothing else: it never trains or evaluates (the cycle
does, through the stages) and it moves aliases only as one of its callers
decides.

An artifact stores the config that produced it (as nanoGPT checkpoints do), so
a model file alone says what it is. Loading verifies the sha256 recorded at
registration: a tampered or truncated file is refused rather than served.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
from torch import nn

from datawheel.artifacts import atomic_write_bytes, sha256_file
from datawheel.errors import Conflict, WorkspaceError
from datawheel.models import card as model_card
from datawheel.stages import release
from datawheel.stages.train import TrainedModel, calibrated
from datawheel.tasks.base import Predictor
from datawheel.workspace import Workspace


@dataclass(frozen=True)
class LoadedModel:
    version: int
    model_name: str
    #: what serves: the network with its calibration temperature applied (or its ONNX export)
    module: Predictor
    #: the bare network, whose weights a warm start begins from
    network: nn.Module


class Registry:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.store = ws.store

    def register(self, trained: TrainedModel, metrics: dict, *, dataset_id: str | None, parent: int | None,
                 cycle_id: str | None, seed_items: int, decision: dict | None = None) -> int:
        """Store the weights with the config that made them, their model card, and the registry row."""
        version = self.store.next_model_version()
        buf = io.BytesIO()
        torch.save({"format": 1, "task": self.ws.task.name, "labels": list(self.ws.labels),
                    "model_name": trained.model_name, "config": self.ws.config.model_dump(mode="json"),
                    "temperature": trained.temperature, "state_dict": trained.module.state_dict()}, buf)
        path = self.ws.model_path(version)
        atomic_write_bytes(path, buf.getvalue())
        model_card.write(path, model_card.render(
            version=version, task=self.ws.task.name, labels=self.ws.labels, train_info=trained.info,
            metrics=metrics, dataset_id=dataset_id, seed_items=seed_items, parent=parent,
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

    # Each alias change is computed from the map as it is inside the store's locked transaction, so
    # concurrent promotions, rollbacks and trial changes apply one after another, none lost.

    def promote(self, version: int, actor: str, reason: str,
                unless_erased: tuple[int, set[str]] | None = None) -> dict[str, int]:
        """``unless_erased``: see ``Store.update_aliases``; a cycle's candidate is promoted only through it."""
        self.store.get_model(version)  # raises NotFound for an unknown version
        return self.store.update_aliases(lambda old: release.promote(old, version), actor, "promotion",
                                         lambda _: {"version": version, "reason": reason}, unless_erased)

    def trial(self, name: str, version: int | None, actor: str, reason: str = "",
              only_if: int | None = None) -> dict[str, int]:
        """Start (or with None, stop) a ``shadow`` or ``canary`` trial of ``version`` beside the champion.

        ``only_if``: stop the trial only while it is still that version (the canary monitor judged that
        one; if an operator replaced it meanwhile, the new trial stands). Raises Conflict otherwise.
        """
        if version is not None:
            self.store.get_model(version)  # raises NotFound for an unknown version

        def change(old: dict[str, int]) -> dict[str, int]:
            if only_if is not None and old.get(name) != only_if:
                raise Conflict(f"the {name} is no longer v{only_if}")
            return release.trial(old, name, version)
        return self.store.update_aliases(change, actor, name,
                                         lambda _: {"version": version, **({"reason": reason} if reason else {})})

    def rollback(self, actor: str) -> dict[str, int]:
        return self.store.update_aliases(release.rollback, actor, "rollback", lambda new: {"version": new["champion"]})
