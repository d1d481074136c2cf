"""Workspace creation and import: every format, and clear errors that leave nothing half-written."""

from __future__ import annotations

import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datawheel.config import load_config
from datawheel.demo.run import LABELS
from datawheel.errors import ConfigError, ImportDataError, WorkspaceError
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

TEXT_LABELS = ("pos", "neg")
POS = ["great product", "I love it", "excellent service", "非常好", "喜欢这个", "wonderful day", "so good", "好极了"]
NEG = ["terrible product", "I hate it", "awful service", "非常差", "讨厌这个", "horrible day", "so bad", "差极了"]


def text_rows():
    return [{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_init_creates_a_complete_workspace(ws):
    """init leaves config, 0600 secrets, seed/golden sets, model v1 as champion with golden metrics."""
    assert ws.config.workspace.task == "image-classification"
    mode = stat.S_IMODE(os.stat(ws.root / "secrets.json").st_mode)
    assert mode == 0o600
    assert ws.store.aliases() == {"champion": 1}
    m = ws.store.get_model(1)
    assert m["metrics"]["accuracy"] > 0.5 and m["dataset_id"] is None
    assert len(ws.golden()) == 359 and len(ws.seed()) == 179
    assert set(ws.golden().hashes).isdisjoint(ws.seed().hashes)
    with ws.store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_text_workspace_from_each_format(tmp_path, fmt):
    """CSV, JSONL and Parquet with text,label columns all import into a text workspace."""
    rows = text_rows()
    path = tmp_path / f"seed.{fmt}"
    if fmt == "csv":
        write_csv(path, rows)
    elif fmt == "jsonl":
        write_jsonl(path, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    golden = write_jsonl(tmp_path / "golden.jsonl", [{"text": t + "!", "label": lab} for t, lab in
                                                      [(r["text"], r["label"]) for r in rows]])
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=TEXT_LABELS, seed_data=path,
                        eval_data=golden, epochs=20)
    assert len(ws.seed()) == 16
    assert ws.store.get_model(1)["metrics"]["n"] == 16
    ws.store.close()


def test_unknown_label_names_file_and_line_and_leaves_nothing(tmp_path):
    """An unknown label fails with file:line and no workspace folder is left behind."""
    rows = text_rows()
    rows[3]["label"] = "meh"
    seed = write_csv(tmp_path / "seed.csv", rows)
    golden = write_jsonl(tmp_path / "golden.jsonl", text_rows())
    with pytest.raises(ImportDataError, match=r"seed\.csv:5: unknown label 'meh'"):
        init_workspace(tmp_path / "ws", task="text-classification", labels=TEXT_LABELS, seed_data=seed,
                       eval_data=golden)
    assert not (tmp_path / "ws").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unreadable_image_names_the_file(tmp_path, image_dirs):
    """A corrupt image in an ImageFolder is reported by its path."""
    import shutil

    seed = tmp_path / "seed"
    shutil.copytree(image_dirs[0], seed)
    (seed / "3" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImportDataError, match=r"broken\.png"):
        init_workspace(tmp_path / "ws", task="image-classification", labels=LABELS, seed_data=seed,
                       eval_data=image_dirs[1])
    assert not (tmp_path / "ws").exists()


def test_empty_set_bad_json_and_existing_folder(tmp_path):
    """An empty file, a bad JSON line and an existing non-empty folder are each refused clearly."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    golden = write_jsonl(tmp_path / "golden.jsonl", text_rows())
    with pytest.raises(ImportDataError, match="no labelled examples"):
        init_workspace(tmp_path / "a", task="text-classification", labels=TEXT_LABELS, seed_data=empty,
                       eval_data=golden)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": "pos"}\n{oops\n')
    with pytest.raises(ImportDataError, match=r"bad\.jsonl:2: not valid JSON"):
        init_workspace(tmp_path / "b", task="text-classification", labels=TEXT_LABELS, seed_data=bad,
                       eval_data=golden)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    with pytest.raises(WorkspaceError, match="not empty"):
        init_workspace(taken, task="text-classification", labels=TEXT_LABELS, seed_data=golden, eval_data=golden)
    with pytest.raises(ConfigError, match="labels"):
        init_workspace(tmp_path / "c", task="text-classification", labels=("only",), seed_data=golden,
                       eval_data=golden)


def test_config_unknown_key_is_an_error_naming_it(ws):
    """A typo in the workspace config is refused with the key's full name."""
    path = ws.root / "datawheel.toml"
    path.write_text(path.read_text().replace("[gate]\n", "[gate]\ntolerence = 0.5\n"))
    with pytest.raises(ConfigError, match=r"gate\.tolerence: unknown key"):
        load_config(path)


def test_open_refuses_a_folder_that_is_not_a_workspace(tmp_path):
    """Opening a random folder says what is missing and how to make one."""
    with pytest.raises(WorkspaceError, match="datawheel init"):
        Workspace.open(tmp_path)


def test_golden_slices_are_imported_kept_and_reported(tmp_path):
    """``meta.*`` columns (CSV) and a ``metadata`` object (JSONL) become slices: stored with the golden set,
    measured per model, shown in the model card."""
    rows = text_rows()
    seed = write_csv(tmp_path / "seed.csv", [{**r, "meta.locale": "en"} for r in rows])
    golden = write_jsonl(tmp_path / "golden.jsonl", [
        {"text": r["text"] + "!", "label": r["label"], "metadata": {"locale": "en" if i % 2 else "zh"}}
        for i, r in enumerate(rows)])
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=TEXT_LABELS, seed_data=seed,
                        eval_data=golden, epochs=5)
    assert [m["locale"] for m in ws.golden().meta[:2]] == ["zh", "en"]
    slices = ws.store.get_model(1)["metrics"]["slices"]
    assert set(slices) == {"locale=en", "locale=zh"} and slices["locale=en"]["n"] == 8
    card = (ws.root / "models" / "v1.card.md").read_text()
    assert "| locale=zh | 8 |" in card
    ws.store.close()


def test_bad_slice_metadata_names_the_line(tmp_path):
    rows = text_rows()
    golden = write_jsonl(tmp_path / "golden.jsonl", [{**r, "metadata": ["en"]} for r in rows])
    with pytest.raises(ImportDataError, match=r"golden.jsonl:1: 'metadata' must be an object"):
        init_workspace(tmp_path / "ws", task="text-classification", labels=TEXT_LABELS,
                       seed_data=write_csv(tmp_path / "seed.csv", rows), eval_data=golden, epochs=1)


def test_slice_metadata_passes_the_privacy_gate_keys_included(tmp_path):
    rows = text_rows()
    golden = write_jsonl(tmp_path / "golden.jsonl", [
        {**r, "text": r["text"] + "?", "metadata": {"owner ann@example.com": "ann@example.com", "score": 0.5}}
        for r in rows])
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=TEXT_LABELS,
                        seed_data=write_csv(tmp_path / "seed.csv", rows), eval_data=golden, epochs=1)
    assert ws.golden().meta[0] == {"owner <EMAIL>": "<EMAIL>", "score": "0.5"}
    assert b"ann@example.com" not in (ws.root / "data" / "golden.parquet").read_bytes()
    ws.store.close()


def test_init_writes_model_options_and_refuses_unknown_ones(tmp_path):
    rows = text_rows()
    golden = write_jsonl(tmp_path / "golden.jsonl", [{**r, "text": r["text"] + "!"} for r in rows])
    seed = write_csv(tmp_path / "seed.csv", rows)
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=TEXT_LABELS, seed_data=seed,
                        eval_data=golden, epochs=1, model_options={"augment": False, "patience": 3})
    assert load_config(ws.root / "datawheel.toml").model.augment is False
    assert ws.config.model.patience == 3
    ws.store.close()
    with pytest.raises(ConfigError, match=r"model\.augmnet: unknown key"):
        init_workspace(tmp_path / "ws2", task="text-classification", labels=TEXT_LABELS, seed_data=seed,
                       eval_data=golden, epochs=1, model_options={"augmnet": False})


def test_workspace_files_are_readable_by_their_owner_only(ws, splits):
    """The workspace folder and every file in it (database, WAL, snapshots, models) are closed to other
    local accounts."""
    import stat

    from datawheel.wheel.cycle import run_cycle

    for image, label in splits.pool[:20]:  # something new, so the cycle writes a snapshot and a model
        item = ws.task.parse({"pixels": image.tolist()})
        ws.store.add_record(user_id="ann", kind="contribution", input=ws.task.encode(item),
                            content_hash=ws.task.content_hash(item), consent={"training": True}, label=label)
    run_cycle(ws, ws.store.start_cycle("test"))
    assert stat.S_IMODE(ws.root.stat().st_mode) & 0o077 == 0
    files = [p for p in ws.root.rglob("*") if p.is_file()]
    assert any(p.parent.name == "snapshots" for p in files) and any(p.name == "v2.pt" for p in files)
    assert any(p.name.endswith("-wal") for p in files)
    assert [str(p) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o077] == []
