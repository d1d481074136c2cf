"""POST /v1/interactions: another model's answer, its version in either form, its scores, and when it trains."""

from __future__ import annotations

import pytest

from conftest import APP
from datawheel.tasks.image import to_png_base64

SECRET = "alice.secret-value.example.org"


def _body(splits, **fields) -> dict:
    return {"user_id": "ivy", "input": {"image": to_png_base64(splits.pool[3][0])}, "output_label": "7",
            "model_name": "their-model", "model_version": "gpt-4o-2024-08-06", "consent": {"training": True},
            **fields}


def _records(client, user: str = "ivy") -> dict[str, dict]:
    return {r["id"]: r for r in client.get(f"/v1/users/{user}/data", headers=APP).json()["records"]}


def test_model_version_is_an_integer_or_a_string_and_scores_are_kept(client, splits):
    by_number = client.post("/v1/interactions", headers=APP, json=_body(splits, model_version=12))
    by_name = client.post("/v1/interactions", headers=APP, json=_body(splits, scores={"7": 0.8, "1": 0.15, "2": 0}))
    assert (by_number.status_code, by_name.status_code) == (201, 201), (by_number.text, by_name.text)
    records = _records(client)
    assert records[by_number.json()["id"]]["model_version"] == "12"
    assert records[by_name.json()["id"]]["model_version"] == "gpt-4o-2024-08-06"
    assert records[by_name.json()["id"]]["scores"] == {"7": 0.8, "1": 0.15, "2": 0.0}
    assert records[by_number.json()["id"]]["scores"] is None


@pytest.mark.parametrize("version", [True, 1.5, -1, 2 ** 63, "", "v" * 65, None, [1]])
def test_a_model_version_of_neither_form_is_refused(client, splits, version):
    resp = client.post("/v1/interactions", headers=APP, json=_body(splits, model_version=version))
    assert resp.status_code == 422 and resp.json()["detail"].startswith("model_version: ")


@pytest.mark.parametrize("scores, where", [
    ({"7": 0.5, SECRET: 0.5}, "key 1"),  # not a label: named by position, never echoed
    ({"7": 0.5, "1": 1.5}, "key 1"),
    ({SECRET: -0.1}, "key 0"),
    ({"7": True}, "key 0"),
    ({"7": "0.5"}, "key 0"),
    ({}, "1 to"),
    ([0.5], "object"),
])
def test_bad_scores_are_named_by_position_not_value(client, splits, ws, scores, where):
    resp = client.post("/v1/interactions", headers=APP, json=_body(splits, scores=scores))
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("scores: ") and where in detail and SECRET not in detail
    assert client.get("/v1/users/ivy/data", headers=APP).status_code == 404  # nothing stored


def test_non_finite_scores_are_refused(client, splits):
    raw = '{"user_id": "ivy", "input": {"pixels": [[0, 255, 0]]}, "output_label": "7", "model_name": "m", ' \
          '"model_version": 1, "scores": {"7": NaN}}'
    resp = client.post("/v1/interactions", headers={**APP, "content-type": "application/json"}, content=raw)
    assert resp.status_code == 422 and resp.json()["detail"].startswith("scores")


def test_an_interaction_reaches_a_cycle_only_once_it_gets_feedback(client, splits, ws):
    """What the route's description promises, checked against what curation reads."""
    plain = client.post("/v1/interactions", headers=APP, json=_body(splits)).json()["id"]
    thumbs_down = client.post("/v1/interactions", headers=APP, json=_body(splits)).json()["id"]
    corrected = client.post("/v1/interactions", headers=APP, json=_body(splits)).json()["id"]
    confirmed = client.post("/v1/interactions", headers=APP, json=_body(splits)).json()["id"]
    for iid, feedback in ((thumbs_down, {"rating": -1}), (corrected, {"label": "1"}), (confirmed, {"rating": 1})):
        assert client.post("/v1/feedback", headers=APP, json={"interaction_id": iid, "user_id": "ivy",
                                                              **feedback}).status_code == 201
    records, votes = ws.store.labelled_records()
    assert {r.record_id for r in records} == {corrected, confirmed}
    assert sorted((v.record_id, v.label) for v in votes) == sorted([(corrected, "1"), (confirmed, "7")])
    assert plain not in {r.record_id for r in records}


def test_the_document_says_so(client):
    op = client.get("/openapi.json").json()["paths"]["/v1/interactions"]["post"]
    assert "only once it gets feedback" in op["description"]
    assert "POST /v1/feedback" in op["responses"]["201"]["description"]
    body = client.get("/openapi.json").json()["components"]["schemas"]["InteractionIn"]["properties"]
    assert [alt["type"] for alt in body["model_version"]["anyOf"]] == ["integer", "string"]
    assert body["scores"]["anyOf"][0]["additionalProperties"] == {"type": "number", "minimum": 0, "maximum": 1}


def test_erasure_takes_the_scores_with_the_record(client, splits, ws):
    from sqlalchemy import func, select

    from datawheel.store import tables

    assert client.post("/v1/interactions", headers=APP, json=_body(splits, scores={"7": 0.9})).status_code == 201
    count = select(func.count()).select_from(tables.interaction_scores)
    with ws.store.engine.connect() as conn:
        assert conn.execute(count).scalar_one() == 1
    assert client.delete("/v1/users/ivy", headers=APP).status_code == 200
    with ws.store.engine.connect() as conn:
        assert conn.execute(count).scalar_one() == 0
