"""The Task contract, checked the same way for every task and every model, after scikit-learn's estimator checks.

A task joins the wheel by being listed in ``datawheel.tasks.TASK_NAMES``; these checks then run over it and
each of its models without being told. The one thing a task must add here is a row in ``FIXTURES``: payloads
only its author knows (what is equivalent, what is blank, what is malformed, what two classes look like).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from datawheel.artifacts import LabelledSet
from datawheel.config import ModelSection
from datawheel.curation.datasheet import hf_column
from datawheel.errors import ConfigError, InvalidInput
from datawheel.stages.train import TrainedModel, train
from datawheel.tasks import TASK_NAMES, get_task
from datawheel.tasks.base import Task, predict_logits, predict_proba

#: (n, seed) -> n payloads with labels 0/1, the classes told apart by something a model of the task can learn
ToySet = Callable[[int, int], list[tuple[dict, int]]]


@dataclass(frozen=True)
class Fixtures:
    samples: list[dict]  # valid payloads of distinct, non-blank items
    equivalent: list[tuple[dict, dict]]  # pairs the task must store as the same bytes
    blank: list[dict]  # payloads that parse but carry nothing to learn from
    invalid: list[tuple[Any, str]]  # payloads the task must refuse, and the field its error must name
    toy: ToySet


# --- image-classification -----------------------------------------------------------------------------------


def _png(pixels: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: the shape of a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _drawing(kind: int, rng: np.random.Generator) -> np.ndarray:
    """A ring (kind 0) or a cross (kind 1) of random size, stroke and polarity on a random page."""
    w, h = (int(v) for v in rng.integers(40, 90, size=2))
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = (int(v) for v in (*rng.integers(2, 10, size=2), w - rng.integers(2, 10), h - rng.integers(2, 10)))
    stroke = int(rng.integers(3, 7))
    if kind == 0:
        draw.ellipse((x0, y0, x1, y1), outline=0, width=stroke)
    else:
        draw.line((x0, y0, x1, y1), fill=0, width=stroke)
        draw.line((x0, y1, x1, y0), fill=0, width=stroke)
    page = np.asarray(img)
    return 255 - page if rng.random() < 0.5 else page


def _image_toy(n: int, seed: int) -> list[tuple[dict, int]]:
    rng = np.random.default_rng(seed)
    return [({"image": _png(_drawing(i % 2, rng))}, i % 2) for i in range(n)]


def _image_fixtures() -> Fixtures:
    ring, cross = _drawing(0, np.random.default_rng(1)), _drawing(1, np.random.default_rng(2))
    png = base64.b64decode(_png(ring))
    faint = np.zeros((30, 30), dtype=np.uint8)
    faint[10:20, 15] = 5  # a stroke too faint to tell from sensor noise
    invalid = [
        ({"image": _png(ring), "pixels": [[1]]}, "input"),
        ({"picture": "abc"}, "input"),
        ({"image": 12}, "input.image"),
        ({"image": ""}, "input.image"),
        ({"image": "not base64 at all!!"}, "input.image"),
        ({"image": "data:image/png;base64,abc"}, "input.image"),
        ({"image": "ünïcode"}, "input.image"),
        ({"image": base64.b64encode(b"hello, world").decode()}, "input.image"),
        ({"image": _png(ring[:8, :8], "GIF")}, "input.image"),
        ({"image": base64.b64encode(png[: len(png) // 2]).decode()}, "input.image"),
        ({"image": _png(np.zeros((4097, 2), dtype=np.uint8))}, "input.image"),
        ({"image": base64.b64encode(_png_header_only(10_000, 10_000)).decode()}, "input.image"),
        ({"image": base64.b64encode(_png_header_only(100_000, 100_000)).decode()}, "input.image"),
        ({"pixels": None}, "input.pixels"),
        ({"pixels": "0,0,0"}, "input.pixels"),
        ({"pixels": []}, "input.pixels"),
        ({"pixels": [[0]] * 1025}, "input.pixels"),
        ({"pixels": [[0] * 1025]}, "input.pixels[0]"),
        ({"pixels": [[]]}, "input.pixels[0]"),
        ({"pixels": [1, 2, 3]}, "input.pixels[0]"),
        ({"pixels": [[1, 2], [3, 4], [5]]}, "input.pixels[2]"),
        ({"pixels": [[1, 2], [3, 4, 5]]}, "input.pixels[1]"),
        ({"pixels": [[0, "7"]]}, "input.pixels[0][1]"),
        ({"pixels": [[0, None]]}, "input.pixels[0][1]"),
        ({"pixels": [[0], [True]]}, "input.pixels[1][0]"),
        ({"pixels": [[float("nan")]]}, "input.pixels[0][0]"),
        ({"pixels": [[float("inf")]]}, "input.pixels[0][0]"),
        ({"pixels": [[0, 256]]}, "input.pixels[0][1]"),
        ({"pixels": [[-0.5]]}, "input.pixels[0][0]"),
        ({"pixels": [[[0, 0, 0], [255, 255, 255]]]}, "input.pixels[0][0]"),
    ]
    return Fixtures(
        samples=[{"image": _png(ring)}, {"pixels": cross.tolist()}, *[p for p, _ in _image_toy(4, 3)]],
        equivalent=[({"pixels": ring.tolist()}, {"image": _png(ring)}),
                    ({"image": _png(cross)}, {"image": "data:image/png;base64," + _png(255 - cross)}),
                    ({"pixels": ring.tolist()}, {"pixels": np.pad(ring, 7, constant_values=ring[0, 0]).tolist()})],
        blank=[{"pixels": [[0] * 10] * 10}, {"image": _png(np.full((50, 30), 200))}, {"pixels": faint.tolist()}],
        invalid=invalid, toy=_image_toy)


# --- text-classification ------------------------------------------------------------------------------------

_TOPICS = (["match", "goal", "striker", "league", "tennis", "marathon", "coach", "stadium"],
           ["soup", "pasta", "curry", "dessert", "bread", "noodles", "salad", "breakfast"])
_FILLER = ["the", "was", "today", "really", "our", "about", "a", "new", "very", "this"]


def _text_toy(n: int, seed: int) -> list[tuple[dict, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.sample(_TOPICS[i % 2], 3) + rng.sample(_FILLER, 3)
        rng.shuffle(words)
        out.append(({"text": " ".join(words)}, i % 2))
    return out


def _text_fixtures() -> Fixtures:
    return Fixtures(
        samples=[{"text": "the match was amazing"}, {"text": "我喜欢这个产品"}, {"text": "Ｈｅｌｌｏ  world"},
                 {"text": "café, noodles & a 2nd helping"}],
        equivalent=[({"text": "ＡＢＣ１２３"}, {"text": "ABC123"}), ({"text": "  a \t\n b  "}, {"text": "a b"}),
                    ({"text": "ﬁne café"}, {"text": "fine cafe\u0301"})],
        blank=[{"text": ""}, {"text": "   "}, {"text": "!!! ..."}, {"text": "<EMAIL> <PHONE:abc>"}],
        invalid=[({"text": "a", "extra": 1}, "input"), ({"text": 5}, "input.text"), ({"text": None}, "input.text"),
                 ({"text": ["a"]}, "input.text"), ({"text": b"abc"}, "input.text"), ({"text": True}, "input.text"),
                 ({"text": "x" * 10_001}, "input.text"), ({"text": "bad \ud800 surrogate"}, "input.text")],
        toy=_text_toy)


FIXTURES: dict[str, Callable[[], Fixtures]] = {
    "image-classification": _image_fixtures,
    "text-classification": _text_fixtures,
}

# --- the checks ---------------------------------------------------------------------------------------------

CASES = [(name, model) for name in TASK_NAMES for model in get_task(name).models]
TOY_LABELS = ("a", "b")


@functools.cache
def _task(name: str) -> Task:
    return get_task(name)


@functools.cache
def _fixtures(name: str) -> Fixtures:
    if name not in FIXTURES:
        pytest.fail(f"task {name!r} is in TASK_NAMES but has no FIXTURES entry in tests/test_contract.py: "
                    "add its sample, equivalent, blank and invalid payloads and a toy separable set")
    return FIXTURES[name]()


def _items(name: str, payloads: list[dict]) -> list[Any]:
    return [_task(name).parse(p) for p in payloads]


def _same(a: Any, b: Any) -> bool:
    x, y = np.asarray(a), np.asarray(b)
    return type(a) is type(b) and x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


def _labelled(task: Task, rows: list[tuple[dict, int]]) -> LabelledSet:
    items = [task.parse(p) for p, _ in rows]
    return LabelledSet([task.encode(it) for it in items], [TOY_LABELS[y] for _, y in rows],
                       [task.content_hash(it) for it in items])


@functools.cache
def _trained(name: str, model: str) -> TrainedModel:
    """One short training run per (task, model), shared by the checks that need trained weights."""
    # No validation split, augmentation or calibration: 40 items, and the check is whether the model learns at all.
    cfg = ModelSection(name=model, epochs=5, batch_size=8, lr=1e-2, validation_share=0.0, augment=False,
                       calibrate=False)
    threads = torch.get_num_threads()
    try:
        return train(_task(name), _labelled(_task(name), _fixtures(name).toy(40, 1)), TOY_LABELS, cfg)
    finally:
        torch.set_num_threads(threads)  # train sets it for the process; later tests keep theirs


def test_every_task_has_fixtures():
    """Every task in TASK_NAMES has a fixtures row, so none escapes the contract."""
    missing = [name for name in TASK_NAMES if name not in FIXTURES]
    assert not missing, f"add a FIXTURES entry in tests/test_contract.py for: {', '.join(missing)}"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_parse_encode_decode_round_trips(name: str):
    """An item survives encode → decode unchanged, with the same bytes and hash, and distinct inputs stay distinct."""
    task = _task(name)
    items = _items(name, _fixtures(name).samples)
    for item in items:
        data = task.encode(item)
        back = task.decode(data)
        assert isinstance(data, bytes) and _same(back, item)
        assert task.encode(back) == data and task.content_hash(back) == task.content_hash(item)
        assert task.content_hash(item) == hashlib.sha256(data).hexdigest()  # what the store and caches key on
        assert task.encoded(item) == (data, task.content_hash(item))  # what ingest stores, encoded once
    assert len({task.encode(it) for it in items}) == len(items), "a canonical form must not merge distinct inputs"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_show_gives_json_the_dataset_export_can_type(name: str):
    """``show`` gives a JSON object in one of the shapes the Hugging Face export turns into a typed column."""
    task = _task(name)
    for item in _items(name, _fixtures(name).samples):
        shown = task.show(item)
        assert json.loads(json.dumps(shown)) == shown
        hf_column(shown)  # raises ConfigError for a shape the export does not know


@pytest.mark.parametrize("name", TASK_NAMES)
def test_equivalent_payloads_store_the_same_bytes(name: str):
    """Payloads the task defines as equivalent encode to identical bytes and content hash."""
    task = _task(name)
    for a, b in _fixtures(name).equivalent:
        one, two = task.parse(a), task.parse(b)
        assert task.encode(one) == task.encode(two) == task.encode(task.parse(a))
        assert task.content_hash(one) == task.content_hash(two)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_blank_inputs_have_a_quality_issue_and_samples_none(name: str):
    """Blank inputs parse but get a quality_issue reason code; real samples get none."""
    task = _task(name)
    for payload in _fixtures(name).blank:
        reason = task.quality_issue(task.parse(payload))
        assert isinstance(reason, str) and reason, f"{payload!r} should have a quality issue"
    assert [task.quality_issue(it) for it in _items(name, _fixtures(name).samples)] == [None] * len(
        _fixtures(name).samples)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name", TASK_NAMES)
def test_invalid_inputs_raise_invalid_input_naming_the_field(name: str):
    """Malformed payloads raise InvalidInput whose field (under "input") names what is wrong."""
    task, fx = _task(name), _fixtures(name)
    generic: list[tuple[Any, str | None]] = [(None, "input"), ("text", "input"), (["x"], "input"), ({}, None),
                                             ({**fx.samples[0], "zz_extra": 1}, "input")]
    wrong = []
    for payload, field in [*generic, *fx.invalid]:
        try:
            task.parse(payload)
        except InvalidInput as exc:
            ok = exc.field.startswith("input") and (field is None or exc.field == field)
            if not (ok and str(exc).startswith(f"{exc.field}: ") and exc.reason):
                wrong.append(f"{str(payload)[:60]}: field {exc.field!r}, expected {field or 'input...'}")
        else:
            wrong.append(f"{str(payload)[:60]}: accepted")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name, model", CASES)
def test_featurize_shapes_agree_across_batches(name: str, model: str):
    """featurize gives one row per item, fixed sizes on every axis variable_dims does not name, and logits [N, k]."""
    task = _task(name)
    items = _items(name, _fixtures(name).samples)
    variable = task.variable_dims(model)
    assert 0 in variable
    batches = [task.featurize(b, model) for b in (items, items[:1], [])]
    for batch, n in zip(batches, (len(items), 1, 0)):
        assert batch.shape[0] == n and batch.ndim == batches[0].ndim and batch.dtype == batches[0].dtype
        fixed = [(a, batch.shape[a]) for a in range(batch.ndim) if a not in variable]
        assert fixed == [(a, batches[0].shape[a]) for a in range(batch.ndim) if a not in variable]
    assert torch.equal(task.featurize(items, model, cache=True), batches[0])  # a cache never changes features
    logits = predict_logits(task.build_model(model, 3), batches[0])
    assert logits.shape == (len(items), 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_unknown_model_name_is_a_config_error(name: str):
    """build_model refuses a name outside ``models`` with a ConfigError listing the choices."""
    task = _task(name)
    with pytest.raises(ConfigError) as info:
        task.build_model("no-such-model", 2)
    assert all(m in str(info.value) for m in task.models)


@pytest.mark.parametrize("name, model", CASES)
def test_a_short_training_run_learns_a_separable_toy_set(name: str, model: str):
    """A few epochs of the wheel's own training separate two toy classes on held-out items far above chance."""
    task, out = _task(name), _trained(name, model)
    held = _fixtures(name).toy(30, 2)
    x = task.featurize([task.parse(p) for p, _ in held], model)
    accuracy = float((predict_logits(out.module, x).argmax(1) == torch.tensor([y for _, y in held])).float().mean())
    assert accuracy >= 0.8, f"{name}/{model}: held-out accuracy {accuracy:.2f} on a separable toy set"


@pytest.mark.parametrize("name, model", CASES)
def test_a_model_survives_save_and_load(name: str, model: str):
    """Trained weights saved with torch.save load (weights_only) into a fresh build_model with equal outputs."""
    task, out = _task(name), _trained(name, model)
    x = task.featurize(_items(name, _fixtures(name).samples), model)
    buf = io.BytesIO()
    torch.save(out.module.state_dict(), buf)
    buf.seek(0)
    fresh = task.build_model(model, len(TOY_LABELS))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(predict_logits(fresh, x), predict_logits(out.module, x))


@pytest.mark.parametrize("name, model", CASES)
def test_a_model_exports_to_onnx_with_dynamic_axes(name: str, model: str, tmp_path: Path):
    """The model exports as the registry's exporter does (torch.export, or skl2onnx for a scikit-learn model), and
    onnxruntime agrees with PyTorch on other batch shapes."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from datawheel.models.onnx_export import OnnxModule, write_onnx

    task, module = _task(name), _trained(name, model).module.eval()
    first = task.featurize(_items(name, _fixtures(name).samples), model)
    write_onnx(module, first, task.variable_dims(model), tmp_path / "model.onnx")
    onnx = OnnxModule(tmp_path / "model.onnx")
    other = task.featurize([task.parse(p) for p, _ in _fixtures(name).toy(5, 3)], model)
    for x in (first, other, first[:1]):
        a, b = predict_proba(module, x).numpy(), predict_proba(onnx, x).numpy()  # type: ignore[arg-type]
        assert np.abs(a - b).max() < 1e-4 and (a.argmax(1) == b.argmax(1)).all()
