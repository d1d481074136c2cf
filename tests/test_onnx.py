"""ONNX export and onnxruntime serving give the same predictions as PyTorch, and an exported graph can be fed
from outside datawheel: raw grey pixels for images, text or ``datawheel.onnx_inputs`` features for text."""

from __future__ import annotations

import base64
import io
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import datawheel
from conftest import APP, make_client
from datawheel.cli.main import app as cli
from datawheel.errors import InvalidInput, WorkspaceError
from datawheel.models.onnx_export import OnnxModule, export, inputs_path, load_onnx, onnx_path
from datawheel.models.registry import Registry
from datawheel.tasks.base import predict_proba
from datawheel.tasks.image import to_png_base64
from datawheel.wheel.init import init_workspace

ort = pytest.importorskip("onnxruntime")


def test_export_cli_writes_a_checked_onnx_file(ws):
    """`datawheel export` writes models/v1.onnx after 100 % agreement with PyTorch on the golden set."""
    out = CliRunner().invoke(cli, ["export", str(ws.root), "--format", "onnx", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["version"] == 1 and result["agreement"] == 1.0 and result["items"] == len(ws.golden())
    assert onnx_path(ws, 1).is_file()
    assert CliRunner().invoke(cli, ["export", str(ws.root), "--format", "tflite"]).exit_code == 2
    assert CliRunner().invoke(cli, ["export", str(ws.root), "--version", "42"]).exit_code != 0


def test_onnx_and_torch_agree_on_fresh_inputs_of_any_batch_size(ws, splits):
    """Batch size is dynamic in the export; probabilities match PyTorch to float precision."""
    export(ws, 1)
    torch_model = Registry(ws).load(1).module
    onnx_model = OnnxModule(onnx_path(ws, 1))
    items = [ws.task.parse({"pixels": px.tolist()}) for px, _ in splits.pool[:37]]
    for batch in (items[:1], items):
        x = ws.task.featurize(batch)
        a, b = predict_proba(torch_model, x).numpy(), predict_proba(onnx_model, x).numpy()
        assert np.abs(a - b).max() < 1e-4 and (a.argmax(1) == b.argmax(1)).all()


def test_server_runs_the_champion_on_onnxruntime(ws, splits):
    """With runtime=onnx the API answers exactly as the PyTorch server does."""
    bodies = [{"user_id": "u", "input": {"image": to_png_base64(px)}} for px, _ in splits.pool[:10]]
    answers = {}
    for runtime in ("torch", "onnx"):
        with make_client(ws, runtime=runtime) as client:
            answers[runtime] = [client.post("/v1/predict", headers=APP, json=b).json() for b in bodies]
    assert onnx_path(ws, 1).is_file()  # exported on first use
    for t, o in zip(answers["torch"], answers["onnx"]):
        assert t["label"] == o["label"] and t["model_version"] == o["model_version"] == 1
        assert max(abs(t["scores"][k] - o["scores"][k]) for k in t["scores"]) < 1e-4


def test_text_models_export_with_a_dynamic_sequence_length(tmp_path):
    """The n-gram model's padded length varies per batch; the export must accept any length."""
    import torch

    from datawheel.tasks.text import TextClassification

    task = TextClassification()
    model = task.build_model("ngram", 2).eval()
    ids = task.featurize(["short", "a much longer sentence with many more words in it than the first"])
    dims = {axis: torch.export.Dim(f"d{axis}") for axis in task.variable_dims()}
    torch.onnx.export(model, (ids,), dynamic_shapes=(dims,), dynamo=True).save(str(tmp_path / "t.onnx"))
    onnx_model = OnnxModule(tmp_path / "t.onnx")
    for texts in (["x"], ["one two three four five six seven eight nine ten eleven", "好", "ok"]):
        x = task.featurize(texts)
        assert np.abs(predict_proba(model, x).numpy() - predict_proba(onnx_model, x).numpy()).max() < 1e-5


@pytest.mark.parametrize("runtime", ["tensorflow"])
def test_unknown_runtime_is_refused(runtime):
    from pydantic import ValidationError

    from datawheel.settings import Settings

    with pytest.raises(ValidationError):
        Settings(runtime=runtime)


def test_a_tampered_onnx_file_never_serves(ws):
    """The ONNX file is sha256-checked against the export's record before it loads, as the weights are."""
    export(ws, 1)
    assert load_onnx(ws, 1).version == 1
    path = onnx_path(ws, 1)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(WorkspaceError, match="sha256"):
        load_onnx(ws, 1)


def _documented_pixels(png: bytes) -> np.ndarray:
    """The preprocessing steps `datawheel export` prints for an image graph, followed with PIL and NumPy alone,
    as a consumer in another language would follow them."""
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    background = np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
    if background > 127:
        grey, background = 255 - grey, 255 - background
    grey = np.clip(grey - background, 0, 255)
    if grey.max() < 8:
        return np.zeros((28, 28), np.uint8)
    grey = grey * 255 / grey.max()
    rows, cols = np.flatnonzero((grey >= 25.5).any(axis=1)), np.flatnonzero((grey >= 25.5).any(axis=0))
    crop = grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    size = (max(1, round(w * 20 / max(h, w))), max(1, round(h * 20 / max(h, w))))
    small = np.clip(np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)),
                    0, 255)
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
    top = min(max(round(14 - cy), 0), 28 - small.shape[0])
    left = min(max(round(14 - cx), 0), 28 - small.shape[1])
    canvas = np.zeros((28, 28))
    canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
    return np.rint(canvas).astype(np.uint8)


def _photo_png(pixels: np.ndarray) -> bytes:
    """A digit as a photo of paper: dark ink on light grey, 8 times larger, off-centre, in RGB."""
    big = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.Resampling.NEAREST), dtype=np.float64)
    ink = np.zeros((90, 120))
    ink[10:74, 40:104] = big
    buf = io.BytesIO()
    Image.fromarray(np.stack([230 - ink * 0.8] * 3, -1).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_an_image_graph_takes_raw_grey_pixels_decoded_outside_datawheel(ws, splits):
    """A PNG decoded with PIL and prepared by the printed steps, fed to onnxruntime as uint8 pixels, scores as
    /v1/predict scores the same PNG; datawheel.onnx_inputs builds the same feed."""
    out = CliRunner().invoke(cli, ["export", str(ws.root)])
    assert out.exit_code == 0, out.output
    assert re.search(r"input  pixels  uint8 \[batch, 28, 28\]", out.output)
    assert "probabilities of, in order: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in out.output
    sidecar = json.loads(inputs_path(onnx_path(ws, 1)).read_text())
    assert [i["name"] for i in sidecar["inputs"]] == ["pixels"] and not sidecar["features_need_python"]
    pngs = [_photo_png(px) for px, _ in splits.pool[:12]] + [base64.b64decode(to_png_base64(splits.pool[12][0]))]
    session = ort.InferenceSession(str(onnx_path(ws, 1)), providers=["CPUExecutionProvider"])
    raw = np.stack([_documented_pixels(png) for png in pngs])
    got = _softmax(session.run(None, {"pixels": raw})[0])
    with make_client(ws) as client:
        answers = [client.post("/v1/predict", headers=APP, json={
            "user_id": "u", "input": {"image": base64.b64encode(png).decode()}}).json() for png in pngs]
    expected = np.array([[a["scores"][label] for label in sidecar["labels"]] for a in answers])
    assert np.abs(got - expected).max() < 1e-4
    assert [sidecar["labels"][i] for i in got.argmax(1)] == [a["label"] for a in answers]
    feed = datawheel.onnx_inputs(ws, [{"image": base64.b64encode(png).decode()} for png in pngs])
    assert set(feed) == {"pixels"} and feed["pixels"].dtype == np.uint8 and np.array_equal(feed["pixels"], raw)


def test_the_sidecar_describes_the_graphs_real_inputs_and_outputs(ws):
    export(ws, 1)
    sidecar = json.loads(inputs_path(onnx_path(ws, 1)).read_text())
    session = ort.InferenceSession(str(onnx_path(ws, 1)), providers=["CPUExecutionProvider"])
    dtypes = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(int64)": "int64"}
    for described, real in ((sidecar["inputs"], session.get_inputs()), (sidecar["outputs"], session.get_outputs())):
        assert [(d["name"], d["dtype"], d["shape"]) for d in described] == [
            (r.name, dtypes[r.type], list(r.shape)) for r in real]
    assert sidecar["labels"] == list(ws.labels) and sidecar["outputs"][0]["shape"][1] == len(ws.labels)
    assert sidecar["model_version"] == 1 and sidecar["datawheel_version"] == datawheel.__version__


TEXT_LABELS = ("good", "bad")
GOOD = ["great product", "works perfectly", "I love it", "fast delivery and nice box", "质量很好", "非常满意",
        "物超所值", "做工精细"]
BAD = ["broke after a day", "waste of money", "terrible support", "arrived late and scratched", "质量太差",
       "非常失望", "不值这个价", "用了一天就坏了"]


def _text_workspace(root: Path, model: str) -> datawheel.Workspace:
    def rows(n: int, offset: int) -> str:
        out = []
        for i in range(n):
            label, phrases = (("good", GOOD), ("bad", BAD))[i % 2]
            out.append(json.dumps({"text": f"{phrases[(i // 2) % len(phrases)]} {i + offset}", "label": label}))
        return "\n".join(out) + "\n"

    root.mkdir()
    (root / "seed.jsonl").write_text(rows(64, 0), encoding="utf-8")
    (root / "gold.jsonl").write_text(rows(32, 1000), encoding="utf-8")
    return init_workspace(root / "ws", task="text-classification", labels=TEXT_LABELS, seed_data=root / "seed.jsonl",
                          eval_data=root / "gold.jsonl", model_name=model, epochs=20)


UNSEEN = ["I love it, it works perfectly", "what a waste of money, it broke", "这个东西质量很好，我非常满意",
          "太失望了，质量太差"]


def _served(ws, texts: list[str]) -> np.ndarray:
    with make_client(ws) as client:
        answers = [client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": {"text": t}}).json()
                   for t in texts]
    return np.array([[a["scores"][label] for label in TEXT_LABELS] for a in answers])


def test_a_text_graph_fed_by_onnx_inputs_scores_as_the_server_does(tmp_path):
    """The tfidf graph takes hashed features no ONNX op computes: the sidecar and the command say so, and
    datawheel.onnx_inputs (given only the workspace's path) builds them for English and Chinese texts."""
    ws = _text_workspace(tmp_path / "tfidf", "tfidf")
    out = CliRunner().invoke(cli, ["export", str(ws.root)])
    assert out.exit_code == 0, out.output
    assert "features, NOT text" in out.output and "datawheel.onnx_inputs(" in out.output
    sidecar = json.loads(inputs_path(onnx_path(ws, 1)).read_text())
    assert sidecar["features_need_python"] and sidecar["inputs"][0]["dtype"] == "int64"
    session = ort.InferenceSession(str(onnx_path(ws, 1)), providers=["CPUExecutionProvider"])
    feed = datawheel.onnx_inputs(str(ws.root), [{"text": t} for t in UNSEEN])
    assert list(feed) == [i.name for i in session.get_inputs()]
    got = _softmax(session.run(None, feed)[0])
    expected = _served(ws, UNSEEN)
    assert np.abs(got - expected).max() < 1e-4 and (got.argmax(1) == expected.argmax(1)).all()
    assert (got.argmax(1) == [0, 1, 0, 1]).all()  # and the model has learnt something
    with pytest.raises(InvalidInput) as refused:
        datawheel.onnx_inputs(ws, {"text": 42})
    assert refused.value.field == "input.text"
    ws.store.close()


def test_a_scikit_learn_text_graph_takes_the_text_itself(tmp_path):
    """skl2onnx's graph tokenizes in ONNX: a string tensor of texts canonicalized as the sidecar says (NFKC,
    whitespace collapsed) scores as /v1/predict does, full-width forms included."""
    ws = _text_workspace(tmp_path / "sk", "sklearn")
    export(ws, 1)
    sidecar = json.loads(inputs_path(onnx_path(ws, 1)).read_text())
    assert sidecar["inputs"][0]["name"] == "text" and sidecar["inputs"][0]["dtype"] == "string"
    texts = ["ＧＲＥＡＴ   product,  I love it", "terrible support\tand a waste of money", "质量很好 非常满意"]
    canonical = [" ".join(unicodedata.normalize("NFKC", t).split()) for t in texts]
    session = ort.InferenceSession(str(onnx_path(ws, 1)), providers=["CPUExecutionProvider"])
    got = _softmax(session.run(None, {"text": np.array(canonical, dtype=object)})[0])
    expected = _served(ws, texts)
    assert np.abs(got - expected).max() < 1e-4 and (got.argmax(1) == [0, 1, 0]).all()
    ws.store.close()
