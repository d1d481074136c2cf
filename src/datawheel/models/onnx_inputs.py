"""What an exported ONNX graph takes, said for someone outside Python, and the feed dict built for someone inside it.

An image graph takes grey pixels as uint8 and standardizes them itself, so any language that can
decode a PNG can feed it; what it cannot do in ONNX is datawheel's fit-and-centre normalization
(crop to the ink, antialiased resize into 20x20, centre of mass at the middle), which the
description below spells out step by step. A scikit-learn text graph takes the text itself. The
other text graphs take features no standard ONNX op computes (blake2b-hashed n-grams, a sentence
encoder's embeddings, a WordPiece tokenizer's ids), so the graph says "features" and
:func:`onnx_inputs` computes them exactly as the server does. :func:`describe` is the sidecar
``models/v<N>.inputs.json`` written beside each export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datawheel.errors import InvalidInput, WorkspaceError
from datawheel.models.registry import Registry
from datawheel.tasks.image import SIDE
from datawheel.version import __version__
from datawheel.workspace import Workspace

#: how datawheel turns any PNG/JPEG into the 28x28 item an image graph takes (``tasks.image.normalize``)
IMAGE_STEPS = (
    "decode the PNG or JPEG (a JPEG turned upright by its EXIF orientation)",
    "greyscale 0..255: transparency composited onto white, then Pillow's mode 'L' (ITU-R 601-2 luma: "
    "R*299/1000 + G*587/1000 + B*114/1000); a 16-bit grey PNG divided by 257",
    "background = median of the border pixels (first and last row and column); above 127, invert "
    "every pixel (255 - v) so the ink is light on dark",
    "subtract the background and clip to 0..255; if the peak is below 8 the image is blank: all zeros, "
    "stop here; else scale so the peak is 255",
    "crop to the rows and columns holding a pixel >= 25.5 (10 % of 255)",
    "resize the crop as float32 so its longer side is 20 and the other round(side * 20 / longer) (at least 1) "
    "with Pillow's BILINEAR filter (Image.Resampling.BILINEAR, antialiased when shrinking); clip to 0..255",
    "paste into a 28x28 zero canvas so the centre of mass (pixel indices weighted by value) lands on "
    "row 14, column 14: top = round(14 - cy), left = round(14 - cx), each clamped so the crop stays inside; "
    "round to uint8 (round half to even throughout)",
)
_TEXT_CANONICAL = ("Unicode NFKC, every run of whitespace made one space, trimmed; at most 10,000 characters "
                   "(what datawheel stores and predicts on)")
_FEATURES = {
    "tfidf": "each text's distinct hashed n-gram bucket ids with their counts, [ids, counts] on the last axis, "
             "(0, 0) padding: words, word bigrams and character n-grams of the canonical text hashed with "
             "blake2b (TextClassification.tfidf_features)",
    "ngram": "hashed n-gram ids, 0 padding: words, word bigrams and character 2-4-grams of the canonical text "
             "hashed with blake2b (TextClassification.features)",
    "minilm-head": "the canonical text's sentence embedding by the workspace's encoder (all-MiniLM-L6-v2 "
                   "unless model.encoder names another); the encoder is not in the graph",
    "minilm-finetune": "the encoder tokenizer's input_ids for the canonical text (WordPiece with [CLS] and "
                       "[SEP], truncated to 128 tokens, 0 padding)",
}


@dataclass(frozen=True)
class GraphInput:
    """The one input of a version's graph: its name, what it holds, and how to get there from a raw input."""

    name: str
    kind: str  # "pixels" | "text" | "features"
    description: str
    example: dict[str, str]  # a raw input, as /v1/predict takes it


def graph_input(ws: Workspace, model_name: str) -> GraphInput:
    """The input the export of a ``model_name`` model of this workspace takes."""
    task = ws.config.workspace.task
    if task == "image-classification":
        return GraphInput("pixels", "pixels", f"grey {SIDE}x{SIDE} images, light ink on dark, fitted and centred "
                          "as datawheel stores an image (the preprocessing steps); the graph casts, scales to 0..1 "
                          "and standardizes them", {"image": "<base64 PNG or JPEG>"})
    if task != "text-classification":
        raise WorkspaceError(f"a {task} workspace has no ONNX export")
    if model_name == "sklearn":
        return GraphInput("text", "text", f"the texts, one string each: {_TEXT_CANONICAL}", {"text": "<text>"})
    return GraphInput("features", "features", _FEATURES[model_name], {"text": "<text>"})


def model_name(ws: Workspace, version: int) -> str:
    return str(ws.store.get_model(version)["model_name"])


def describe(ws: Workspace, version: int, session: Any) -> dict:
    """The sidecar: the graph's real inputs and output (read from the onnxruntime ``session``), what they mean,
    the labels in output order, and the preprocessing a consumer must do."""
    spec = graph_input(ws, model_name(ws, version))
    graph = session.get_inputs()[0]
    steps = list(IMAGE_STEPS) if spec.kind == "pixels" else [_TEXT_CANONICAL]
    if spec.kind == "features":
        steps.append(spec.description)
    return {
        "datawheel_version": __version__, "model_version": version, "model_name": model_name(ws, version),
        "task": ws.config.workspace.task,
        "inputs": [{"name": graph.name, "dtype": _dtype(graph.type), "shape": list(graph.shape), "kind": spec.kind,
                    "description": spec.description}],
        "outputs": [{"name": o.name, "dtype": _dtype(o.type), "shape": list(o.shape),
                     "description": "logits; softmax over the last axis gives the probabilities /v1/predict "
                                    "returns as scores, one per label in `labels` order"}
                    for o in session.get_outputs()],
        "labels": list(ws.labels),
        "preprocessing": steps,
        "features_need_python": spec.kind == "features",
        "python": python_call(ws, version, spec),
    }


def python_call(ws: Workspace, version: int, spec: GraphInput) -> str:
    """The one line that builds the feed dict in Python."""
    return f"datawheel.onnx_inputs({str(ws.root)!r}, {spec.example!r}, version={version})"


def _dtype(onnx_type: str) -> str:
    """onnxruntime's ``tensor(float)`` as NumPy spells it."""
    inner = onnx_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(inner, inner)


def onnx_inputs(workspace: Workspace | str | Path, raw_input: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                version: int | None = None) -> dict[str, np.ndarray]:
    """The feed dict for ``onnxruntime.InferenceSession.run`` on version ``version``'s export (the champion's by
    default), from inputs as ``/v1/predict`` takes them: ``{"text": ...}``, ``{"image": base64}`` or
    ``{"pixels": [[...]]}``, one or a list.

    Inputs are parsed and validated as the server parses them (InvalidInput names the field). The server
    predicts on the privacy-screened item, so a text holding personal data it redacts may score differently.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    try:
        version = Registry(ws).champion_version() if version is None else version
        return _feed(ws, model_name(ws, version), raw_input)
    finally:
        if ws is not workspace:
            ws.store.close()


def _feed(ws: Workspace, name: str, raw_input: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict:
    raws = [raw_input] if isinstance(raw_input, Mapping) else list(raw_input)
    if not raws:
        raise InvalidInput("give at least one input", "raw_input")
    task, spec = ws.task, graph_input(ws, name)
    items = [task.parse(raw) for raw in raws]
    if spec.kind == "pixels":
        return {spec.name: np.stack(items).astype(np.uint8)}
    if spec.kind == "text":
        return {spec.name: np.array(items, dtype=object)}
    return {spec.name: task.featurize(items, name).numpy()}
