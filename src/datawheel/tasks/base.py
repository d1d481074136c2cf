"""The contract every task implements, small enough to remember.

A task owns everything that depends on the kind of input: turning a request's
``input`` object into a canonical item, the bytes that item is stored as, the
tensor a model eats, and the models that can eat it. Everything downstream
(store, stages, serving) handles items only through this interface, so adding a
task never touches the wheel.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class Task(ABC):
    """One kind of input and the models for it.

    Items are canonical and hashable through :meth:`encode`: two requests that
    mean the same input produce the same bytes, which is what makes exact
    de-duplication by content hash work.
    """

    name: str
    #: model names accepted by :meth:`build_model`; the first is the default
    models: tuple[str, ...]

    @abstractmethod
    def parse(self, payload: Mapping[str, Any]) -> Any:
        """Validate a request's ``input`` object and return the canonical item.

        Raises :class:`datawheel.errors.InvalidInput` naming the offending field.
        """

    @abstractmethod
    def parse_file(self, path: Path) -> Any:
        """Read one item from a file referenced by an import (an image path)."""

    @abstractmethod
    def encode(self, item: Any) -> bytes:
        """Canonical bytes of an item: what the store keeps and hashes."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """Inverse of :meth:`encode`."""

    @abstractmethod
    def is_blank(self, item: Any) -> bool:
        """True for an input that carries no signal (empty text, a blank image)."""

    def quality_issue(self, item: Any) -> str | None:
        """A reason code when an item should not be trained on whatever its label, else None."""
        return "blank_input" if self.is_blank(item) else None

    def near_duplicate_clusters(self, items: Sequence[Any]) -> list[int]:
        """A cluster id per item; items sharing one are the same input in all but noise."""
        return list(range(len(items)))

    def vectorize(self, items: Sequence[Any]) -> Any:
        """A fixed-length vector per item (dense array or sparse matrix) for classic models.

        Curation fits a logistic regression on these to get out-of-fold probabilities.
        """
        return self.featurize(items).flatten(1).numpy().astype(np.float64)

    @abstractmethod
    def show(self, item: Any) -> dict:
        """The item as a JSON object an annotator can be shown (an image as PNG, text as text)."""

    def variable_dims(self, model: str = "") -> tuple[int, ...]:
        """Axes of :meth:`featurize`'s output for ``model`` whose size varies between batches (ONNX keeps them
        dynamic)."""
        return (0,)

    #: (column name, Hugging Face feature) of the input column in an exported dataset
    hf_feature: tuple[str, dict]
    #: the same feature as a dataset card's ``dtype``
    hf_dtype: str

    @abstractmethod
    def hf_value(self, item: Any) -> Any:
        """The item as a value of :attr:`hf_feature` (PNG bytes for an image, the string for text)."""

    @abstractmethod
    def featurize(self, items: Sequence[Any], model: str = "", *, cache: bool = False) -> torch.Tensor:
        """Stack items into the batch tensor the model named ``model`` takes ("" = the task's default features).

        ``cache``: reuse and keep derived features (training and evaluation do; serving never does).
        """

    def drop_cached(self, content_hashes: set[str]) -> None:
        """Drop anything the task cached about these items (an erased user's inputs)."""

    def keep_cached(self, content_hashes: set[str]) -> int:
        """Drop everything the task cached about items not in ``content_hashes``; return how many went."""
        return 0

    def augment(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A randomly perturbed copy of a featurized training batch; tasks without a safe perturbation return it."""
        return batch

    @abstractmethod
    def build_model(self, name: str, n_classes: int) -> nn.Module:
        """A freshly initialised model; ``name`` is one of :attr:`models`."""

    def content_hash(self, item: Any) -> str:
        """Identity of an item's content, used for de-duplication and lineage."""
        return hashlib.sha256(self.encode(item)).hexdigest()


@torch.no_grad()
def predict_logits(model: nn.Module, features: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits [N, n_classes], in eval mode, in batches so memory stays flat."""
    model.eval()
    if len(features) == 0:
        return torch.zeros((0, 0))
    return torch.cat([model(features[i:i + batch_size]) for i in range(0, len(features), batch_size)])


def predict_proba(model: nn.Module, features: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities [N, n_classes]."""
    return torch.softmax(predict_logits(model, features, batch_size), dim=1)
