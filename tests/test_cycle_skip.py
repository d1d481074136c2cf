"""A turn with nothing new to learn ends before training, says why, and registers nothing; anything that changes
what a candidate would learn from (new labels, an erasure, retention, new settings) makes it train."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from typer.testing import CliRunner

from conftest import ADMIN, make_client
from datawheel.cli.main import app
from datawheel.models.registry import Registry
from datawheel.store import tables
from datawheel.store.db import utcnow, write
from datawheel.wheel.cycle import run_cycle
from datawheel.workspace import Workspace
from test_generation import _corrected_cycle, _wait, chat_template_ws, chat_ws, tiny_base  # noqa: F401 (fixtures)


def contribute(ws: Workspace, pool, items: range, user: str) -> None:
    for n in items:
        image, label = pool[n]
        item = ws.task.parse({"pixels": image.tolist()})
        ws.store.add_record(user_id=user, kind="contribution", input=ws.task.encode(item),
                            content_hash=ws.task.content_hash(item), consent={"training": True}, label=label)


def correct(ws: Workspace, pool, items: range, user: str) -> None:
    """Interactions whose user gave the right label: the source the default policy keeps for 365 days."""
    for n in items:
        image, label = pool[n]
        item = ws.task.parse({"pixels": image.tolist()})
        record = ws.store.add_record(user_id=user, kind="interaction", input=ws.task.encode(item),
                                     content_hash=ws.task.content_hash(item), consent={"training": True},
                                     predicted_label="0", model_name="mlp", model_version="1")
        ws.store.add_feedback(record_id=record, user_id=user, label=label, rating=None, comment=None)


def turn(ws: Workspace) -> dict:
    return run_cycle(ws, ws.store.start_cycle("test"))


def trained(ws: Workspace) -> dict:
    """A turn that must train; its candidate is made champion, so the next turn compares against it."""
    report = turn(ws)
    assert report["decision"] in ("promoted", "rejected"), report
    if report["decision"] == "rejected":
        Registry(ws).promote(report["candidate_version"], actor="test", reason="the test wants it champion")
    return report


def test_a_fresh_workspace_skips_and_registers_nothing(ws):
    report = turn(ws)
    assert report["decision"] == "skipped" and report["candidate_version"] is None
    assert report["decision_reasons"] == ["no new accepted records since init: same labels and settings; "
                                          "champion v1 was trained on them"]
    assert report["champion_version"] == 1 and report["champion_accuracy"] == ws.store.get_model(1)["metrics"][
        "accuracy"]
    assert [m["version"] for m in ws.store.list_models()] == [1]
    assert ws.store.list_snapshots() == [] and not (ws.root / "checkpoints").exists()
    row = ws.store.list_cycles()[-1]
    assert (row["status"], row["decision"], row["candidate_version"]) == ("done", "skipped", None)


def test_new_labels_train_and_the_same_labels_again_do_not(ws, splits):
    contribute(ws, splits.pool, range(40), "ann")
    first = trained(ws)
    assert first["candidate_version"] == 2 and ws.store.get_model(2)["train_info"]["inputs_digest"]
    again = turn(ws)
    assert again["decision"] == "skipped" and f"cycle {ws.store.get_model(2)['cycle_id'][:8]}" in \
        again["decision_reasons"][0]
    assert again["records_in"] == 40 and again["accepted"] == first["accepted"]  # it did curate
    contribute(ws, splits.pool, range(40, 45), "bob")
    assert turn(ws)["candidate_version"] == 3


def test_a_rejected_candidates_data_is_not_trained_on_again(ws, splits):
    """Same data, same recipe, same champion: seeded training would remake the rejected candidate."""
    contribute(ws, splits.pool, range(40), "ann")
    report = turn(ws)
    if report["decision"] == "promoted":  # put v1 back: v2 is then a candidate gated against the champion
        Registry(ws).rollback(actor="test")
    again = turn(ws)
    assert again["decision"] == "skipped", again
    assert "v2 was trained on them and gated against champion v1" in again["decision_reasons"][0]


def test_an_erasure_makes_the_next_turn_train(ws, splits):
    """The champion still holds the erased user's rows; the snapshot no longer does: that is new."""
    contribute(ws, splits.pool, range(30), "ann")
    contribute(ws, splits.pool, range(30, 60), "eve")
    trained(ws)
    assert turn(ws)["decision"] == "skipped"
    ws.erase_user("eve")
    after = turn(ws)
    assert after["decision"] in ("promoted", "rejected") and after["candidate_version"] == 3


def test_records_deleted_by_retention_make_the_next_turn_train(ws, splits):
    correct(ws, splits.pool, range(40), "ann")
    trained(ws)
    assert turn(ws)["decision"] == "skipped"
    with write(ws.store.engine) as conn:  # ten interactions now older than the policy's 365 days
        ids = [r.id for r in conn.execute(tables.records.select().limit(10))]
        conn.execute(update(tables.records).where(tables.records.c.id.in_(ids))
                     .values(created_at=utcnow() - timedelta(days=400)))
    after = turn(ws)
    assert after["retention_deleted"]["interaction"] == 10 and after["candidate_version"] is not None


def test_new_settings_make_the_next_turn_train(ws, splits):
    contribute(ws, splits.pool, range(40), "ann")
    trained(ws)
    path = ws.root / "datawheel.toml"
    path.write_text(path.read_text().replace("epochs = 15", "epochs = 12"))
    changed = Workspace.open(ws.root)
    try:
        assert turn(changed)["candidate_version"] == 3
    finally:
        changed.store.close()


def test_the_api_and_the_cli_show_a_skipped_cycle(ws, monkeypatch):
    with make_client(ws) as client:
        cycle_id = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
        client.app.state.services.runner.join(120)
        state = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
    assert state["status"] == "done" and state["decision"] == "skipped" and state["candidate_version"] is None
    assert state["report"]["decision_reasons"][0].startswith("no new accepted records since init")
    monkeypatch.setenv("COLUMNS", "80")
    res = CliRunner().invoke(app, ["cycle", str(ws.root)])
    out = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "skipped" in out and "no new accepted records since init" in out and "champion accuracy" in out
    assert max(len(line) for line in res.output.splitlines()) <= 80


def test_a_generation_turn_on_the_same_feedback_is_skipped(chat_ws):  # noqa: F811 (the imported fixture)
    """The text-generation turn keeps the same rule: the same corrections again teach the adapter nothing."""
    with make_client(chat_ws) as client:
        first = _corrected_cycle(client, chat_ws)
        assert first["status"] == "done" and first["candidate_version"] is not None, first
        started = client.post("/v1/cycles", headers=ADMIN, json={}).json()["cycle_id"]
        again = _wait(client, started)
    assert again["decision"] == "skipped" and again["candidate_version"] is None, again
    since = f"no new accepted records since cycle {first['cycle_id'][:8]}"
    assert again["report"]["decision_reasons"][0].startswith(since)
    assert "champion_score" in again["report"] and len(chat_ws.store.list_models()) == 3
