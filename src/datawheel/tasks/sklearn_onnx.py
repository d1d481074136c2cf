"""A fitted scikit-learn model as ONNX, through skl2onnx, with the same contract as an exported network.

The graph skl2onnx writes outputs a label and class probabilities; three nodes are appended so it
outputs what every datawheel ONNX file outputs, ``logits`` (log-probabilities divided by the
calibration temperature). Its input is what the estimator takes: a string tensor named ``text`` for
text (the canonical texts themselves; the server turns code points back into strings before the call),
a float [N, D] tensor named ``features`` for images (the export then puts the pixels' standardization in
front, ``models/onnx_export.py``).
Text vectorizers are told scikit-learn's tokenizer and a locale every machine has (C.UTF-8; the
default en_US may not be installed). What skl2onnx cannot convert is refused with its reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datawheel.errors import ConfigError
from datawheel.tasks.sklearn_model import SklearnModel


def _final(estimator: Any) -> Any:
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def _options(estimator: Any) -> dict:
    """zipmap off (a plain probability tensor), and each text vectorizer's tokenizer spelled for ONNX Runtime."""
    from sklearn.feature_extraction.text import CountVectorizer

    options: dict = {id(_final(estimator)): {"zipmap": False}}
    parts = [estimator, *estimator.get_params(deep=True).values()]
    for part in parts:
        if isinstance(part, CountVectorizer):
            opts: dict = {"locale": "C.UTF-8"}
            if part.analyzer == "word" and part.tokenizer is None:
                opts["tokenexp"] = _re2(part.token_pattern)
            options[id(part)] = opts
    return options


def _re2(token_pattern: str) -> str:
    r"""scikit-learn's token pattern as ONNX Runtime's RE2 reads it. RE2's ``\w`` and ``\b`` are ASCII, so the
    default pattern left as it is never saw "café" or a Chinese word; spelled with Unicode classes, and
    without ``\b`` (a greedy run of two or more word characters already starts and ends at a word's edges),
    it finds the same tokens. Another pattern is passed as it is, and the export's agreement check decides."""
    pattern = token_pattern.removeprefix("(?u)")
    return r"[\p{L}\p{N}_]{2,}" if pattern == r"\b\w\w+\b" else pattern


def sklearn_to_onnx(model: SklearnModel, temperature: float = 1.0) -> bytes:
    """The serialized ONNX model; ConfigError naming the reason when skl2onnx cannot convert the pipeline."""
    try:
        import onnx
        from onnx import helper, numpy_helper
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    except ImportError:
        raise ConfigError("ONNX export of a scikit-learn model needs skl2onnx: pip install 'datawheel[onnx]'") from None
    est = model.estimator
    if est is None:
        raise ConfigError("an unfitted scikit-learn model cannot be exported")
    if list(np.asarray(est.classes_)) != list(range(model.n_classes)):
        raise ConfigError("cannot export to ONNX: a label had no training items, so the estimator has fewer "
                          "classes than the workspace")
    kind = (("text", StringTensorType([None])) if model.kind == "text"
            else ("features", FloatTensorType([None, int(est.n_features_in_)])))
    try:
        proto = convert_sklearn(est, initial_types=[kind], options=_options(est))
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many types for what it does not support
        raise ConfigError(f"skl2onnx cannot convert this pipeline ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300]}); the model still serves from its .pt artifact") from None
    graph = proto.graph
    probabilities = next(o.name for o in graph.output if o.name != "label")
    graph.initializer.extend([numpy_helper.from_array(np.array(1e-12, np.float32), "dw_floor"),
                              numpy_helper.from_array(np.array(temperature, np.float32), "dw_temperature")])
    graph.node.extend([helper.make_node("Max", [probabilities, "dw_floor"], ["dw_clipped"]),
                       helper.make_node("Log", ["dw_clipped"], ["dw_log"]),
                       helper.make_node("Div", ["dw_log", "dw_temperature"], ["logits"])])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", model.n_classes]))
    return proto.SerializeToString()
