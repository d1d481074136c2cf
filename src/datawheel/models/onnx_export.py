"""Portable artifacts: a registered version as ONNX, and an onnxruntime module that serves it.

Export uses PyTorch's torch.export-based exporter with the batch (and, for text,
the sequence) dimension left dynamic, or skl2onnx for a scikit-learn model, then
checks itself: onnxruntime and PyTorch must agree on every golden-set prediction
before the file is kept. onnx, onnxscript, skl2onnx and onnxruntime are an
optional extra (``.[onnx]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from datawheel.artifacts import atomic_write_bytes, sha256_file
from datawheel.errors import ConfigError, WorkspaceError
from datawheel.models.registry import LoadedModel, Registry
from datawheel.stages.train import Calibrated
from datawheel.tasks.base import predict_proba
from datawheel.tasks.sklearn_model import SklearnModel, from_codepoints
from datawheel.workspace import Workspace


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX needs the onnx extra: pip install 'datawheel[onnx]'") from None
    return onnxruntime


class OnnxModule:
    """Stands in for the torch module where the server predicts: features tensor in, logits tensor out."""

    def __init__(self, path: Path) -> None:
        self.session = _runtime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        # A scikit-learn export takes what its estimator takes: strings (text) or flat rows (images).
        self.strings = graph_input.type == "tensor(string)"
        self.rank = len(graph_input.shape)

    def eval(self) -> OnnxModule:
        return self

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if self.strings:
            x = np.array(from_codepoints(features), dtype=object)
        else:
            x = (features.flatten(1) if self.rank == 2 and features.ndim > 2 else features).numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])


def write_onnx(module: nn.Module, features: torch.Tensor, variable_dims: tuple[int, ...], path: Path) -> None:
    """``module`` (calibrated or not) as an ONNX file at ``path``, traced on ``features`` with these axes dynamic."""
    inner, temperature = (module.inner, float(module.temperature)) if isinstance(module, Calibrated) else (module, 1.0)
    if isinstance(inner, SklearnModel):
        from datawheel.tasks.sklearn_onnx import sklearn_to_onnx

        path.write_bytes(sklearn_to_onnx(inner, temperature))
        return
    dims = {axis: torch.export.Dim(f"d{axis}") for axis in variable_dims}
    program = torch.onnx.export(module, (features[:2],), dynamic_shapes=(dims,), input_names=["features"],
                                output_names=["logits"], dynamo=True, verbose=False)
    if program is None:  # torch returns None only for the legacy exporter, which dynamo=True never uses
        raise WorkspaceError("torch.onnx.export produced no program")
    program.save(str(path))


def onnx_path(ws: Workspace, version: int) -> Path:
    return ws.model_path(version).with_suffix(".onnx")


def export(ws: Workspace, version: int) -> dict:
    """Write ``models/v<N>.onnx`` after checking it against PyTorch on the golden set; return the check."""
    _runtime()
    registry = Registry(ws)
    loaded = registry.load(version)
    if not isinstance(loaded.module, nn.Module):  # the registry loads torch weights; only those export
        raise WorkspaceError(f"model v{version}: only a PyTorch model can be exported")
    task, golden = ws.task, ws.golden()
    features = task.featurize([task.decode(b) for b in golden.inputs], loaded.model_name)  # the real shapes
    path = onnx_path(ws, version)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_onnx(loaded.module, features, task.variable_dims(loaded.model_name), tmp)
        tmp.chmod(0o600)
        check = _compare(loaded, OnnxModule(tmp), features)
        if check["agreement"] < 1.0:
            raise WorkspaceError(f"model v{version}: the ONNX export disagrees with PyTorch on "
                                 f"{check['disagreements']} golden items; not kept")
        atomic_write_bytes(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    sha = sha256_file(path)
    ws.store.add_export(version, "onnx", str(path.relative_to(ws.root)), sha)
    return {"version": version, "path": str(path.relative_to(ws.root)), "sha256": sha, **check}


def _compare(loaded: LoadedModel, onnx: OnnxModule, features: torch.Tensor) -> dict:
    expected = predict_proba(loaded.module, features).numpy()
    got = predict_proba(onnx, features).numpy()
    same = expected.argmax(1) == got.argmax(1)
    return {"items": len(same), "agreement": float(same.mean()) if len(same) else 1.0,
            "disagreements": int((~same).sum()), "max_abs_prob_diff": float(np.abs(expected - got).max(initial=0))}


def load_onnx(ws: Workspace, version: int) -> LoadedModel:
    """The version's ONNX file as a servable model; it must have been exported first."""
    path = onnx_path(ws, version)
    recorded = ws.store.get_export(version, "onnx")
    if not path.is_file() or recorded is None:
        raise WorkspaceError(f"model v{version} has no ONNX export; run `datawheel export {ws.root} "
                             f"--format onnx --version {version}`")
    if sha256_file(path) != recorded["sha256"]:  # as the .pt weights are: a tampered file never serves
        raise WorkspaceError(f"model v{version}: {path.name} fails its sha256 check; export it again")
    name = ws.store.get_model(version)["model_name"]
    module = OnnxModule(path)
    return LoadedModel(version, name, module, module)  # type: ignore[arg-type]  # never warm-started from
