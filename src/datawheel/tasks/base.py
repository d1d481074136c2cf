"""The contract every task implements, small enough to remember.

A task owns everything that depends on the kind of input: turning a request's
``input`` object into a canonical item, the bytes that item is stored as, the
tensor a model eats, and the models that can eat it. Everything downstream
(store, stages, serving) handles items only through this interface, so adding a
task never touches the wheel.
"""

from __future__ import annotations

import hashlib
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from datawheel.errors import InvalidInput


def nfkc_text(text: str, field: str, max_raw_chars: int) -> str:
    """A text as sent, bounded before the costly normalization and made storable, in NFKC form.

    One check for every text task, so the same mistake is refused with the same words wherever it is sent.
    """
    if len(text) > max_raw_chars:
        raise InvalidInput(f"is {len(text)} characters as sent; at most {max_raw_chars} before normalization", field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("contains invalid Unicode (a lone surrogate)", field) from None
    return unicodedata.normalize("NFKC", text)


def wordless(text: str) -> bool:
    """No letter and no digit in any script: punctuation and emoji alone say nothing a model could follow."""
    return not any(unicodedata.category(ch)[0] in "LN" for ch in text)


class Task(ABC):
    """One kind of input and the models for it: exactly what the wheel calls, nothing else.

    - ``name``: the workspace config and the datasheets name the task by it.
    - ``models``: the model names :meth:`build_model` accepts (the first is the default), so a
      config can be checked before any training starts.
    - :meth:`parse`: the online path and the importers turn a request's ``input`` into the canonical
      item, the only form ever stored.
    - :meth:`encode` / :meth:`decode`: the store keeps items as bytes; equal meaning gives equal bytes,
      which is what makes exact de-duplication by content hash work.
    - :meth:`content_hash`: identity for de-duplication, lineage and caches.
    - :meth:`quality_issue`: curation drops an item that carries no signal, with a reason code.
    - :meth:`near_duplicate_clusters`: curation pools the votes of near-copies and finds re-encoded
      golden items.
    - :meth:`vectorize`: the fixed-length vectors confident learning fits its check model on.
    - :meth:`show`: annotators (API and CLI) and the dataset export see an item as JSON.
    - :meth:`featurize` / :meth:`variable_dims`: training, evaluation and serving feed models the
      same tensors; ONNX export keeps the variable axes dynamic.
    - :meth:`augment`: training perturbs batches where the task knows a safe perturbation.
    - :meth:`build_model`: training and the registry make a fresh model to train or load weights into.
    - :meth:`drop_cached` / :meth:`keep_cached`: erasure and retention reach whatever the task cached.
    """

    name: str
    #: model names accepted by :meth:`build_model`; the first is the default
    models: tuple[str, ...]
    #: models whose training may multiply in bfloat16 (``model.train_precision``): those measured to lose nothing
    bf16_models: tuple[str, ...] = ()

    @abstractmethod
    def parse(self, payload: Mapping[str, Any]) -> Any:
        """Validate a request's ``input`` object and return the canonical item.

        Raises :class:`datawheel.errors.InvalidInput` naming the offending field, so a client can fix
        its request without the server ever echoing the value.
        """

    @abstractmethod
    def encode(self, item: Any) -> bytes:
        """Canonical bytes of an item: what the store keeps and hashes."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """Inverse of :meth:`encode`."""

    @abstractmethod
    def quality_issue(self, item: Any) -> str | None:
        """A reason code (``blank_input``, ...) when an item should not be trained on whatever its label, else None.

        Curation stores the code as the record's verdict, so a dropped record always says why.
        """

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
        """The item as a JSON object an annotator can be shown: ``{"image": base64 PNG}`` or ``{"text": str}``.

        The dataset export reads the same object, so those two shapes are the ones it knows.
        """

    def variable_dims(self, model: str = "") -> tuple[int, ...]:
        """Axes of :meth:`featurize`'s output for ``model`` whose size varies between batches (ONNX keeps them
        dynamic)."""
        return (0,)

    @abstractmethod
    def featurize(self, items: Sequence[Any], model: str = "", *, cache: bool = False) -> torch.Tensor:
        """Stack items into the batch tensor the model named ``model`` takes ("" = the task's default features).

        ``cache``: reuse and keep derived features (training and evaluation do; serving never does).
        """

    def drop_cached(self, content_hashes: set[str]) -> None:  # noqa: B027 - most tasks cache nothing
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
        return self.encoded(item)[1]

    def encoded(self, item: Any) -> tuple[bytes, str]:
        """The stored bytes and their identity (:meth:`content_hash`), the item encoded once for both."""
        data = self.encode(item)
        return data, hashlib.sha256(data).hexdigest()


class Predictor(Protocol):
    """What serving and evaluation call: a torch module, or a stand-in such as an onnxruntime session."""

    def __call__(self, features: torch.Tensor) -> torch.Tensor: ...

    def eval(self) -> Any: ...


@torch.no_grad()
def predict_logits(model: Predictor, features: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits [N, n_classes], in eval mode, in batches so memory stays flat.

    A module already in eval mode is not switched again: ``eval()`` walks every submodule, which cost a served
    request (a batch of one) about 28 microseconds, a sixth of its forward pass. Only a training loop switches
    modes, and it does so on the whole module, so the top-level flag tells.
    """
    if getattr(model, "training", True):
        model.eval()
    if len(features) == 0:
        return torch.zeros((0, 0))
    if len(features) <= batch_size:
        return model(features)
    return torch.cat([model(features[i:i + batch_size]) for i in range(0, len(features), batch_size)])


def predict_proba(model: Predictor, features: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities [N, n_classes]."""
    return torch.softmax(predict_logits(model, features, batch_size), dim=1)
