"""`POST /v1/predict` before FastAPI's routing (api/fast_predict.py): the same answers as the route, byte for byte.

Each request is sent to two apps on one workspace: the app as served, and the same app without FastPredict,
where every request reaches the FastAPI route as before. Status, headers and body must be equal (a success
differs only in its interaction id), and the refusals must be counted alike; a spy on the fast path's
`serve_prediction` tells which requests it answered itself and which it handed to FastAPI.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from conftest import ADMIN_KEY, APP_KEY
from datawheel.api import fast_predict
from datawheel.api.app import create_app
from datawheel.api.fast_predict import FastPredict
from datawheel.api.schemas import PredictIn
from datawheel.settings import Settings
from datawheel.tasks.image import normalize, to_png_base64
from datawheel.workspace import Workspace

ANNOTATOR_KEY = "annotator-key-for-tests-0123456789"
MAX_BODY = 64 * 1024
JSON_CT = "application/json"


def _settings() -> Settings:
    return Settings(app_key=APP_KEY, admin_key=ADMIN_KEY, annotator_key=ANNOTATOR_KEY, cycle_in_subprocess=False,
                    max_body_bytes=MAX_BODY)


def _without_fast_path(ws: Workspace) -> Any:
    app = create_app(ws, _settings())
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastPredict]  # before the stack is built
    return app


class Spy:
    """Counts the requests the fast path answered itself."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = fast_predict.serve_prediction

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(fast_predict, "serve_prediction", counted)


@pytest.fixture
def pair(ws: Workspace) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(ws, _settings()), raise_server_exceptions=False) as fast, \
            TestClient(_without_fast_path(ws), raise_server_exceptions=False) as plain:
        yield fast, plain


def _auth(key: str = APP_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": JSON_CT}


def _image(splits: Any, n: int = 0) -> str:
    return to_png_base64(splits.pool[n][0])


def _same(a: Any, b: Any) -> None:
    """Equal answers; a success may differ only in its interaction id (a new record each time)."""
    assert a.status_code == b.status_code, (a.text, b.text)
    assert list(a.headers.items()) == list(b.headers.items())
    if a.status_code == 200:
        ja, jb = a.json(), b.json()
        assert ja.pop("interaction_id") != jb.pop("interaction_id")
        assert ja == jb
        assert re.sub(rb'"interaction_id":"\w+"', b"", a.content) == re.sub(rb'"interaction_id":"\w+"', b"", b.content)
    else:
        assert a.content == b.content


def _rejected(client: TestClient) -> list[str]:
    return sorted(line for line in client.get("/metrics").text.splitlines()
                  if line.startswith("datawheel_requests_rejected_total{"))


def test_a_prediction_is_answered_by_the_fast_path_exactly_as_by_the_route(pair, splits, monkeypatch):
    fast, plain = pair
    spy = Spy(monkeypatch)
    body = {"user_id": "u-1", "input": {"image": _image(splits)}, "metadata": {"screen": "checkout", "n": 3},
            "consent": {"training": True}}
    for key in (APP_KEY, ADMIN_KEY):  # the admin key opens every keyed route, predict included
        a = fast.post("/v1/predict", headers=_auth(key), json=body)
        assert spy.calls == 1
        b = plain.post("/v1/predict", headers=_auth(key), json=body)
        assert spy.calls == 1
        _same(a, b)
        spy.calls = 0
    data = fast.get("/v1/users/u-1/data", headers=_auth()).json()
    assert len(data["records"]) == 4  # both paths stored theirs


@pytest.mark.parametrize("body", [
    {"user_id": "u-2", "input": {"pixels": [[0] * 6] * 6}},  # blank
    {"user_id": "u-2", "input": {"image": "not base64!"}},
    {"user_id": "u-2", "input": {"image": "aGVsbG8gd29ybGQ="}},  # base64, not an image
    {"user_id": "u-2", "input": {"image": "x", "pixels": [[1]]}},  # both
    {"user_id": "u-2", "input": {"text": "a text to an image model"}},
    {"user_id": "u-2", "input": {"pixels": [[1, 2], [3]]}},
    {"user_id": "13812345678", "input": {"pixels": [[0, 255], [255, 0]]}},  # an id shaped like a phone number
    {"user_id": "u-2", "input": {"pixels": [[0, 255], [255, 0]]}, "metadata": {"contact": "zoe@example.com"}},
])
def test_refusals_after_the_schema_are_the_routes_own(ws, monkeypatch, body):
    """Bodies the schema accepts and the task or the screen refuses: the fast path raises the same errors into
    the app's handlers, so answers and counts are the route's."""
    (ws.root / "policy.toml").write_text('[pii]\nEMAIL = "reject"\n', encoding="utf-8")
    spy = Spy(monkeypatch)
    with TestClient(create_app(Workspace.open(ws.root), _settings()), raise_server_exceptions=False) as fast, \
            TestClient(_without_fast_path(Workspace.open(ws.root)), raise_server_exceptions=False) as plain:
        a = fast.post("/v1/predict", headers=_auth(), json=body)
        assert spy.calls == 1, "answered by the fast path"
        b = plain.post("/v1/predict", headers=_auth(), json=body)
        assert a.status_code == 422, a.text
        _same(a, b)
        assert _rejected(fast) == _rejected(plain)
        assert _pii_counts(fast) == _pii_counts(plain)


def _pii_counts(client: TestClient) -> list[str]:
    return sorted(line for line in client.get("/metrics").text.splitlines()
                  if line.startswith("datawheel_pii_findings_total{"))


def test_a_consent_refusal_from_the_write_is_the_routes_own(ws, splits, monkeypatch):
    """The consent check runs inside the group commit, after the prediction: its refusal too."""
    (ws.root / "policy.toml").write_text('[sources.interaction]\nmin_consent = "training"\n', encoding="utf-8")
    spy = Spy(monkeypatch)
    body = {"user_id": "no-consent", "input": {"image": _image(splits, 1)}}
    with TestClient(create_app(Workspace.open(ws.root), _settings()), raise_server_exceptions=False) as fast, \
            TestClient(_without_fast_path(Workspace.open(ws.root)), raise_server_exceptions=False) as plain:
        a = fast.post("/v1/predict", headers=_auth(), json=body)
        b = plain.post("/v1/predict", headers=_auth(), json=body)
        assert spy.calls == 1
        assert a.status_code == 403 and a.json()["error"] == "consent_required"
        _same(a, b)
        assert _rejected(fast) == _rejected(plain)
        assert fast.get("/v1/users/no-consent/data", headers=_auth()).status_code == 404  # nothing stored


_DRAWING = np.zeros((28, 28), dtype=np.uint8)
_DRAWING[4:24, 12:16] = 255  # a one
_GOOD = json.dumps({"user_id": "u-3", "input": {"image": to_png_base64(_DRAWING)}}).encode()
BAD_REQUESTS = {
    "no key": ({"Content-Type": JSON_CT}, _GOOD),
    "wrong key": (_auth("wrong-key-0123456789-abcdef"), _GOOD),
    "not bearer": ({"Authorization": f"Basic {APP_KEY}", "Content-Type": JSON_CT}, _GOOD),
    "annotator key": (_auth(ANNOTATOR_KEY), _GOOD),
    "no content type": ({"Authorization": f"Bearer {APP_KEY}"}, _GOOD),
    "text/plain": ({**_auth(), "Content-Type": "text/plain"}, _GOOD),
    "json with charset": ({**_auth(), "Content-Type": "application/json; charset=utf-8"}, _GOOD),  # a success
    "malformed json": (_auth(), b'{"user_id": "u-3", "input": '),
    "malformed json, no key": ({"Content-Type": JSON_CT}, b"{,}"),
    "empty body": (_auth(), b""),
    "a list": (_auth(), b"[]"),
    "missing input": (_auth(), b'{"user_id": "u-3"}'),
    "extra field": (_auth(), b'{"user_id": "u-3", "input": {"text": "x"}, "label": "7"}'),
    "wrong type": (_auth(), b'{"user_id": 3, "input": {"text": "x"}}'),
    "bad user id": (_auth(), b'{"user_id": "a@b.example", "input": {"text": "x"}}'),
    "lone surrogate": (_auth(), b'{"user_id": "u-3", "input": {"text": "\\ud800"}}'),
    "nul in metadata": (_auth(), b'{"user_id": "u-3", "input": {"text": "x"}, "metadata": {"k": "\\u0000"}}'),
    "byte-order mark": (_auth(), b"\xef\xbb\xbf" + _GOOD),  # json.loads takes it: a success both ways
    "utf-16": (_auth(), _GOOD.decode().encode("utf-16")),  # and this
    "raw control character": (_auth(), b'{"user_id": "u-3", "input": {"text": "a\x01b"}}'),
    "invalid utf-8": (_auth(), b'{"user_id": "u-3", "input": {"text": "a\xffb"}}'),
    "declared too large": (_auth(), b'{"user_id": "u-3", "input": {"text": "' + b"x" * MAX_BODY + b'"}}'),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_requests_off_the_fast_path_are_handed_to_the_route_unchanged(pair, monkeypatch, name):
    """A missing or wrong key, another content type, a body the schema (or json.loads alone) refuses, a body
    over the limit: FastAPI answers, in its own order of checks, as without the fast path."""
    fast, plain = pair
    headers, content = BAD_REQUESTS[name]
    spy = Spy(monkeypatch)
    a = fast.post("/v1/predict", headers=headers, content=content)
    b = plain.post("/v1/predict", headers=headers, content=content)
    assert spy.calls == 0
    _same(a, b)
    assert _rejected(fast) == _rejected(plain)


def test_other_methods_and_paths_are_the_routers(pair, splits):
    fast, plain = pair
    body = {"user_id": "u-4", "input": {"image": _image(splits, 3)}}
    for method, path in (("GET", "/v1/predict"), ("POST", "/v1/predict/"), ("PUT", "/v1/predict")):
        a = fast.request(method, path, headers=_auth(), json=body, follow_redirects=False)
        b = plain.request(method, path, headers=_auth(), json=body, follow_redirects=False)
        assert a.status_code == b.status_code and a.content == b.content, (method, path)


def test_a_body_streamed_over_the_limit_is_refused_as_before(pair, monkeypatch):
    """Without Content-Length the body limit refuses while the body streams in, inside the fast path's read:
    FastAPI is handed what was read and the same refusal."""
    fast, plain = pair
    spy = Spy(monkeypatch)

    def chunks() -> Iterator[bytes]:
        yield b'{"user_id": "u-5", "input": {"text": "'
        for _ in range(8):
            yield b"y" * (MAX_BODY // 4)
        yield b'"}}'

    a = fast.post("/v1/predict", headers=_auth(), content=chunks())
    b = plain.post("/v1/predict", headers=_auth(), content=chunks())
    assert spy.calls == 0
    assert a.status_code == 413
    _same(a, b)


async def _call(app: Any, messages: list[dict], headers: list[tuple[bytes, bytes]]) -> list[dict]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/predict", "raw_path": b"/v1/predict", "root_path": "", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("testserver", 80), "state": {}}
    pending = list(messages)
    sent: list[dict] = []

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_a_body_in_several_messages_and_a_client_that_left(ws, splits, monkeypatch):
    """Read as FastAPI reads: a body in pieces is answered by the fast path; a disconnect mid-body is handed
    over, replayed, and answered as before."""
    spy = Spy(monkeypatch)
    fast, plain = create_app(ws, _settings()), _without_fast_path(ws)
    body = json.dumps({"user_id": "u-6", "input": {"image": _image(splits, 4)}}).encode()
    headers = [(b"host", b"testserver"), (b"content-type", JSON_CT.encode()),
               (b"authorization", f"Bearer {APP_KEY}".encode())]
    pieces = [{"type": "http.request", "body": body[:40], "more_body": True},
              {"type": "http.request", "body": body[40:], "more_body": False}]
    sent = asyncio.run(_call(fast, pieces, headers))
    assert spy.calls == 1 and sent[0]["status"] == 200 and json.loads(sent[1]["body"])["label"]
    left = [pieces[0], {"type": "http.disconnect"}]
    a, b = asyncio.run(_call(fast, left, headers)), asyncio.run(_call(plain, left, headers))
    assert spy.calls == 1
    assert [(m.get("status"), m.get("headers"), m.get("body")) for m in a] == \
        [(m.get("status"), m.get("headers"), m.get("body")) for m in b]


def test_the_access_log_names_the_route(ws, splits):
    """The router never sees a fast-path request, so FastPredict names the route for the access log."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    log = logging.getLogger("datawheel.access")
    saved = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with TestClient(create_app(ws, _settings())) as client:
            r = client.post("/v1/predict", headers=_auth(), json={"user_id": "u-7", "input": {"image": _image(splits)}})
    finally:
        log.removeHandler(handler)
        log.setLevel(saved)
    assert r.status_code == 200
    assert [(rec.fields["route"], rec.fields["status"]) for rec in seen] == [("/v1/predict", 200)]  # type: ignore[attr-defined]


def test_the_route_is_still_documented(pair):
    operation = pair[0].get("/openapi.json").json()["paths"]["/v1/predict"]["post"]
    assert operation["operationId"] == "predict"
    assert {"200", "401", "403", "413", "422"} <= set(operation["responses"])


# -- the raw-bytes parser accepts nothing FastAPI's json.loads + validation would refuse ----------------------

_strings = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=True) | _strings
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_strings, inner,
                                                                                             max_size=3),
                       max_leaves=8)
_bodies = st.fixed_dictionaries({"user_id": st.sampled_from(["u", "user-1", "a b", ""]) | _strings,
                                 "input": st.dictionaries(_strings, _values, max_size=2)},
                                optional={"metadata": st.dictionaries(_strings, _scalars, max_size=3) | _values,
                                          "consent": st.dictionaries(st.sampled_from(["training", "analytics", "x"]),
                                                                     _scalars, max_size=2),
                                          "extra": _scalars})


def _plain_parse(raw: bytes) -> PredictIn | None:
    try:
        return PredictIn.model_validate(json.loads(raw))
    except (ValueError, RecursionError, ValidationError):
        return None


@settings(max_examples=400, deadline=None)
@given(body=_bodies, ascii_only=st.booleans(), cut=st.integers(0, 400), junk=st.binary(max_size=3))
def test_what_the_fast_parser_accepts_fastapi_accepts_alike(body, ascii_only, cut, junk):
    """Bodies as clients write them (any JSON values, any characters, surrogates escaped or not), and the
    same bodies broken at a byte: whenever model_validate_json accepts, json.loads + validation accepts the
    same request."""
    text = json.dumps(body, ensure_ascii=ascii_only)
    raw = text.encode("utf-8", "surrogatepass")
    for candidate in (raw, raw[:cut] + junk + raw[cut:]):
        try:
            fast = PredictIn.model_validate_json(candidate)
        except ValidationError:
            continue
        plain = _plain_parse(candidate)
        assert plain is not None, candidate
        assert fast.model_dump() == plain.model_dump() or repr(fast) == repr(plain)  # NaN != NaN


# -- parsing an image got faster, not different ---------------------------------------------------------------

def _reference_normalize(gray: np.ndarray) -> np.ndarray:
    """normalize() as it was written before it was made faster (np.median, np.clip, Image.fromarray)."""
    gray = np.asarray(gray, dtype=np.float64)
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 127:
        gray, background = 255.0 - gray, 255.0 - background
    gray = np.clip(gray - background, 0, 255)
    peak = float(gray.max())
    if peak < 8:
        return np.zeros((28, 28), dtype=np.uint8)
    gray *= 255.0 / peak
    ink = gray >= 0.1 * 255
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    nh, nw = max(1, round(h * 20 / max(h, w))), max(1, round(w * 20 / max(h, w)))
    resized = Image.fromarray(crop.astype(np.float32)).resize((nw, nh), Image.Resampling.BILINEAR)
    small = np.clip(np.asarray(resized, dtype=np.float64), 0, 255)
    mass = small.sum()
    cy = (small.sum(axis=1) * np.arange(nh)).sum() / mass if mass else nh / 2
    cx = (small.sum(axis=0) * np.arange(nw)).sum() / mass if mass else nw / 2
    top = int(np.clip(round(14.0 - cy), 0, 28 - nh))
    left = int(np.clip(round(14.0 - cx), 0, 28 - nw))
    out = np.zeros((28, 28), dtype=np.float64)
    out[top:top + nh, left:left + nw] = small
    return np.rint(out).astype(np.uint8)


def test_normalize_gives_the_same_pixels_as_before(splits):
    rng = np.random.default_rng(12)
    grays = [p.astype(np.float64) for p, _ in splits.pool[:100]]
    grays += [255.0 - g * rng.uniform(0.2, 1.0) for g in grays[:50]]  # dark ink on paper of any shade
    grays += [rng.uniform(0, rng.choice([6.0, 40.0, 255.0]), size=rng.integers(1, 70, size=2)) for _ in range(200)]
    grays += [np.asarray(Image.fromarray(p).resize(tuple(rng.integers(2, 90, size=2)), Image.Resampling.BILINEAR),
                         dtype=np.float64) for p, _ in splits.pool[100:200]]
    for gray in grays:
        assert np.array_equal(normalize(gray), _reference_normalize(gray))
