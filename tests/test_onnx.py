"""ONNX export and onnxruntime serving give the same predictions as PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import APP, make_client
from datawheel.cli.main import app as cli
from datawheel.errors import WorkspaceError
from datawheel.models.onnx_export import OnnxModule, export, load_onnx, onnx_path
from datawheel.models.registry import Registry
from datawheel.tasks.base import predict_proba
from datawheel.tasks.image import to_png_base64


def test_export_cli_writes_a_checked_onnx_file(ws):
    """`datawheel export` writes models/v1.onnx after 100 % agreement with PyTorch on the golden set."""
    out = CliRunner().invoke(cli, ["export", str(ws.root), "--format", "onnx"])
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
