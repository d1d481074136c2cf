"""Curation as users and operators see it: the annotation queue API and CLI, reliability, datasheets, export,
and the model card of the version trained on the curated snapshot."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import ADMIN, APP, make_client
from datawheel.cli.main import app as cli
from datawheel.tasks.image import to_png_base64

ANNOTATOR_KEY = "annotator-key-for-tests-0123456789"
ANNOTATOR = {"Authorization": f"Bearer {ANNOTATOR_KEY}"}


def use_product(client, splits, users=("alice", "bob", "carol"), items=range(40), liar="mallory"):
    """Honest users label pool digits truthfully; one user always answers with the next digit."""
    for n in items:
        image, truth = splits.pool[n]
        for user in (liar, users[n % len(users)]):  # the liar first: its records represent the items
            out = client.post("/v1/predict", headers=APP, json={
                "user_id": user, "input": {"image": to_png_base64(image)}, "consent": {"training": True}})
            assert out.status_code == 200, out.text
            label = truth if user != liar else str((int(truth) + 1) % 10)
            fb = client.post("/v1/feedback", headers=APP, json={
                "interaction_id": out.json()["interaction_id"], "user_id": user, "label": label})
            assert fb.status_code == 201, fb.text


def run_cycle(client) -> dict:
    cycle_id = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
    client.app.state.services.runner.join(300)
    state = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
    assert state["status"] == "done", state["error"]
    return state


@pytest.fixture
def curated(ws, splits):
    with make_client(ws, annotator_key=ANNOTATOR_KEY) as client:
        use_product(client, splits)
        state = run_cycle(client)
        yield client, state


def test_queue_needs_the_annotator_or_admin_key(curated):
    """The product's key cannot read the queue (it shows users' inputs to people); the annotator's cannot predict."""
    client, _ = curated
    assert client.get("/v1/annotation/queue").status_code == 401
    assert client.get("/v1/annotation/queue", headers=APP).status_code == 403
    assert client.get("/v1/annotation/queue", headers=ADMIN).status_code == 200
    assert client.post("/v1/predict", headers=ANNOTATOR, json={"user_id": "x", "input": {}}).status_code == 403


def test_queue_lists_items_by_value_and_answers_become_anchors(curated, ws, splits):
    """The queue is ordered by score with its signals; an answer leaves the queue and fixes the item's label."""
    client, first = curated
    resp = client.get("/v1/annotation/queue?limit=5", headers=ANNOTATOR)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["labels"] == list(ws.labels) and 1 <= len(body["items"]) <= 5
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    top = body["items"][0]
    assert set(top["signals"]) == {"uncertainty", "disagreement", "label_issue", "class_balance"}
    assert top["input"]["image"]  # a PNG the annotator can look at
    # the liar contradicted every honest label, so every queued item shows disagreement
    assert all(it["signals"]["disagreement"] > 0 for it in body["items"])

    # answer a queued item with a label no user gave: the next snapshot must carry it
    labels = {r["content_hash"]: r["label"] for r in pq.read_table(
        ws.snapshot_path(first["snapshot_id"]), columns=["content_hash", "label"]).to_pylist()}
    queued = [it["item_id"] for it in client.get("/v1/annotation/queue?limit=500", headers=ANNOTATOR).json()["items"]]
    item_id = next(h for h in queued if h in labels)
    other = str((int(labels[item_id]) + 5) % 10)
    answer = client.post(f"/v1/annotation/{item_id}", headers=ANNOTATOR, json={"label": other})
    assert answer.status_code == 201, answer.text
    assert answer.json()["annotator"] == "annotator:api"
    assert item_id not in {it["item_id"] for it in client.get("/v1/annotation/queue?limit=500",
                                                             headers=ANNOTATOR).json()["items"]}
    second = run_cycle(client)
    rows = pq.read_table(ws.snapshot_path(second["snapshot_id"]), columns=["content_hash", "label",
                                                                          "confidence"]).to_pylist()
    row = next(r for r in rows if r["content_hash"] == item_id)
    assert row["label"] == other and row["confidence"] == 1.0
    assert second["report"]["snapshot"]["annotated_items"] == 1
    assert any(e["action"] == "annotation" for e in client.get("/v1/audit", headers=ADMIN).json()["entries"])


@pytest.mark.parametrize("path,body,status,where", [
    ("/v1/annotation/" + "0" * 64, {"label": "3"}, 404, "item_id"),
    ("/v1/annotation/not-a-hash", {"label": "3"}, 422, "item_id"),
    (None, {"label": "eleven"}, 422, "label"),
    (None, {"label": 3}, 422, "label"),
    (None, {}, 422, "label"),
])
def test_bad_annotations_are_4xx_naming_the_problem(curated, path, body, status, where):
    client, _ = curated
    if path is None:
        path = "/v1/annotation/" + client.get("/v1/annotation/queue", headers=ANNOTATOR).json()["items"][0]["item_id"]
    resp = client.post(path, headers=ANNOTATOR, json=body)
    assert resp.status_code == status and where in resp.text


def test_only_what_the_queue_offers_can_be_answered(curated, ws, splits):
    """Stored but never queued (a non-consenting user's interaction) answers exactly like never sent: 404, the
    same body, for the annotator and the admin key alike, and no label is planted; an answered item is closed."""
    client, _ = curated
    image = {"image": to_png_base64(splits.pool[45][0])}
    out = client.post("/v1/predict", headers=APP, json={"user_id": "nina", "input": image,
                                                         "consent": {"training": False}})
    assert out.status_code == 200, out.text
    stored = ws.task.content_hash(ws.task.parse(image))
    assert stored in ws.store.content_hashes_of("nina")
    queued = client.get("/v1/annotation/queue?limit=500", headers=ANNOTATOR).json()["items"]
    assert stored not in {it["item_id"] for it in queued}
    refusals = [client.post(f"/v1/annotation/{item}", headers=key, json={"label": "1"})
                for item in (stored, "0" * 64) for key in (ANNOTATOR, ADMIN)]
    assert {r.status_code for r in refusals} == {404}
    assert len({r.text for r in refusals}) == 1 and stored not in refusals[0].text
    assert ws.store.annotations() == {}

    item = queued[0]["item_id"]
    assert client.post(f"/v1/annotation/{item}", headers=ADMIN, json={"label": "2"}).status_code == 201
    again = client.post(f"/v1/annotation/{item}", headers=ANNOTATOR, json={"label": "3"})
    assert again.status_code == 404 and again.text == refusals[0].text
    assert ws.store.annotations() == {item: "2"}


def test_users_see_their_reliability_and_operators_see_everyones(curated, ws):
    """The liar's export shows low reliability and exclusion; `datawheel users` lists every user's."""
    client, state = curated
    assert state["report"]["snapshot"]["users_excluded"] == 1
    liar = client.get("/v1/users/mallory/data", headers=APP).json()["reliability"]
    honest = client.get("/v1/users/alice/data", headers=APP).json()["reliability"]
    assert liar["excluded"] and liar["reliability"] < 0.5 and liar["votes"] == 40
    assert not honest["excluded"] and honest["reliability"] > 0.8
    out = CliRunner().invoke(cli, ["users", str(ws.root)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if "mallory" in x)
    assert line.split()[-1] == "yes"  # the excluded column, the last one
    # erasure takes the reliability row and the user's queued items with it
    mallory_records = {r["id"] for r in ws.store.user_data("mallory", lambda b: None)["records"]}
    assert queued_record_ids(ws) & mallory_records  # the liar's records were queued (they disagree)
    client.delete("/v1/users/mallory", headers=APP)
    assert ws.store.reliability_of("mallory") is None
    assert not queued_record_ids(ws) & mallory_records


def queued_record_ids(ws) -> set[str]:
    from sqlalchemy import select

    from datawheel.store import tables

    with ws.store.engine.connect() as conn:
        return {r.record_id for r in conn.execute(select(tables.annotation_queue.c.record_id))}


def test_erasing_the_only_sender_of_an_item_removes_it_and_its_answer(ws, splits):
    """Queue entries and annotations hang off users' content: when the content goes, they go."""
    with make_client(ws, annotator_key=ANNOTATOR_KEY) as client:
        use_product(client, splits, users=("solo",), items=range(12), liar="liar")
        run_cycle(client)
        queue = client.get("/v1/annotation/queue?limit=50", headers=ANNOTATOR).json()["items"]
        item_id = queue[0]["item_id"]
        assert client.post(f"/v1/annotation/{item_id}", headers=ANNOTATOR, json={"label": "1"}).status_code == 201
        client.delete("/v1/users/solo", headers=APP)
        client.delete("/v1/users/liar", headers=APP)
        assert ws.store.annotations() == {} and ws.store.annotation_queue(50) == []
        again = client.post(f"/v1/annotation/{item_id}", headers=ANNOTATOR, json={"label": "1"})
        assert again.status_code == 404


def test_annotate_cli_shows_an_item_and_records_the_label(curated, ws):
    """`datawheel annotate` draws the digit in block characters, refuses a non-label, takes a label, stops on '.'."""
    before = ws.store.annotation_queue(2)
    out = CliRunner().invoke(cli, ["annotate", str(ws.root), "--limit", "2", "--annotator", "dana"],
                             input="twelve\n7\n.\n")
    assert out.exit_code == 0, out.output
    assert "█" in out.output and "not a label" in out.output and "1 item(s) labelled" in out.output
    assert ws.store.annotations() == {before[0]["item_id"]: "7"}


def test_snapshots_have_datasheets_and_export_for_huggingface_datasets(curated, ws, tmp_path):
    """JSON and Markdown datasheets agree with the snapshot; `datasets` loads the export with typed columns."""
    _, state = curated
    parquet = ws.snapshot_path(state["snapshot_id"])
    sheet = json.loads(parquet.with_name(parquet.stem + ".datasheet.json").read_text())
    table = pq.read_table(parquet)
    assert sheet["file"]["rows"] == len(table) == sheet["composition"]["items"]
    assert sum(sheet["composition"]["per_label"].values()) == len(table)
    assert sheet["curation"]["users_excluded_as_unreliable"] == 1
    assert sheet["lineage"]["champion_version_as_prior"] == 1
    md = parquet.with_name(parquet.stem + ".datasheet.md").read_text()
    assert f"snapshot `{state['snapshot_id']}`" in md and "| dropped because |" in md
    runner = CliRunner()
    listing = runner.invoke(cli, ["datasets", str(ws.root)], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and state["snapshot_id"][:12] in listing.output
    assert runner.invoke(cli, ["datasets", str(ws.root), "--export", "zzz", "--to", str(tmp_path)]).exit_code == 2
    out = tmp_path / "export"
    done = runner.invoke(cli, ["datasets", str(ws.root), "--export", state["snapshot_id"][:10], "--to", str(out)])
    assert done.exit_code == 0, done.output

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert loaded.num_rows == len(table)
    assert loaded.features["label"].names == list(ws.labels)
    first = loaded[0]
    assert first["image"].size == (28, 28)
    assert loaded.features["label"].int2str(first["label"]) == table.column("label")[0].as_py()
    assert "user_refs" not in loaded.column_names  # pseudonyms stay inside the workspace


def test_every_version_has_a_model_card_with_intervals_and_the_gate_decision(curated, ws):
    """v1 (seed only) and the cycle's candidate each get a card; `datawheel models --card` prints it."""
    _, state = curated
    v = state["candidate_version"]
    card = ws.model_path(v).with_suffix(".card.md").read_text()
    metrics = ws.store.get_model(v)["metrics"]
    lo, hi = metrics["accuracy_ci95"]
    assert lo <= metrics["accuracy"] <= hi and 0 <= metrics["ece"] <= 1
    assert f"{lo:.2%} – {hi:.2%}" in card and state["snapshot_id"] in card
    assert f"Decision: **{state['decision']}**" in card and "McNemar exact p" in card
    assert "| 0 |" in card  # per-class recall table
    info = ws.store.get_model(v)["train_info"]
    if info["validation_examples"]:
        assert f"kept epoch {info['best_epoch']}; temperature {info['temperature']:.3f}" in card
    else:
        assert "too few to stop early or calibrate" in card
    assert "Trained on the seed set only" in ws.model_path(1).with_suffix(".card.md").read_text()
    out = CliRunner().invoke(cli, ["models", str(ws.root), "--card", str(v)], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and f"Model card: v{v}" in out.output
    assert CliRunner().invoke(cli, ["models", str(ws.root), "--card", "99"]).exit_code == 2



def test_withdrawing_consent_takes_the_users_items_out_of_the_queue_at_once(curated, ws):
    """An annotator is never shown an item whose user has just withdrawn training consent."""
    from sqlalchemy import select

    from datawheel.store import tables as t

    client, _ = curated

    def queued_users() -> set[str]:
        with ws.store.engine.connect() as conn:
            return set(conn.execute(select(t.records.c.user_id).join(
                t.annotation_queue, t.annotation_queue.c.record_id == t.records.c.id)).scalars())
    assert "mallory" in queued_users()
    out = client.put("/v1/users/mallory/consent", headers=APP, json={"training": False})
    assert out.status_code == 200, out.text
    assert "mallory" not in queued_users()
