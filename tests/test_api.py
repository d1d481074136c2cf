"""The API through its HTTP interface: the happy paths, and every kind of client mistake answered with a 4xx."""

from __future__ import annotations

import base64
import io
import json
import threading
from urllib.parse import quote

import pytest
from PIL import Image

from conftest import ADMIN, APP, make_client
from datawheel.store.store import Store
from datawheel.tasks.image import to_png_base64

PIXELS = {"pixels": [[0, 0, 0], [0, 255, 0], [0, 255, 0]]}


def digit_input(splits, n: int = 0) -> dict:
    return {"image": to_png_base64(splits.pool[n][0])}


def predict(client, splits, user="u1", n=0, consent=True):
    resp = client.post("/v1/predict", headers=APP,
                       json={"user_id": user, "input": digit_input(splits, n), "consent": {"training": consent}})
    assert resp.status_code == 200, resp.text
    return resp.json()


def record_count(ws) -> int:
    from sqlalchemy import func, select

    from datawheel.store import tables

    with ws.store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.records)).scalar_one()


def test_predict_answers_and_logs_the_interaction(client, splits, ws):
    """A prediction returns a label, a probability per label and the model version, and is stored durably."""
    out = predict(client, splits)
    assert out["label"] in ws.labels and out["model_version"] == 1
    assert set(out["scores"]) == set(ws.labels) and sum(out["scores"].values()) == pytest.approx(1, abs=1e-4)
    # durable: a brand-new connection to the database sees it
    fresh = Store.open(ws.db_url)
    data = fresh.user_data("u1", decode=lambda b: None)
    fresh.close()
    assert [r["id"] for r in data["records"]] == [out["interaction_id"]]


def test_pixels_input_is_accepted(client, splits):
    """A 2-D pixel array is an alternative to an encoded image."""
    resp = client.post("/v1/predict", headers=APP,
                       json={"user_id": "u1", "input": {"pixels": splits.pool[0][0].tolist()}})
    assert resp.status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"user_id": "u1", "input": {"image": "not base64!!"}}, "input.image"),
    ({"user_id": "u1", "input": {"image": base64.b64encode(b"hello").decode()}}, "input.image"),
    ({"user_id": "u1", "input": {"pixels": [[1, 2], [3]]}}, "input.pixels"),
    ({"user_id": "u1", "input": {"pixels": [[0] * 28] * 28}}, "input: is blank"),  # an empty drawing
    ({"user_id": "u1", "input": {"pixels": [[[1]]]}}, "input.pixels"),
    ({"user_id": "u1", "input": {"text": "hi"}}, "input"),
    ({"user_id": "u1", "input": {}}, "input"),
    ({"user_id": 5, "input": {"pixels": [[1]]}}, "user_id"),
    ({"user_id": "", "input": {"pixels": [[1]]}}, "user_id"),
    ({"user_id": "u1"}, "input"),
    ({"user_id": "u1", "input": {"pixels": [[1]]}, "consent": {"training": "yes"}}, "consent.training"),
    ({"user_id": "u1", "input": {"pixels": [[1]]}, "surprise": 1}, "surprise"),
])
def test_bad_predict_input_is_a_4xx_naming_the_field_and_stores_nothing(client, ws, body, field):
    """Malformed base64, wrong shapes, wrong types and unknown fields get a 422 that names the field."""
    resp = client.post("/v1/predict", headers=APP, json=body)
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["detail"]
    assert record_count(ws) == 0


def test_malformed_json_and_oversized_bodies_are_4xx(ws):
    """Invalid JSON is a 422; a body over the limit is a 413, with or without Content-Length."""
    with make_client(ws, max_body_bytes=1000) as client:
        assert client.post("/v1/predict", headers={**APP, "Content-Type": "application/json"},
                           content=b"{not json").status_code == 422
        big = {"user_id": "u1", "input": {"pixels": [[0] * 500] * 5}}
        assert client.post("/v1/predict", headers=APP, json=big).status_code == 413

        def chunks():
            yield b'{"user_id": "u1", "input": {"pixels": ['
            for _ in range(100):
                yield b"[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"
            yield b"[0]]}}"
        resp = client.post("/v1/predict", headers={**APP, "Content-Type": "application/json"}, content=chunks())
        assert resp.status_code == 413
    assert record_count(ws) == 0


def test_keys_are_required_and_roles_enforced(client):
    """No key is 401, a wrong key is 401, the app key cannot reach admin routes (403)."""
    assert client.post("/v1/predict", json={}).status_code == 401
    assert client.post("/v1/predict", headers={"Authorization": "Bearer nope"}, json={}).status_code == 401
    assert client.get("/v1/models", headers=APP).status_code == 403
    assert client.get("/v1/models", headers=ADMIN).status_code == 200


def test_feedback_validation_and_user_isolation(client, splits):
    """Feedback needs a known label, an existing interaction, and the interaction's own user."""
    iid = predict(client, splits, user="alice")["interaction_id"]
    ok = client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "alice", "label": "3"})
    assert ok.status_code == 201
    bad_label = client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "alice",
                                                               "label": "eleven"})
    assert bad_label.status_code == 422 and "label" in bad_label.json()["detail"]
    assert client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "alice",
                                                          "rating": 5}).status_code == 422
    assert client.post("/v1/feedback", headers=APP, json={"interaction_id": iid,
                                                          "user_id": "alice"}).status_code == 422
    other = client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "mallory", "label": "1"})
    missing = client.post("/v1/feedback", headers=APP, json={"interaction_id": "0" * 32, "user_id": "alice",
                                                            "label": "1"})
    assert other.status_code == missing.status_code == 404
    # one answer for "not yours" and "not there", and neither quotes the id it was sent (it may be anything)
    assert other.json() == missing.json() and iid not in other.text and "0" * 32 not in missing.text
    email = client.post("/v1/feedback", headers=APP, json={"interaction_id": "alice@example.com", "user_id": "alice",
                                                           "label": "1"})
    assert email.status_code == 404 and "alice" not in email.json()["detail"]


@pytest.mark.parametrize("rating", [True, False, 1.0, -1.0, 0, 2, "1"])
def test_a_rating_is_the_integer_minus_one_or_one(client, splits, rating):
    """Strict means strict: JSON true and 1.0 equal 1 in Python, and are still refused."""
    iid = predict(client, splits, user="alice")["interaction_id"]
    resp = client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "alice", "rating": rating})
    assert resp.status_code == 422 and "rating" in resp.json()["detail"]
    for good in (1, -1):
        assert client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "alice",
                                                              "rating": good}).status_code == 201


def test_contributions_and_external_interactions(client, splits):
    """Donated examples and interactions served by the product's own model are recorded with their labels."""
    c = client.post("/v1/contributions", headers=APP, json={"user_id": "bob", "input": digit_input(splits, 1),
                                                            "label": "7", "consent": {"training": True}})
    assert c.status_code == 201
    i = client.post("/v1/interactions", headers=APP, json={"user_id": "bob", "input": digit_input(splits, 2),
                                                           "output_label": "4", "model_name": "theirs",
                                                           "model_version": "2.1"})
    assert i.status_code == 201
    assert client.post("/v1/contributions", headers=APP, json={"user_id": "bob", "input": digit_input(splits, 1),
                                                               "label": "x", "consent": {"training": True}}
                       ).status_code == 422
    assert client.post("/v1/contributions", headers=APP, json={"user_id": "bob", "input": digit_input(splits, 1),
                                                               "label": "7"}).status_code == 422
    data = client.get("/v1/users/bob/data", headers=APP).json()
    assert sorted((r["kind"], r["label"] or r["predicted_label"]) for r in data["records"]) == [
        ("contribution", "7"), ("interaction", "4")]
    shown = data["records"][0]["input"]
    assert set(shown) == {"image"}  # shown as annotators see it: the canonical 28x28 item as a PNG
    assert Image.open(io.BytesIO(base64.b64decode(shown["image"]))).size == (28, 28)


def test_user_data_is_scoped_to_the_user(client, splits):
    """A user's export holds only that user's records; an unknown user is a 404."""
    predict(client, splits, user="alice", n=0)
    predict(client, splits, user="bob", n=1)
    alice = client.get("/v1/users/alice/data", headers=APP).json()
    assert alice["user_id"] == "alice" and len(alice["records"]) == 1
    assert client.get("/v1/users/nobody/data", headers=APP).status_code == 404
    assert client.get("/v1/users/bad%20id/data", headers=APP).status_code == 422


def test_consent_scopes_are_recorded_with_history(client):
    """Consent is set per user and per scope; each change is kept in the user's history."""
    assert client.put("/v1/users/carol/consent", headers=APP, json={"training": True}).json()["consent"] == {
        "training": True, "analytics": False}
    client.put("/v1/users/carol/consent", headers=APP, json={"analytics": True})
    client.put("/v1/users/carol/consent", headers=APP, json={"training": False})
    data = client.get("/v1/users/carol/data", headers=APP).json()
    assert data["consent"] == {"training": False, "analytics": True}
    assert [(e["scope"], e["granted"]) for e in data["consent_history"]] == [
        ("training", True), ("analytics", True), ("training", False)]
    assert client.put("/v1/users/carol/consent", headers=APP, json={"training": 1}).status_code == 422
    empty = client.put("/v1/users/carol/consent", headers=APP, json={})
    assert empty.status_code == 422 and "at least one scope" in empty.json()["detail"]


def test_erasure_deletes_everything_and_returns_a_receipt(client, splits, ws):
    """After DELETE the user's records and feedback are gone and the receipt counts them."""
    iid = predict(client, splits, user="dave")["interaction_id"]
    client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "dave", "label": "2"})
    receipt = client.delete("/v1/users/dave", headers=APP).json()
    assert receipt["records_deleted"] == 1 and receipt["feedback_deleted"] == 1
    assert receipt["model_versions_trained_on_user_data"] == []
    assert client.get("/v1/users/dave/data", headers=APP).status_code == 404
    assert record_count(ws) == 0
    assert client.delete("/v1/users/dave", headers=APP).status_code == 404


def test_erasure_drops_unfinished_training_checkpoints(client, splits, ws):
    """A killed run's checkpoint was trained on the user's data: erasure deletes it with the records."""
    predict(client, splits, user="erin")
    ws.checkpoint_path("snap").parent.mkdir(parents=True, exist_ok=True)
    ws.checkpoint_path("snap").write_bytes(b"weights")
    assert client.delete("/v1/users/erin", headers=APP).status_code == 200
    assert not ws.checkpoint_path("snap").exists()


def test_cycle_promote_and_rollback_through_the_api(client, splits):
    """A cycle runs to done with a report; promote and rollback move the champion and serving follows."""
    for n in range(30):
        out = predict(client, splits, user=f"u{n % 5}", n=n)
        client.post("/v1/feedback", headers=APP, json={"interaction_id": out["interaction_id"],
                                                       "user_id": f"u{n % 5}", "label": splits.pool[n][1]})
    start = client.post("/v1/cycles", headers=ADMIN)
    assert start.status_code == 202
    client.app.state.services.runner.join(120)
    state = client.get(f"/v1/cycles/{start.json()['cycle_id']}", headers=ADMIN).json()
    assert state["status"] == "done", state["error"]
    assert state["decision"] in ("promoted", "rejected")
    assert state["report"]["records_in"] == 30
    models = client.get("/v1/models", headers=ADMIN).json()["models"]
    assert [m["version"] for m in models] == [1, 2]
    assert set(models[0]["metrics"]) >= {"accuracy", "macro_f1", "per_class_recall"}
    assert client.post("/v1/models/2/promote", headers=ADMIN).json()["aliases"]["champion"] == 2
    assert predict(client, splits)["model_version"] == 2
    assert client.post("/v1/rollback", headers=ADMIN).json()["aliases"] == {"champion": 1, "previous": 2}
    assert predict(client, splits)["model_version"] == 1
    assert client.post("/v1/models/99/promote", headers=ADMIN).status_code == 404
    assert client.get("/v1/cycles/nope", headers=ADMIN).status_code == 404


def test_hot_swap_never_fails_a_request(client, splits):
    """Requests running while the champion flips back and forth all succeed, on one version or the other."""
    statuses: list[int] = []
    versions: set[int] = set()

    def hammer():
        for n in range(40):
            r = client.post("/v1/predict", headers=APP, json={"user_id": "h", "input": digit_input(splits, n)})
            statuses.append(r.status_code)
            if r.status_code == 200:
                versions.add(r.json()["model_version"])

    # make a second version from a cycle on a few users' labels (with nothing new, a cycle is skipped)
    label_items(client, splits, users=3, n=12)
    start = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
    client.app.state.services.runner.join(120)
    assert client.get(f"/v1/cycles/{start}", headers=ADMIN).json()["status"] == "done"
    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(10):
        client.post("/v1/models/2/promote", headers=ADMIN)
        client.post("/v1/rollback", headers=ADMIN)
    for t in threads:
        t.join()
    assert statuses and set(statuses) == {200}
    assert versions <= {1, 2}


def test_healthz_and_metrics(client, splits):
    """Health answers without a key; metrics are Prometheus text and count predictions and rejections."""
    predict(client, splits)
    client.post("/v1/predict", headers=APP, json={"user_id": "u1", "input": {}})
    assert client.get("/healthz").json() == {"status": "ok", "champion_version": 1}
    text = client.get("/metrics").text
    assert "datawheel_predictions_total 1.0" in text
    assert 'datawheel_requests_rejected_total{reason="invalid_input",status="422"} 1.0' in text
    assert "datawheel_champion_version 1.0" in text


def label_items(client, splits, users: int, n: int, consent: bool = True) -> list[str]:
    ids = []
    for i in range(n):
        user = f"u{i % users}"
        out = predict(client, splits, user=user, n=i, consent=consent)
        assert client.post("/v1/feedback", headers=APP, json={"interaction_id": out["interaction_id"],
                                                              "user_id": user, "label": splits.pool[i][1]}
                           ).status_code == 201
        ids.append(out["interaction_id"])
    return ids


def test_auto_cycle_starts_after_n_labelled_records(ws, splits):
    """With auto-cycle N, the N-th new labelled record starts a cycle by itself."""
    with make_client(ws, auto_cycle=6) as client:
        label_items(client, splits, users=2, n=5)
        assert client.get("/v1/cycles", headers=ADMIN).json()["cycles"] == []
        label_items(client, splits, users=2, n=1)
        client.app.state.services.runner.join(120)
        cycles = client.get("/v1/cycles", headers=ADMIN).json()["cycles"]
        assert [(c["trigger"], c["status"]) for c in cycles] == [("auto", "done")]


def test_user_export_and_erasure_receipt_carry_lineage(client, splits):
    """After a cycle, each record of a user lists the snapshot and model it went into; erasure names them."""
    label_items(client, splits, users=3, n=12)
    cycle_id = client.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
    client.app.state.services.runner.join(120)
    cycle = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
    data = client.get("/v1/users/u0/data", headers=APP).json()
    assert len(data["records"]) == 4
    used = [r for r in data["records"] if r["datasets"]]
    assert used, "some of u0's records should be in the snapshot"
    for r in used:
        assert r["datasets"] == [cycle["snapshot_id"]] and r["models"] == [cycle["candidate_version"]]
    receipt = client.delete("/v1/users/u0", headers=APP).json()
    assert receipt["model_versions_trained_on_user_data"] == [cycle["candidate_version"]]


def test_a_second_cycle_while_one_runs_is_a_conflict(client, ws):
    """Only one cycle runs at a time; asking for another is a 409, not a queue of surprises."""
    ws.store.start_cycle("test")  # a cycle "running" in this very process
    resp = client.post("/v1/cycles", headers=ADMIN)
    assert resp.status_code == 409 and "still running" in resp.json()["detail"]


def test_a_cycle_can_be_asked_to_warm_start(client, splits, ws):
    """The body's warm_start reaches the trainer; a wrongly typed one is a 422 naming the field."""
    bad = client.post("/v1/cycles", headers=ADMIN, json={"warm_start": "yes"})
    assert bad.status_code == 422 and "warm_start" in bad.text
    label_items(client, splits, users=3, n=12)
    cycle_id = client.post("/v1/cycles", headers=ADMIN, json={"warm_start": True}).json()["cycle_id"]
    client.app.state.services.runner.join(120)
    cycle = client.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
    assert cycle["status"] == "done" and cycle["params"] == {"warm_start": True}
    assert ws.store.get_model(cycle["candidate_version"])["train_info"]["warm_start_from"] == 1


def post_raw(client, path: str, body: dict, headers=APP):
    """``body`` as ASCII JSON, so a lone surrogate travels as the ``\\ud800`` escape a client would send."""
    return client.post(path, headers={**headers, "Content-Type": "application/json"},
                       content=json.dumps(body, ensure_ascii=True).encode("ascii"))


LONE = "\ud800"


@pytest.mark.parametrize("path, body, field", [
    ("/v1/predict", {"user_id": "sam", "input": PIXELS, "metadata": {"k": f"a{LONE}"}}, "metadata value"),
    ("/v1/predict", {"user_id": "sam", "input": PIXELS, "metadata": {f"k{LONE}": "v"}}, "metadata key"),
    ("/v1/predict", {"user_id": f"sam{LONE}", "input": PIXELS}, "user_id"),
    ("/v1/predict", {"user_id": "sam", "input": {"text": f"hi {LONE}"}}, "input"),
    ("/v1/predict", {"user_id": "sam", "input": {f"pixels{LONE}": [[0]]}}, "input"),
    ("/v1/predict", {"user_id": "sam", "input": PIXELS, "metadata": {"k": "a\x00b"}}, "metadata value"),
    ("/v1/interactions", {"user_id": "sam", "input": PIXELS, "output_label": "1", "model_name": f"m{LONE}",
                          "model_version": "1"}, "model_name"),
    ("/v1/interactions", {"user_id": "sam", "input": PIXELS, "output_label": "1", "model_name": "m",
                          "model_version": f"1{LONE}"}, "model_version"),
    ("/v1/contributions", {"user_id": "sam", "input": PIXELS, "label": f"1{LONE}", "consent": {"training": True}},
     "label"),
    ("/v1/feedback", {"interaction_id": f"x{LONE}", "user_id": "sam", "rating": 1}, "interaction_id"),
])
def test_strings_the_store_cannot_keep_are_refused_at_the_door(client, ws, path, body, field):
    """A lone surrogate (or NUL) is a 422 naming the field; nothing is stored, so no export can fail on it later."""
    resp = post_raw(client, path, body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith(field) and LONE not in resp.json()["detail"]
    assert record_count(ws) == 0


def test_a_comment_with_a_lone_surrogate_is_refused_and_the_export_still_answers(client, splits):
    """Before: accepted with 201, then every export of that user answered 500."""
    iid = predict(client, splits, user="sam")["interaction_id"]
    resp = post_raw(client, "/v1/feedback", {"interaction_id": iid, "user_id": "sam", "comment": f"ok {LONE}"})
    assert resp.status_code == 422 and resp.json()["detail"].startswith("comment")
    assert client.get("/v1/users/sam/data", headers=APP).status_code == 200


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "[1]", '{"a": 1}', str(2 ** 64)])
def test_metadata_values_are_finite_scalars(client, ws, value):
    """JSON has no NaN, but Python's parser accepts it; an answer could not carry it back."""
    raw = json.dumps({"user_id": "sam", "input": PIXELS, "metadata": {"k": 0}}).replace('"k": 0', f'"k": {value}')
    resp = client.post("/v1/predict", headers={**APP, "Content-Type": "application/json"}, content=raw.encode())
    assert resp.status_code == 422 and resp.json()["detail"].startswith("metadata value"), resp.text
    assert record_count(ws) == 0


def test_metadata_refusals_never_quote_the_key_or_the_value(client):
    """A key or value may be personal data; the detail names the limit, not the offending text."""
    secret = "alice.secret@example.org"
    for metadata in ({secret * 3: "v"}, {"k": secret * 50}, {secret: [1]},
                     {f"{secret}{i}": i for i in range(33)}):
        resp = client.post("/v1/predict", headers=APP, json={"user_id": "sam", "input": PIXELS, "metadata": metadata})
        assert resp.status_code == 422 and secret not in resp.text and "metadata" in resp.text, resp.text


@pytest.mark.parametrize("user_id, ok", [(".", False), ("..", False), ("...", False), ("a@example.org", False),
                                         ("a b", False), (".a", True), ("a.b", True), ("team:a-1_b", True)])
def test_user_ids_a_client_can_address(client, user_id, ok):
    """Dot-only ids are path segments no HTTP client can send as themselves; '@' ids are e-mail addresses."""
    body = client.post("/v1/predict", headers=APP, json={"user_id": user_id, "input": PIXELS})
    assert (body.status_code == 200) is ok, body.text
    if not ok:
        assert body.json()["detail"].startswith("user_id")
        # the path refuses the same ids (a dot-only one is resolved away by the HTTP client before it is sent)
        path = client.put(f"/v1/users/{quote(user_id, safe='')}/consent", headers=APP, json={"training": True})
        assert 400 <= path.status_code < 500


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/models/{v}/promote"), ("POST", "/v1/models/{v}/shadow"), ("POST", "/v1/models/{v}/canary"),
    ("GET", "/v1/shadow?version={v}"),
])
def test_model_versions_are_bounded_before_the_database_sees_them(client, method, path):
    """Beyond 2**31 - 1 SQLite overflowed (500 or a dropped connection); now 422. An unknown version in range: 404."""
    for v, status in ((10 ** 30, 422), (2 ** 31, 422), (0, 422), (-1, 422), (2 ** 31 - 1, 404)):
        resp = client.request(method, path.format(v=v), headers=ADMIN)
        assert resp.status_code == status, (v, resp.text)
        assert set(resp.json()) == {"error", "detail"} and "version" in resp.json()["detail"]
        if status == 422:
            assert str(v) not in resp.json()["detail"]


def test_unknown_cycles_are_not_quoted_back(client):
    """The id sent may be anything; the 404 says what is missing, not what was asked for."""
    resp = client.get("/v1/cycles/alice-at-example", headers=ADMIN)
    assert resp.status_code == 404 and "alice" not in resp.text
    assert client.get("/v1/cycles/" + "x" * 65, headers=ADMIN).status_code == 422
