"""Portable artifacts: a registered version as ONNX, and an onnxruntime module that serves it.

Export uses PyTorch's torch.export-based exporter with the batch (and, for text,
the sequence) dimension left dynamic, or skl2onnx for a scikit-learn model, then
checks itself: onnxruntime and PyTorch must agree on every golden-set prediction
before the file is kept. An image graph gets its standardization prepended, so it
takes grey uint8 pixels rather than datawheel's float features; what every graph
takes is written beside it (``v<N>.inputs.json``, see ``models/onnx_inputs.py``).
onnx, onnxscript, skl2onnx and onnxruntime are an optional extra (``.[onnx]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datawheel.artifacts import atomic_write_bytes, sha256_file
from datawheel.errors import ConfigError, WorkspaceError
from datawheel.models.onnx_inputs import describe, graph_input
from datawheel.models.registry import LoadedModel, Registry
from datawheel.stages.train import Calibrated
from datawheel.tasks.base import predict_proba
from datawheel.tasks.image import _MEAN, _STD, SIDE
from datawheel.tasks.sklearn_model import SklearnModel, from_codepoints
from datawheel.workspace import Workspace


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX needs the onnx extra: pip install 'datawheel[onnx]'") from None
    return onnxruntime


class OnnxModule:
    """Stands in for the torch module where the server predicts: features tensor in, logits tensor out.

    The server holds features; a graph may take something else, which is recovered from them exactly:
    strings from code points (a scikit-learn text graph), uint8 pixels from standardized floats (an
    image graph; float32 keeps a 0..255 integer to within 1e-4), flat rows from a [N, 1, 28, 28] batch.
    """

    def __init__(self, path: Path) -> None:
        self.session = _runtime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
        graph = self.session.get_inputs()[0]
        self.input_name = graph.name
        self.type = graph.type
        self.rank = len(graph.shape)

    def eval(self) -> OnnxModule:
        return self

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if self.type == "tensor(string)":
            x = np.array(from_codepoints(features), dtype=object)
        elif self.type == "tensor(uint8)":
            x = np.rint((features.flatten(1).numpy().astype(np.float64) * _STD + _MEAN) * 255)
            x = x.clip(0, 255).astype(np.uint8).reshape(len(features), SIDE, SIDE)
        else:
            x = (features.flatten(1) if self.rank == 2 and features.ndim > 2 else features).numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])


def write_onnx(module: nn.Module, features: torch.Tensor, variable_dims: tuple[int, ...], path: Path, *,
               pixels: bool = False) -> None:
    """``module`` (calibrated or not) as an ONNX file at ``path``, traced on ``features`` with these axes dynamic;
    with ``pixels``, an image model whose graph takes uint8 pixels [batch, 28, 28] and standardizes them."""
    import onnx

    inner, temperature = (module.inner, float(module.temperature)) if isinstance(module, Calibrated) else (module, 1.0)
    if isinstance(inner, SklearnModel):
        from datawheel.tasks.sklearn_onnx import sklearn_to_onnx

        model = onnx.load_from_string(sklearn_to_onnx(inner, temperature))
    else:
        names = {0: "batch", 1: "length"}  # what the sidecar and `datawheel export` show for the dynamic axes
        dims = {axis: torch.export.Dim(names.get(axis, f"axis{axis}")) for axis in variable_dims}
        program = torch.onnx.export(module, (features[:2],), dynamic_shapes=(dims,), input_names=["features"],
                                    output_names=["logits"], dynamo=True, verbose=False)
        if program is None:  # torch returns None only for the legacy exporter, which dynamo=True never uses
            raise WorkspaceError("torch.onnx.export produced no program")
        model = program.model_proto
    # skl2onnx leaves the batch axis unnamed, and torch names the logits' by how it derived it, e.g.
    # ((batch*length + length - 1)//length): one name for the sidecar and the command to show
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    path.write_bytes((_from_pixels(model) if pixels else model).SerializeToString())


def _from_pixels(model: Any) -> Any:
    """The graph with ``ImageClassification.featurize`` in front: uint8 ``pixels`` [batch, 28, 28] -> float32,
    / 255, - mean, / std (float32 throughout, so bit for bit what featurize computes), shaped as the graph's
    features input was ([N, 1, 28, 28], or [N, 784] for a scikit-learn graph)."""
    import onnx
    from onnx import compose, helper, numpy_helper

    features = model.graph.input[0]
    rank = len(features.type.tensor_type.shape.dim)
    shape = [-1, 1, SIDE, SIDE] if rank == 4 else [-1, SIDE * SIDE]
    consts = [numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("dw_255", 255.0), ("dw_mean", _MEAN), ("dw_std", _STD))]
    consts.append(numpy_helper.from_array(np.array(shape, np.int64), "dw_shape"))
    nodes = [helper.make_node("Cast", ["pixels"], ["dw_float"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Div", ["dw_float", "dw_255"], ["dw_unit"]),
             helper.make_node("Sub", ["dw_unit", "dw_mean"], ["dw_centred"]),
             helper.make_node("Div", ["dw_centred", "dw_std"], ["dw_standard"]),
             helper.make_node("Reshape", ["dw_standard", "dw_shape"], ["dw_features"])]
    prefix = helper.make_graph(
        nodes, "datawheel_pixels",
        [helper.make_tensor_value_info("pixels", onnx.TensorProto.UINT8, ["batch", SIDE, SIDE])],
        [helper.make_tensor_value_info("dw_features", onnx.TensorProto.FLOAT, None)], consts)
    opsets = {o.domain or "": o.version for o in model.opset_import}  # skl2onnx may list a domain twice
    first = helper.make_model(prefix, opset_imports=[helper.make_opsetid("", opsets[""])], ir_version=model.ir_version)
    merged = compose.merge_models(first, model, io_map=[("dw_features", features.name)])
    del merged.opset_import[:]  # merge_models concatenates both lists; one entry per domain is what the spec wants
    merged.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets.items())
    return merged


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
    pixels = graph_input(ws, loaded.model_name).kind == "pixels"
    path = onnx_path(ws, version)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_onnx(loaded.module, features, task.variable_dims(loaded.model_name), tmp, pixels=pixels)
        tmp.chmod(0o600)
        onnx = OnnxModule(tmp)
        check = _compare(loaded, onnx, features)
        if check["agreement"] < 1.0:
            raise WorkspaceError(f"model v{version}: the ONNX export disagrees with PyTorch on "
                                 f"{check['disagreements']} golden items; not kept")
        sidecar = describe(ws, version, onnx.session)
        atomic_write_bytes(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_bytes(inputs_path(path), json.dumps(sidecar, indent=2, ensure_ascii=False).encode())
    sha = sha256_file(path)
    ws.store.add_export(version, "onnx", str(path.relative_to(ws.root)), sha)
    return {"version": version, "path": str(path.relative_to(ws.root)), "sha256": sha, **check,
            "inputs_file": str(inputs_path(path).relative_to(ws.root)), "graph": sidecar}


def inputs_path(onnx_file: Path) -> Path:
    """``v<N>.inputs.json`` beside ``v<N>.onnx``: what the graph takes and what its outputs mean."""
    return onnx_file.with_suffix(".inputs.json")


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
