"""A scikit-learn pipeline as a model: trained, registered (skops, not pickle), served, exported and erased.

The task x model contract (tests/test_contract.py) covers ``sklearn`` for both tasks with the default
estimators; these tests cover what only a workspace shows, and the configured ``model.estimator``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import torch
from fastapi.testclient import TestClient

from datawheel.api.app import create_app
from datawheel.config import ModelSection
from datawheel.demo.run import LABELS as DIGITS
from datawheel.errors import ConfigError, WorkspaceError
from datawheel.models.onnx_export import export, load_onnx
from datawheel.models.registry import Registry
from datawheel.settings import Settings
from datawheel.stages.train import train
from datawheel.tasks.base import predict_proba
from datawheel.tasks.sklearn_model import SklearnModel, from_codepoints, to_codepoints
from datawheel.tasks.text import TextClassification
from datawheel.wheel.cycle import run_cycle
from datawheel.wheel.init import init_workspace

LABELS = ("sport", "food")
WORDS = {"sport": ["the match", "our striker", "the tennis final", "the marathon", "the goalkeeper"],
         "food": ["this soup", "the pasta", "my breakfast", "the dumplings", "that curry"]}
VERBS = ["was amazing", "surprised everyone", "lasted all afternoon", "made the news", "was worse than ever"]


def sentences(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": f"{rng.choice(WORDS[lab])} {rng.choice(VERBS)} ({seed}-{i})", "label": lab}
            for i, lab in ((i, LABELS[i % 2]) for i in range(n))]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _shout(texts: list[str]) -> list[str]:  # a team's own code: skops cannot vouch for it
    return [t.upper() for t in texts]


def custom_code_pipeline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(_shout), TfidfVectorizer(), LogisticRegression())


def char_wb_pipeline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)), LogisticRegression(C=10))


def test_code_points_carry_any_text_through_a_tensor():
    texts = ["the match", "我喜欢这个产品", "café 😀 𠀀", ""]
    x = to_codepoints(texts)
    assert x.dtype == torch.int32 and x.shape == (4, 9)
    assert from_codepoints(x) == texts


def test_a_sklearn_text_workspace_trains_serves_exports_and_erases(tmp_path: Path):
    """init fits the default pipeline; the artifact holds skops bytes, loads to the same answers, exports to ONNX,
    serves; a user's contributions train v2 and erasing the user names v2 on the receipt."""
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=LABELS,
                        seed_data=jsonl(tmp_path / "seed.jsonl", sentences(60, 1)),
                        eval_data=jsonl(tmp_path / "gold.jsonl", sentences(30, 2)), model_name="sklearn")
    row = ws.store.get_model(1)
    assert row["model_name"] == "sklearn" and row["metrics"]["accuracy"] >= 0.9
    assert row["train_info"]["estimator"] == "datawheel.tasks.sklearn_model:text_tfidf_logreg"
    card = (ws.root / "models" / "v1.card.md").read_text()
    assert "datawheel.tasks.sklearn_model:text_tfidf_logreg" in card
    blob = torch.load(ws.root / row["path"], weights_only=True)  # no pickle: plain tensors only
    skops_bytes = blob["state_dict"]["skops"].numpy().tobytes()
    assert sio.get_untrusted_types(data=skops_bytes) == []
    loaded = Registry(ws).load(1)
    texts = [ws.task.decode(b) for b in ws.golden().inputs]
    x = ws.task.featurize(texts, "sklearn")
    expected = sio.loads(skops_bytes).predict_proba(texts)
    assert np.allclose(predict_proba(loaded.network, x).numpy(), expected, atol=1e-6)
    check = export(ws, 1)
    assert check["agreement"] == 1.0 and check["max_abs_prob_diff"] < 1e-4
    onnx = load_onnx(ws, 1)
    assert torch.equal(predict_proba(onnx.module, x).argmax(1), predict_proba(loaded.module, x).argmax(1))
    app = create_app(ws, Settings(app_key="a" * 24, admin_key="b" * 24, cycle_in_subprocess=False))
    headers = {"Authorization": "Bearer " + "a" * 24}
    with TestClient(app) as client:
        for r in sentences(20, 3):
            resp = client.post("/v1/contributions", headers=headers, json={
                "user_id": "zoe", "input": {"text": r["text"]}, "label": r["label"], "consent": {"training": True}})
            assert resp.status_code in (200, 201), resp.text
        out = client.post("/v1/predict", headers=headers, json={"user_id": "zoe", "input": {"text": "the pasta"}})
        assert out.status_code == 200 and out.json()["label"] == "food"
    report = run_cycle(ws, ws.store.start_cycle("test"))
    assert report["candidate_version"] == 2 and ws.store.get_model(2)["model_name"] == "sklearn"
    receipt = ws.erase_user("zoe")
    assert receipt["model_versions_trained_on_user_data"] == [2]
    ws.store.close()


def test_a_configured_estimator_is_used_and_an_image_workspace_exports(tmp_path: Path, image_dirs):
    """``model.estimator`` names the factory; a digits workspace fits it on flattened pixels and exports to ONNX."""
    ws = init_workspace(tmp_path / "ws", task="image-classification", labels=DIGITS, seed_data=image_dirs[0],
                        eval_data=image_dirs[1], model_name="sklearn",
                        model_options={"estimator": "sklearn.neighbors:KNeighborsClassifier"})
    row = ws.store.get_model(1)
    assert row["train_info"]["estimator"] == "sklearn.neighbors:KNeighborsClassifier"
    assert type(Registry(ws).load(1).network.estimator).__name__ == "KNeighborsClassifier"
    assert row["metrics"]["accuracy"] >= 0.8
    assert export(ws, 1)["agreement"] == 1.0
    ws.store.close()


def _text_set(task: TextClassification, rows: list[dict]):
    from datawheel.artifacts import LabelledSet

    items = [task.parse({"text": r["text"]}) for r in rows]
    return LabelledSet([task.encode(t) for t in items], [r["label"] for r in rows],
                       [task.content_hash(t) for t in items])


def test_a_pipeline_with_the_teams_own_code_is_refused_when_trained():
    task = TextClassification()
    cfg = ModelSection(name="sklearn", estimator="test_sklearn_model:custom_code_pipeline")
    with pytest.raises(ConfigError, match="_shout"):
        train(task, _text_set(task, sentences(40, 4)), LABELS, cfg)


def test_loading_refuses_untrusted_skops_bytes():
    """A state dict whose skops payload names a type outside the trusted set is refused, not executed."""
    from skops.io.exceptions import UntrustedTypesFoundException

    est = custom_code_pipeline().fit(["the match", "the soup"], [0, 1])
    state = {"skops": torch.frombuffer(bytearray(sio.dumps(est)), dtype=torch.uint8)}
    with pytest.raises(UntrustedTypesFoundException):
        SklearnModel("text", 2).load_state_dict(state)


@pytest.mark.parametrize("spec, message", [("no_such_module_xyz:make", "cannot import"),
                                           ("sklearn.linear_model:LinearRegression", "predict_proba")])
def test_a_bad_estimator_is_a_config_error(spec: str, message: str):
    task = TextClassification()
    with pytest.raises(ConfigError, match=message):
        train(task, _text_set(task, sentences(20, 5)), LABELS, ModelSection(name="sklearn", estimator=spec))


def test_onnx_export_of_an_unsupported_pipeline_says_why(tmp_path: Path):
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=LABELS,
                        seed_data=jsonl(tmp_path / "seed.jsonl", sentences(40, 6)),
                        eval_data=jsonl(tmp_path / "gold.jsonl", sentences(20, 7)), model_name="sklearn",
                        model_options={"estimator": "test_sklearn_model:char_wb_pipeline"})
    with pytest.raises((ConfigError, WorkspaceError), match="skl2onnx cannot convert"):
        export(ws, 1)
    assert not (ws.root / "models" / "v1.onnx").exists()
    ws.store.close()


def test_chinese_text_gets_the_character_pipeline_by_default():
    """With ``model.language = "zh"`` the default estimator reads character n-grams: word tokens would be clauses."""
    from datawheel.tasks.sklearn_model import UNSEGMENTED_ESTIMATOR

    task = TextClassification()
    rows = [{"text": t, "label": lab} for t, lab in [("这场比赛太精彩了", "sport"), ("球队今天赢了", "sport"),
                                                    ("这碗面很好吃", "food"), ("汤有点咸", "food")] * 5]
    rows = [{**r, "text": f"{r['text']}{i}"} for i, r in enumerate(rows)]
    out = train(task, _text_set(task, rows), LABELS, ModelSection(name="sklearn", language="zh"))
    assert out.info["estimator"] == UNSEGMENTED_ESTIMATOR
    assert SklearnModel("text", 2).default_estimator("en") != UNSEGMENTED_ESTIMATOR
