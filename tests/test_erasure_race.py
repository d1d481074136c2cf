"""Erasure while a cycle runs: whenever it lands, nothing of the user stays on disk and every model that saw
them is named in the receipt; a model that saw them serves only if it was promoted before the erasure."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datawheel.wheel import cycle as cycle_module
from datawheel.wheel.cycle import run_cycle
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

TRIALS = 20
LABELS = ("pos", "neg")
WORDS = {"pos": ["great", "excellent", "wonderful", "好", "满意"],
         "neg": ["terrible", "awful", "horrible", "差", "失望"]}
NOUNS = ["lamp", "kettle", "river", "garden", "ticket", "window", "bicycle", "letter", "violin", "harbour",
         "meadow", "pillow", "lantern", "compass", "teapot", "ladder"]


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = rng.choice(LABELS)
        out.append({"text": f"{rng.choice(WORDS[label])} {rng.choice(NOUNS)} {rng.choice(NOUNS)} {i}",
                    "label": label})
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("race")
    for name, rows in (("seed.jsonl", _rows(80, 1)), ("gold.jsonl", _rows(40, 2))):
        (base / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    ws = init_workspace(base / "ws", task="text-classification", labels=LABELS, seed_data=base / "seed.jsonl",
                        eval_data=base / "gold.jsonl", epochs=10)
    ws.store.close()
    return base / "ws"


def _fill(ws: Workspace, victim: str, marker: str, seed: int) -> set[str]:
    """Labelled records from eight users and the victim; returns the content hashes of the victim's inputs."""
    rng = random.Random(seed)
    victim_hashes = set()
    for n in range(72):
        user = victim if n % 4 == 0 else f"user{n % 8}"
        label = rng.choice(LABELS)  # every user labels both classes, correctly
        text = f"{rng.choice(WORDS[label])} {rng.choice(NOUNS)} {n}"
        if user == victim:
            text = f"{text} {marker}"
        item = ws.task.parse({"text": text})
        ws.store.add_record(user_id=user, kind="contribution", input=ws.task.encode(item),
                            content_hash=ws.task.content_hash(item), consent={"training": True}, label=label)
        if user == victim:
            victim_hashes.add(ws.task.content_hash(item))
    return victim_hashes


def _leftovers(root: Path, needles: list[str]) -> list[str]:
    """Every file of the workspace that holds a needle: Parquet value by value, everything else byte by byte."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=repr, ensure_ascii=False)
            found += [f"{path.name}: {n}" for n in needles if n in text]
        data = path.read_bytes()
        found += [f"{path.name}: {n}" for n in needles if n.encode() in data]
    return found


def test_erasure_at_random_moments_of_a_cycle(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """20 trials, each erasing the victim at a random moment of a running cycle."""
    seen: dict[str, bool] = {}  # dataset id -> did training see the victim's inputs
    real_train = cycle_module.train
    victim_hashes: set[str] = set()

    def spy(task, data, *args, **kwargs):
        seen["last"] = bool(victim_hashes & set(data.hashes))
        return real_train(task, data, *args, **kwargs)
    monkeypatch.setattr(cycle_module, "train", spy)
    rng = random.Random(7)
    outcomes = {"saw_victim": 0, "named": 0, "champion_saw_victim": 0}
    for trial in range(TRIALS):
        root = tmp_path / f"t{trial}"
        shutil.copytree(template, root)
        ws = Workspace.open(root)
        victim, marker = f"victim-{trial}-qzx", f"zqxmarker{trial}"
        victim_hashes.clear()
        victim_hashes.update(_fill(ws, victim, marker, trial))
        seen.clear()
        cycle_id = ws.store.start_cycle("test")
        runner = threading.Thread(target=lambda ws=ws, cid=cycle_id: run_cycle(ws, cid))
        runner.start()
        time.sleep(rng.uniform(0.0, 3.5))
        eraser = Workspace.open(root)
        receipt = eraser.erase_user(victim)
        runner.join(120)
        state = ws.store.get_cycle(cycle_id)
        assert state["status"] == "done", state["error"]
        candidate = state["candidate_version"]
        named = eraser.store.receipt(receipt["receipt_id"])["model_versions_trained_on_user_data"]
        if seen.get("last"):
            outcomes["saw_victim"] += 1
            assert candidate in named, f"trial {trial}: v{candidate} saw the victim but the receipt names {named}"
            outcomes["named"] += 1
        champion = ws.store.aliases()["champion"]
        if champion == candidate and seen.get("last"):
            outcomes["champion_saw_victim"] += 1
            log = ws.store.audit_log(None)
            promoted = max(e["id"] for e in log if e["action"] == "promotion" and e["detail"]["version"] == candidate)
            erased = max(e["id"] for e in log if e["action"] == "erasure")
            assert promoted < erased, f"trial {trial}: v{candidate} saw the victim and was promoted after erasure"
        # Scanned with the connections still open: closing would checkpoint the WAL and hide what it held.
        assert not _leftovers(root, [victim, marker]), f"trial {trial}: {_leftovers(root, [victim, marker])}"
        ws.store.close()
        eraser.store.close()
    print(f"erasure race: {TRIALS} trials, {outcomes}")
