"""`datawheel serve`'s log: JSON lines on stderr naming route templates and statuses, and nothing a client sent.

Requests carry a distinctive user id, text, metadata, comment, cursor and a wrong key, on paths that succeed
and on 401, 404, 413 and 422 paths; none of those strings may reach the log, while the route templates and
statuses must. The wheel's events are logged once per server however many workers serve.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN, ADMIN_KEY, APP, APP_KEY, make_client, register_model
from datawheel.api.event_log import EventLog
from datawheel.api.log_format import JsonFormatter, TextFormatter
from datawheel.demo.run import _free_port
from datawheel.tasks.image import to_png_base64
from datawheel.version import __version__
from datawheel.workspace import Workspace

USER = "zq-person-4471"
TEXT = "zq-text-8812"
META = "zq-meta-3390"
COMMENT = "zq-comment-6601"
CURSOR = "zq-cursor-7710"
WRONG_KEY = "zq-wrong-key-0123456789"
REQUEST_FIELDS = {"ts", "level", "event", "method", "route", "status", "ms", "request_id"}


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the ``datawheel`` loggers write, as ``serve`` formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("datawheel")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(saved[0])  # setLevel, not assignment: it also clears the loggers' cached levels
    logger.propagate = saved[1]


def drive(c: Any, image: str) -> list[tuple[str, str | None, int]]:
    """Requests carrying the distinctive strings: (method, the route template expected, status) of each."""
    body = {"user_id": USER, "input": {"image": image}, "consent": {"training": True}, "metadata": {"note": META}}
    predicted = c.post("/v1/predict", headers=APP, json=body)
    answers = [
        ("POST", "/v1/predict", predicted),
        ("POST", "/v1/feedback", c.post("/v1/feedback", headers=APP, json={
            "interaction_id": predicted.json()["interaction_id"], "user_id": USER, "label": "3",
            "comment": COMMENT})),
        ("POST", "/v1/predict", c.post("/v1/predict", headers=APP, json={"user_id": USER, "input": {"text": TEXT}})),
        ("GET", "/v1/users/{user_id}/data", c.get(f"/v1/users/{USER}/data", headers=APP, params={"limit": 5})),
        ("GET", "/v1/users/{user_id}/data", c.get(f"/v1/users/{USER}/data", headers=APP,
                                                  params={"cursor": CURSOR})),
        ("GET", "/v1/users/{user_id}/data", c.get(f"/v1/users/{USER}/data",
                                                  headers={"Authorization": f"Bearer {WRONG_KEY}"})),
        ("GET", None, c.get(f"/v1/nothing/{USER}", headers=APP)),
        ("POST", "/v1/contributions", c.post("/v1/contributions", headers=APP, json={
            "user_id": USER, "input": {"text": TEXT * 400}, "label": "1", "metadata": {"note": META}})),
        ("DELETE", "/v1/users/{user_id}", c.delete(f"/v1/users/{USER}", headers=APP)),
    ]
    return [(method, route, resp.status_code) for method, route, resp in answers]


def requests_in(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [line for line in lines if line["event"] == "request"]


def test_a_line_per_request_with_its_route_template_and_nothing_the_client_sent(ws, splits, log_lines):
    with make_client(ws, max_body_bytes=4000) as client:
        got = drive(client, to_png_base64(splits.pool[0][0]))
        static = client.get("/static/common.js")
        echoed = client.get("/healthz")
    assert [status for *_, status in got] == [200, 201, 422, 200, 422, 401, 404, 413, 200]
    text = log_lines.getvalue()
    for secret in (USER, TEXT, META, COMMENT, CURSOR, WRONG_KEY, APP_KEY, ADMIN_KEY, "limit=", "?"):
        assert secret not in text, secret
    lines = requests_in(text)
    assert all(set(line) == REQUEST_FIELDS and line["level"] == "info" for line in lines)
    logged = [(line["method"], line["route"], line["status"]) for line in lines]
    assert logged == [*got, ("GET", "/static/{path}", static.status_code), ("GET", "/healthz", 200)]
    assert len({line["request_id"] for line in lines}) == len(lines)
    assert lines[-1]["request_id"] == echoed.headers["x-request-id"]


def test_with_the_logger_off_requests_pass_through_untouched(client):
    """No line, and no request id added: the middleware does nothing when nothing would be written."""
    assert not logging.getLogger("datawheel.access").isEnabledFor(logging.INFO)
    assert "x-request-id" not in client.get("/healthz").headers


def test_the_wheels_events_are_logged_once_each(ws, log_lines):
    v2 = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    events = EventLog(Workspace.open(ws.root).store, interval=0.05)
    events.start()
    with make_client(ws) as client:
        client.post(f"/v1/models/{v2}/promote", headers=ADMIN)
        client.post("/v1/rollback", headers=ADMIN)
    events.stop()
    events.poll()  # whatever the thread had not read yet
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    logged = [(line["event"], line["version"]) for line in lines if line["event"] != "request"]
    assert logged == [("model.promoted", v2), ("model.rolled_back", 1)]


def test_the_text_format_is_one_line_of_key_values():
    record = logging.LogRecord("datawheel.access", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"method": "GET", "route": "/v1/users/{user_id}/data", "status": 404}
    line = TextFormatter().format(record)
    assert "\n" not in line and line.endswith("request method=GET route=/v1/users/{user_id}/data status=404")


def test_an_exception_is_logged_by_its_type_and_place_not_its_message():
    try:
        raise ValueError(f"no such user {USER}")
    except ValueError:
        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application",
                                   None, sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["error"] == "ValueError" and line["where"].startswith("test_access_log.py:")
    assert line["ts"] == datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    assert USER not in json.dumps(line)


def _wait_for(condition, what: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, "the server exited"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.1)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_writes_json_lines_from_every_worker_without_personal_data(tmp_path, template_ws, splits):
    root = tmp_path / "ws"
    shutil.copytree(template_ws, root)
    ws = Workspace.open(root)
    v2 = register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    keys = {"DATAWHEEL_APP_KEY": APP_KEY, "DATAWHEEL_ADMIN_KEY": ADMIN_KEY}
    port, stderr = _free_port(), tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "datawheel.cli", "serve", str(root), "--port", str(port),
                                 "--workers", "2"], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                env={**os.environ, **keys})
    try:
        _wait_for(lambda: _up(port), "server", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            got = drive(http, to_png_base64(splits.pool[0][0]))
            assert http.post(f"/v1/models/{v2}/promote", headers=ADMIN).status_code == 200
            cycle_id = http.post("/v1/cycles", headers=ADMIN).json()["cycle_id"]
            _wait_for(lambda: http.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()["status"] != "running",
                      "finished cycle", proc)
            streamed = http.get("/v1/events", headers=ADMIN, params={"after": 0, "wait": "false"}).text
        _wait_for(lambda: '"cycle.finished"' in stderr.read_text(), "cycle.finished line", proc, seconds=30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert '"type":"model.promoted"' in streamed  # whichever worker streams, it has what the other did
    text = stderr.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert all({"ts", "level", "event"} <= set(line) for line in lines)
    start = [line for line in lines if line["event"] == "start"]
    assert [(s["version"], s["workspace"], s["workers"]) for s in start] == [(__version__, "ws", 2)]
    logged = {(line["method"], line["route"], line["status"]) for line in requests_in(text)}
    assert set(got) <= logged
    # each event once, though two workers serve: the same events, in the same order, as the stream gives
    logged_events = [(line["id"], line["event"]) for line in lines if "." in line["event"]]
    stream_events = [(e["id"], e["type"]) for e in map(json.loads, re.findall(r"^data: (.*)$", streamed, re.M))]
    assert logged_events == [e for e in stream_events if e[0] >= logged_events[0][0]]
    assert {"user.erased", "model.promoted", "cycle.started", "cycle.finished"} <= {e[1] for e in logged_events}
    for secret in (USER, TEXT, META, COMMENT, CURSOR, WRONG_KEY, APP_KEY, ADMIN_KEY, str(Path.home())):
        assert secret not in text, secret
