"""User rights and the compliance gate: no raw personal data on disk or in logs, consent, retention,
erasure with an honest retrain, and an audit chain that shows tampering."""

from __future__ import annotations

import json
import logging
import random
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text, update
from typer.testing import CliRunner

from conftest import ADMIN, APP, make_client
from datawheel.cli.main import app as cli
from datawheel.errors import ConfigError
from datawheel.privacy.policy import load_policy
from datawheel.store import tables
from datawheel.store.db import utcnow, write
from datawheel.wheel.init import init_workspace
from datawheel.workspace import Workspace

LABELS = ("pos", "neg")
POS = ["great", "excellent", "love it", "wonderful", "好", "喜欢", "非常好", "满意"]
NEG = ["terrible", "awful", "hate it", "horrible", "差", "讨厌", "非常差", "失望"]

# Raw values that must never reach disk or a log line.
EMAIL = "li.wei.private@example.org"
MOBILE = "13812345678"
CN_ID = "11010519491231002X"
CARD = "4111 1111 1111 1111"
SECRET = "AKIAIOSFODNN7EXAMPLE"
RAW = [EMAIL, MOBILE, CN_ID, CARD, SECRET, "4111111111111111"]


def sentences(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        word = rng.choice(POS if label == "pos" else NEG)
        rows.append({"text": f"{word} product number {seed * 1000 + i}", "label": label})
    return rows


@pytest.fixture
def text_ws(tmp_path) -> Workspace:
    def jsonl(name, rows):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return path

    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=LABELS,
                        seed_data=jsonl("seed.jsonl", sentences(60, 1)),
                        eval_data=jsonl("gold.jsonl", sentences(40, 2)),
                        epochs=20)
    yield ws
    ws.store.close()


def pii_text(word: str) -> str:
    return f"{word}! mail me at {EMAIL}, 电话{MOBILE}联系, id {CN_ID}, card {CARD}, key {SECRET}"


def scan_workspace(ws: Workspace) -> list[str]:
    """Every raw value found in any file of the workspace (database, WAL, Parquet, models, config)."""
    ws.store.close()  # let SQLite checkpoint, but scan the WAL too if it is still there
    found = []
    for path in ws.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {value}" for value in RAW if value.encode() in data]
    return found


def test_pii_sent_through_every_route_never_reaches_disk_or_logs(text_ws, caplog):
    """PII in text inputs, comments, metadata and model names is replaced before storage, everywhere."""
    caplog.set_level(logging.DEBUG)
    with make_client(text_ws) as client:
        for n in range(6):
            user = f"user{n % 3}"
            out = client.post("/v1/predict", headers=APP, json={
                "user_id": user, "input": {"text": pii_text(POS[n])}, "consent": {"training": True},
                "metadata": {"note": f"reach me via {EMAIL}", f"phone {MOBILE}": 1}})
            assert out.status_code == 200, out.text
            fb = client.post("/v1/feedback", headers=APP, json={
                "interaction_id": out.json()["interaction_id"], "user_id": user, "label": "pos",
                "comment": f"wrong! call {MOBILE} or write {EMAIL}"})
            assert fb.status_code == 201, fb.text
        assert client.post("/v1/contributions", headers=APP, json={
            "user_id": "user0", "input": {"text": pii_text("喜欢")}, "label": "pos",
            "consent": {"training": True}, "metadata": {"card": CARD}}).status_code == 201
        assert client.post("/v1/interactions", headers=APP, json={
            "user_id": "user1", "input": {"text": pii_text("差")}, "output_label": "neg",
            "model_name": f"model-of-{EMAIL}", "model_version": "1"}).status_code == 201
        export = client.get("/v1/users/user0/data", headers=APP)
        assert export.status_code == 200
        assert not [v for v in RAW if v in export.text]
        assert "<EMAIL>" in export.text and "<PHONE>" in export.text and "<CN_ID>" in export.text
        cycle_id = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
        client.app.state.services.runner.join(120)
        assert client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()["status"] == "done"
        metrics = client.get("/metrics").text
        assert 'datawheel_pii_findings_total{action="redact",type="EMAIL"}' in metrics
    assert list((text_ws.root / "snapshots").glob("*.parquet")), "the cycle should have written a snapshot"
    assert scan_workspace(text_ws) == []
    assert not [v for v in RAW if v in caplog.text]


def write_policy(ws: Workspace, body: str) -> None:
    (ws.root / "policy.toml").write_text(body, encoding="utf-8")


def test_reject_policy_refuses_the_record_with_a_reason_code(text_ws):
    """A PII type the policy rejects gets a 422 naming the type (not the value), and nothing is stored."""
    write_policy(text_ws, '[pii]\nCN_ID = "reject"\n')
    ws = Workspace.open(text_ws.root)
    with make_client(ws) as client:
        resp = client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": {"text": f"my id {CN_ID}"}})
        assert resp.status_code == 422
        assert resp.json()["error"] == "pii_rejected" and "CN_ID" in resp.json()["detail"]
        assert CN_ID not in resp.text
        assert client.get("/v1/users/u/data", headers=APP).status_code == 404
        assert 'datawheel_requests_rejected_total{reason="pii_rejected",status="422"} 1.0' in \
            client.get("/metrics").text
    ws.store.close()


def test_pseudonyms_are_stable_and_keyed(text_ws):
    """Pseudonymize maps one value to one token in a workspace, and a different workspace key to another."""
    write_policy(text_ws, 'default = "pseudonymize"\n')
    ws = Workspace.open(text_ws.root)
    screen = ws.screen()
    a = screen.clean_text(f"write {EMAIL} now", "t")
    b = screen.clean_text(f"or {EMAIL} later", "t")
    token = a.split()[1]
    assert token.startswith("<EMAIL:") and token in b and EMAIL not in a
    assert screen.clean_text(a, "t") == a  # idempotent
    other = type(screen)(ws.policy, "another-key")
    assert other.clean_text(f"write {EMAIL} now", "t") != a
    ws.store.close()


def test_policy_file_errors_name_the_key(text_ws):
    """An unknown key, PII type or action in policy.toml is refused with its name."""
    write_policy(text_ws, '[pii]\nPASSPORT = "redact"\n')
    with pytest.raises(ConfigError, match="PASSPORT"):
        load_policy(text_ws.root)
    write_policy(text_ws, '[sources.interaction]\nretention = 3\n')
    with pytest.raises(ConfigError, match=r"sources\.interaction\.retention: unknown key"):
        load_policy(text_ws.root)
    write_policy(text_ws, 'default = "shred"\n')
    with pytest.raises(ConfigError, match="default"):
        load_policy(text_ws.root)


def test_consent_requirement_per_source(text_ws):
    """Contributions need training consent by default: without it the API says so (403) and stores nothing."""
    with make_client(text_ws) as client:
        body = {"user_id": "v", "input": {"text": "great"}, "label": "pos", "consent": {"training": False}}
        resp = client.post("/v1/contributions", headers=APP, json=body)
        assert resp.status_code == 403 and resp.json()["error"] == "consent_required"
        assert client.get("/v1/users/v/data", headers=APP).status_code == 404  # not even the user row
        body["consent"] = {"training": True}
        assert client.post("/v1/contributions", headers=APP, json=body).status_code == 201


def test_retention_deletes_old_records_in_gc_and_cycles(text_ws):
    """Records older than their source's retention are deleted by `gc` and by a cycle, which counts them."""
    with make_client(text_ws) as client:
        for n in range(4):
            out = client.post("/v1/predict", headers=APP, json={"user_id": "old", "input": {"text": POS[n]},
                                                                 "consent": {"training": True}}).json()
            client.post("/v1/feedback", headers=APP, json={"interaction_id": out["interaction_id"],
                                                           "user_id": "old", "rating": 1})
        with write(text_ws.store.engine) as conn:
            long_ago = utcnow() - timedelta(days=400)
            conn.execute(update(tables.records).values(created_at=long_ago))
        res = CliRunner().invoke(cli, ["gc", str(text_ws.root)])
        assert res.exit_code == 0 and "interaction 4" in res.output
        assert client.get("/v1/users/old/data", headers=APP).json()["records"] == []
        out = client.post("/v1/predict", headers=APP, json={"user_id": "old", "input": {"text": "great"}}).json()
        with write(text_ws.store.engine) as conn:
            conn.execute(update(tables.records).values(created_at=utcnow() - timedelta(days=400)))
        cycle_id = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
        client.app.state.services.runner.join(120)
        report = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()["report"]
        assert report["retention_deleted"]["interaction"] == 1
        assert out["interaction_id"]


def test_audit_chain_verifies_and_names_the_first_tampered_entry(text_ws):
    """Consent changes, exports, erasures and promotions are chained; editing or deleting one is detected."""
    with make_client(text_ws) as client:
        client.put("/v1/users/w/consent", headers=APP, json={"training": True})
        client.get("/v1/users/w/data", headers=APP)
        client.delete("/v1/users/w", headers=APP)
        log = client.get("/v1/audit", headers=ADMIN).json()
    actions = [e["action"] for e in log["entries"]]
    assert log["chain"]["ok"] and actions[:2] == ["policy_set", "promotion"]
    assert {"consent_change", "export", "erasure"} <= set(actions)
    assert all("user_id" not in e["detail"] for e in log["entries"])
    assert {e["detail"].get("user_ref") for e in log["entries"]} >= {text_ws.user_ref("w")}
    runner = CliRunner()
    assert runner.invoke(cli, ["audit", "verify", str(text_ws.root)]).exit_code == 0
    with write(text_ws.store.engine) as conn:
        conn.execute(text("UPDATE audit SET actor = 'mallory' WHERE id = 3"))
    res = runner.invoke(cli, ["audit", "verify", str(text_ws.root)])
    assert res.exit_code == 1 and "entry 3" in res.output
    with write(text_ws.store.engine) as conn:
        conn.execute(text("DELETE FROM audit WHERE id = 2"))
    report = text_ws.store.verify_audit()
    assert not report.ok and report.first_broken == 2 and "missing" in report.problem


# Texts far apart, so near-duplicate clustering keeps every item separate.
DISTINCT = ["harbour lights at dusk", "seven quiet mountains", "a parcel of old letters", "rain over the market",
            "the violin teacher", "frozen lake in january", "copper kettle whistles", "trains leave at noon",
            "garden of white stones", "a map without roads", "midnight bakery queue", "the lighthouse keeper",
            "paper boats drifting", "orchard after the storm", "silent library hall", "desert radio station"]


def test_erasure_then_retrain_without_replaces_the_champion(text_ws):
    """Erasure rewrites the champion's snapshot without the user's rows; retrain-without trains a replacement on
    it (nothing of theirs left to remove) and gates it."""
    with make_client(text_ws) as client:
        for n in range(16):
            user = "leaver" if n % 2 == 0 else f"stayer{n % 3}"
            word = (POS + NEG)[n % 16]
            out = client.post("/v1/predict", headers=APP, json={
                "user_id": user, "input": {"text": f"{word} {DISTINCT[n]}"}, "consent": {"training": True}}).json()
            client.post("/v1/feedback", headers=APP, json={"interaction_id": out["interaction_id"], "user_id": user,
                                                           "label": "pos" if word in POS else "neg"})
        first = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
        client.app.state.services.runner.join(120)
        cycle = client.get(f"/v1/cycles/{first}", headers=ADMIN).json()
        client.post(f"/v1/models/{cycle['candidate_version']}/promote", headers=ADMIN)
        source = text_ws.snapshot_path(cycle["snapshot_id"])
        rows_before = pq.read_table(source).num_rows
        receipt = client.delete("/v1/users/leaver", headers=APP).json()
        assert pq.read_table(source).num_rows == rows_before - 8  # rewritten at erasure
        assert receipt["model_versions_trained_on_user_data"] == [cycle["candidate_version"]]
        forget = client.post("/v1/users/leaver/retrain-without", headers=ADMIN)
        assert forget.status_code == 202
        client.app.state.services.runner.join(120)
        state = client.get(f"/v1/cycles/{forget.json()['cycle_id']}", headers=ADMIN).json()
    assert state["status"] == "done", state["error"]
    report = state["report"]
    assert report["replaces"] == cycle["candidate_version"], cycle["report"]["rejected_by_reason"]
    assert report["rows_removed"] == 0 and report["source_snapshot"] == cycle["snapshot_id"]
    assert report["decision"] in ("promoted", "rejected")
    refs = pq.read_table(text_ws.snapshot_path(report["snapshot"]["id"])).column("user_refs").to_pylist()
    assert text_ws.user_ref("leaver") not in {r for row in refs for r in row}
    assert len(refs) == report["snapshot"]["items"]


def test_blank_text_is_refused_not_predicted(text_ws):
    """An empty or letterless text gets a 422 naming the input; nothing is predicted or stored."""
    with make_client(text_ws) as client:
        for text in ("", "   ", "?!…", "\u200b"):
            out = client.post("/v1/predict", headers=APP, json={"user_id": "u1", "input": {"text": text}})
            assert out.status_code == 422 and out.json()["detail"].startswith("input"), out.text
        assert client.get("/v1/users/u1/data", headers=APP).status_code == 404  # nothing was stored
