"""``GET /v1/events``: the wheel's events as server-sent events, read from the audit chain.

A live client sees a cycle start and finish and a promotion as they happen; another app over the same
workspace (a restart, another worker) serves the same events with the same ids, so a client resumes
with ``Last-Event-ID``; an erasure is announced by its receipt alone; the stream ends when the client
goes, and sends keep-alive comments while nothing happens.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, get_args

import anyio
import httpx
import pytest

from conftest import ADMIN, ADMIN_KEY, APP, APP_KEY, make_client, register_model
from datawheel.api.app import create_app
from datawheel.api.responses import EventOut
from datawheel.api.routes import events as events_route
from datawheel.demo.run import BackgroundServer, _free_port
from datawheel.models.registry import Registry
from datawheel.settings import Settings
from datawheel.store.events import ACTIONS, as_event
from datawheel.tasks.image import to_png_base64
from datawheel.workspace import Workspace


def parse(text: str) -> list[tuple[int, dict[str, Any]]]:
    """(SSE id, data) of every event in a stream's text."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            out.append((int(fields["id"]), json.loads(fields["data"])))
    return out


def events(client, after: int = 0, **headers: str) -> list[dict[str, Any]]:
    resp = client.get("/v1/events", params={"after": after, "wait": "false"}, headers={**ADMIN, **headers})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    pairs = parse(resp.text)
    assert all(sse_id == data["id"] for sse_id, data in pairs)
    return [data for _, data in pairs]


def test_a_live_client_sees_a_cycle_run_and_a_promotion(ws, splits):
    """The stream is open while a cycle trains (on labels users just gave) and an operator then promotes."""
    v2 = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    port = _free_port()
    app = create_app(ws, Settings(app_key=APP_KEY, admin_key=ADMIN_KEY, cycle_in_subprocess=False))
    seen: list[dict[str, Any]] = []
    with (BackgroundServer(app, port),
          httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=httpx.Timeout(10, read=120)) as http,
          http.stream("GET", "/v1/events") as stream):  # from now on: nothing from before is sent
        assert stream.status_code == 200
        for n in range(12):
            assert http.post("/v1/contributions", headers=APP, json={
                "user_id": f"live-{n % 3}", "input": {"image": to_png_base64(splits.pool[n][0])},
                "label": splits.pool[n][1], "consent": {"training": True}}).status_code == 201
        cycle_id = http.post("/v1/cycles").json()["cycle_id"]
        block: list[str] = []
        for line in stream.iter_lines():
            if line:
                block.append(line)
                continue
            pairs = parse("\n".join(block) + "\n\n")
            block = []
            seen += [data for _, data in pairs]
            if pairs and pairs[-1][1]["type"] == "cycle.finished":
                assert http.post(f"/v1/models/{v2}/promote").status_code == 200
            if pairs and pairs[-1][1] == {**pairs[-1][1], "type": "model.promoted", "version": v2}:
                break
    started, *during, finished, promoted = seen
    assert (started["type"], finished["type"], promoted["type"]) == ("cycle.started", "cycle.finished",
                                                                     "model.promoted"), seen
    assert started["cycle_id"] == finished["cycle_id"] == cycle_id and started["trigger"] == "api"
    assert finished["status"] == "done" and finished["candidate_version"] == v2 + 1
    # a candidate the gate promoted is announced inside its cycle
    assert [(e["type"], e["version"]) for e in during] == (
        [("model.promoted", v2 + 1)] if finished["decision"] == "promoted" else [])
    assert promoted["aliases"]["champion"] == v2
    assert [e["id"] for e in seen] == sorted(e["id"] for e in seen)
    for event in seen:
        EventOut.model_validate(event)
        assert set(event) <= set(EventOut.model_fields)


def test_events_resume_after_an_id_on_any_app_over_the_workspace(ws, tmp_path):
    """Ids are the audit chain's: a restarted server (or another worker) continues the same sequence."""
    v2 = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    with make_client(ws) as client:
        client.post(f"/v1/models/{v2}/shadow", headers=ADMIN)
        client.post(f"/v1/models/{v2}/promote", headers=ADMIN)
        client.post("/v1/rollback", headers=ADMIN)
        everything = events(client)
    # init set the policy and promoted v1; promoting the shadow ends its trial within the same alias change
    assert [e["type"] for e in everything] == ["policy.changed", "model.promoted", "shadow.started",
                                               "model.promoted", "model.rolled_back"]
    middle = everything[len(everything) // 2]["id"]
    later = [e for e in everything if e["id"] > middle]
    # another process writes to the same store: a promotion made outside any server
    Registry(Workspace.open(ws.root)).promote(v2, actor="test", reason="from another process")
    with make_client(Workspace.open(ws.root)) as restarted:
        resumed = events(restarted, after=middle)
        assert [e["id"] for e in resumed[:len(later)]] == [e["id"] for e in later]
        assert resumed[-1]["type"] == "model.promoted" and resumed[-1]["reason"] == "from another process"
        by_header = events(restarted, after=0, **{"Last-Event-ID": str(middle)})  # the header wins
        assert by_header == resumed
        assert events(restarted, after=resumed[-1]["id"]) == []


def test_every_release_and_trial_change_is_an_event(ws):
    v2 = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    with make_client(ws) as client:
        start = events(client)[-1]["id"]
        for method, url in (("POST", f"/v1/models/{v2}/shadow"), ("DELETE", "/v1/shadow"),
                            ("POST", f"/v1/models/{v2}/canary"), ("DELETE", "/v1/canary"),
                            ("POST", f"/v1/models/{v2}/promote"), ("POST", "/v1/rollback")):
            assert client.request(method, url, headers=ADMIN).status_code == 200, url
        got = events(client, after=start)
    assert [(e["type"], e["version"]) for e in got] == [
        ("shadow.started", v2), ("shadow.stopped", None), ("canary.started", v2), ("canary.stopped", None),
        ("model.promoted", v2), ("model.rolled_back", 1)]


def test_an_erasure_is_announced_by_its_receipt_alone(ws, splits):
    user = "erasable-user-5127"
    with make_client(ws) as client:
        start = events(client)[-1]["id"]
        client.post("/v1/predict", headers=APP, json={"user_id": user, "input": {
            "image": to_png_base64(splits.pool[0][0])}, "consent": {"training": True}})
        receipt = client.delete(f"/v1/users/{user}", headers=APP).json()
        resp = client.get("/v1/events", params={"after": start, "wait": "false"}, headers=ADMIN)
    got = [data for _, data in parse(resp.text)]
    assert got == [{"id": got[0]["id"], "type": "user.erased", "at": got[0]["at"],
                    "receipt_id": receipt["receipt_id"]}]
    assert user not in resp.text and ws.user_ref(user) not in resp.text


def test_cycle_events_carry_no_params_and_no_error_text(ws):
    """A retrain-without names a user's pseudonym in its params; an error message may quote anything."""
    cycle_id = ws.store.start_cycle("forget", {"without_user_ref": ws.user_ref("someone-7731")})
    ws.store.finish_cycle(cycle_id, status="failed", error="ValueError: quoted-value-6620")
    ws.store.finish_cycle(cycle_id, status="failed", error="closed twice")  # a second close is no new event
    with make_client(ws) as client:
        resp = client.get("/v1/events", params={"after": 0, "wait": "false"}, headers=ADMIN)
    got = [d for _, d in parse(resp.text) if d["type"].startswith("cycle.")]
    assert [(e["type"], e["cycle_id"]) for e in got] == [("cycle.started", cycle_id), ("cycle.finished", cycle_id)]
    assert got[1]["status"] == "failed" and got[1]["decision"] is None
    assert "quoted-value" not in resp.text and ws.user_ref("someone-7731") not in resp.text
    details = [e["detail"] for e in ws.store.audit_log(None) if e["action"].startswith("cycle_")]
    assert ws.user_ref("someone-7731") not in json.dumps(details) and "quoted-value" not in json.dumps(details)


def _raw_get(app, query: bytes) -> list[bytes]:
    """Call the ASGI app as a server would, and hang up once the first body chunk arrives; the chunks sent."""
    chunks: list[bytes] = []
    got_body = anyio.Event()
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await got_body.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            got_body.set()

    scope = {"type": "http", "method": "GET", "path": "/v1/events", "raw_path": b"/v1/events", "root_path": "",
             "query_string": query, "headers": [(b"authorization", ADMIN["Authorization"].encode())],
             "scheme": "http", "server": ("test", 80), "client": ("test", 1), "http_version": "1.1"}

    async def main() -> None:
        with anyio.fail_after(60):  # a stream that outlived its client would fail here, not hang the suite
            await app(scope, receive, send)

    anyio.run(main)
    return chunks


def test_the_stream_ends_when_the_client_hangs_up(ws):
    chunks = _raw_get(create_app(ws, Settings(app_key=APP_KEY, admin_key=ADMIN_KEY)), b"after=0")
    assert chunks and chunks[0].startswith(b"id: ")


def test_an_idle_stream_sends_keep_alive_comments(ws, monkeypatch):
    monkeypatch.setattr(events_route, "KEEP_ALIVE_SECONDS", 0.0)
    monkeypatch.setattr(events_route, "POLL_SECONDS", 0.01)
    chunks = _raw_get(create_app(ws, Settings(app_key=APP_KEY, admin_key=ADMIN_KEY)), b"")
    assert chunks[0] == b": keep-alive\n\n"


@pytest.mark.parametrize("query", ["after=-1", "after=x", "wait=maybe"])
def test_a_bad_resume_point_is_a_422(client, query):
    resp = client.get(f"/v1/events?{query}", headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["error"] == "invalid_request"
    bad = client.get("/v1/events", headers={**ADMIN, "Last-Event-ID": "not-an-id"})
    assert bad.status_code == 422 and "not-an-id" not in bad.text


def test_every_event_type_the_chain_yields_is_declared():
    """EventOut documents the stream in /openapi.json: a type the store maps to must be one it names."""
    declared = set(get_args(EventOut.model_fields["type"].annotation))
    made = {as_event(1, datetime.now(UTC), action, {"version": version})["type"]
            for action in ACTIONS for version in (None, 2)}
    assert made == declared
