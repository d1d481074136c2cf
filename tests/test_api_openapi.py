"""The OpenAPI document is the API's contract: every answer and every refusal is described, and matches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase

import datawheel
from conftest import ADMIN, APP, make_client
from datawheel.api.app import ROUTERS
from datawheel.api.responses import (
    AuditEntry,
    ConsentOut,
    CycleOut,
    ErasureReceipt,
    ErrorOut,
    FeedbackOut,
    RecordOut,
    ShadowReport,
    StoredReceipt,
    UserDataOut,
)
from datawheel.tasks.image import to_png_base64
from datawheel.wheel.after_erasure import FollowUp

ERROR_REF = "#/components/schemas/ErrorOut"
ROUTES = Path(datawheel.__file__).parent / "api" / "routes"


@pytest.fixture
def spec(client) -> dict:
    return client.get("/openapi.json").json()


def _api_routes() -> dict[tuple[str, str], APIRoute]:
    """(method, path) -> route, from the routers the app includes (FastAPI keeps included routes wrapped)."""
    return {(m.lower(), r.path_format): r for module in ROUTERS for r in module.router.routes
            if isinstance(r, APIRoute) for m in r.methods}


def _needs_key(route: APIRoute) -> bool:
    def walk(dep) -> bool:
        return isinstance(dep.call, SecurityBase) or any(walk(d) for d in dep.dependencies)
    return walk(route.dependant)


def _takes_input(route: APIRoute) -> bool:
    d = route.dependant
    return bool(route.body_field or d.path_params or d.query_params or any(
        sub.path_params or sub.query_params for sub in d.dependencies))


def _json_schema(response: dict) -> dict | None:
    return response.get("content", {}).get("application/json", {}).get("schema")


def test_every_json_route_documents_its_answer_and_its_errors(spec):
    """A 2xx with a schema, every 4xx as ErrorOut; keyed routes declare 401/403, routes with input 422."""
    routes = _api_routes()
    operations = {(method, path): op for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert set(operations) == set(routes) and len(routes) == 28
    problems = []
    for (method, path), op in operations.items():
        route, where = routes[method, path], f"{method.upper()} {path}"
        responses = op["responses"]
        ok = [r for code, r in responses.items() if code.startswith("2")]
        if route.name == "metrics":  # Prometheus text, the one answer that is not JSON
            assert ok and "text/plain" in ok[0]["content"], where
            continue
        if route.name == "stream_events":  # server-sent events, described per event (OpenAPI 3.2's itemSchema)
            if not ok or "itemSchema" not in ok[0].get("content", {}).get("text/event-stream", {}):
                problems.append(f"{where}: no text/event-stream itemSchema")
        elif not ok or not (_json_schema(ok[0]) or {}).get("$ref"):
            problems.append(f"{where}: no 2xx schema")
        for code, r in responses.items():
            if code.startswith("4") and _json_schema(r) != {"$ref": ERROR_REF}:
                problems.append(f"{where}: {code} is not ErrorOut")
        expected = ({"401", "403"} if _needs_key(route) else set()) | ({"422"} if _takes_input(route) else set())
        if route.body_field:
            expected.add("413")
        if missing := expected - set(responses):
            problems.append(f"{where}: undeclared {sorted(missing)}")
    assert not problems, problems
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's 422 shape is never sent


def test_operation_ids_are_readable_and_unique(spec):
    """Generated clients name their methods after these: ``predict``, ``list_cycles``, not FastAPI's path soup."""
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ids), ids
    assert {"predict", "list_cycles", "get_cycle", "retrain_without", "audit_log", "healthz"} <= set(ids)


def test_the_api_version_is_the_package_version(spec):
    assert spec["info"]["version"] == datawheel.__version__


def test_refusals_have_the_declared_shape(ws, splits):
    """401, 403, 404, 409, 413 and 422 bodies are exactly ErrorOut, and none echoes what was sent."""
    secret = "alice.secret-value.example.org"
    with make_client(ws, max_body_bytes=2000) as client:
        ws.store.start_cycle("test")  # a running cycle, so a second one is a conflict
        answers = {
            401: client.get("/v1/models"),
            403: client.get("/v1/models", headers=APP),
            404: client.get(f"/v1/users/{secret}/data", headers=APP),
            409: client.post("/v1/cycles", headers=ADMIN),
            413: client.post("/v1/predict", headers=APP, json={"user_id": secret, "input": {"text": "x" * 3000}}),
            422: client.post("/v1/predict", headers=APP, json={"user_id": secret, "input": {"text": secret}}),
        }
    for status, resp in answers.items():
        assert resp.status_code == status, resp.text
        assert set(resp.json()) == {"error", "detail"}
        ErrorOut.model_validate(resp.json())
        assert secret not in resp.text


def digit(splits) -> dict:
    return {"image": to_png_base64(splits.pool[0][0])}


def _fields(model) -> set[str]:
    return set(model.model_fields)


def test_answers_declare_every_key_the_store_gives(client, splits, ws):
    """A response model drops undeclared keys; this fails first, so a new field is declared, not silently lost."""
    consent = ws.store.set_consent("zoe", {"training": True})
    assert set(consent) == _fields(ConsentOut)
    ws.store.add_record(user_id="zoe", kind="contribution", input=ws.task.encode(ws.task.parse(digit(splits))),
                        content_hash="h" * 64, consent=None, label="1")
    export = ws.store.user_data("zoe", lambda b: {})
    assert set(export) == _fields(UserDataOut)
    assert set(export["records"][0]) == _fields(RecordOut)
    assert set(export["consent_history"][0]) >= {"scope", "granted", "actor", "at"}
    record_id = export["records"][0]["id"]
    ws.store.add_feedback(record_id=record_id, user_id="zoe", label="1", rating=None, comment=None)
    assert set(ws.store.user_data("zoe", lambda b: {})["records"][0]["feedback"][0]) == _fields(FeedbackOut)
    receipt = ws.store.erase_user("zoe")
    # the route adds what the [erasure] policy did
    assert set(receipt) | set(FollowUp((), "none").receipt_fields()) == _fields(ErasureReceipt)
    assert set(ws.store.receipt(receipt["receipt_id"])) == _fields(StoredReceipt)
    assert set(ws.store.shadow_report(1)) == _fields(ShadowReport)
    assert set(ws.store.audit_log(1)[0]) == _fields(AuditEntry)
    ws.store.start_cycle("test")
    row = ws.store.list_cycles()[0]
    assert set(row) - {"id", "pid"} == _fields(CycleOut) - {"cycle_id"}


def test_routes_take_what_they_need_from_dependencies():
    """No route digs in the app's state: what a route uses is in its signature (api/deps.py)."""
    for path in ROUTES.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "app.state" not in text and "Request" not in text, path.name


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def test_input_is_one_of_named_shapes(spec):
    """Generated clients get a type per shape: each named, closed, with its one key required."""
    schemas = spec["components"]["schemas"]
    for body in ("PredictIn", "InteractionIn", "ContributionIn"):
        assert schemas[body]["properties"]["input"]["oneOf"] == [
            _ref("ImageInput"), _ref("PixelsInput"), _ref("TextInput")], body
    for answer in ("RecordOut", "QueueItem"):
        assert schemas[answer]["properties"]["input"]["oneOf"] == [
            _ref("ImageInput"), _ref("TextInput"), _ref("MessagesInput")], answer
    for shape, key in (("ImageInput", "image"), ("PixelsInput", "pixels"), ("TextInput", "text"),
                       ("MessagesInput", "messages")):
        assert schemas[shape]["required"] == [key] and set(schemas[shape]["properties"]) == {key}, shape
        assert schemas[shape]["additionalProperties"] is False, shape
    assert schemas["PixelsInput"]["properties"]["pixels"]["items"]["items"] == {
        "type": "number", "minimum": 0, "maximum": 255}


def test_the_documented_limits_are_the_tasks_own(spec):
    """shapes.py repeats the tasks' limits (it must not import them): a change to one side fails here."""
    from datawheel.tasks import image, text

    schemas = spec["components"]["schemas"]
    assert schemas["ImageInput"]["properties"]["image"]["maxLength"] == image.MAX_ENCODED
    pixels = schemas["PixelsInput"]["properties"]["pixels"]
    assert pixels["maxItems"] == pixels["items"]["maxItems"] == image.MAX_PIXELS_SIDE
    assert schemas["TextInput"]["properties"]["text"]["maxLength"] == text.MAX_RAW_CHARS


def test_the_shapes_the_document_gives_are_what_the_tasks_take(ws, splits, tmp_path):
    """What the document promises an image workspace accepts (both image shapes), and a text workspace."""
    from datawheel.api.shapes import ImageInput, PixelsInput, TextInput
    from datawheel.tasks import get_task

    image_task = ws.task
    for shape in (ImageInput(image=to_png_base64(splits.pool[0][0])), PixelsInput(pixels=[[0, 255], [255, 0]])):
        assert image_task.parse(shape.model_dump()).shape == (28, 28)
    assert get_task("text-classification").parse(TextInput(text="fine").model_dump()) == "fine"


def test_each_key_is_a_security_scheme_and_each_operation_names_the_keys_it_takes(spec):
    """Read from the same table the authorization test checks the app against (tests/test_api_auth.py)."""
    from test_api_auth import ALLOWED, PUBLIC

    schemes = {"app": "appKey", "admin": "adminKey", "annotator": "annotatorKey"}
    assert spec["components"]["securitySchemes"] == {
        name: {"type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"][name][
            "description"]} for name in schemes.values()}
    assert "admin key opens" in spec["components"]["securitySchemes"]["appKey"]["description"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            roles = ALLOWED[op["operationId"]]
            if roles == PUBLIC:
                assert "security" not in op, (method, path)
                continue
            # a list of alternatives: any one scheme opens the route
            assert sorted(op["security"], key=str) == sorted(({schemes[r]: []} for r in roles), key=str), (
                method, path)


_LINK = re.compile(r'(?:src|href|spec-url|data-openapi)="([^"]*)"')


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_this_server(client, page):
    """Blank offline otherwise: every script, style and the document itself come from here and answer."""
    resp = client.get(page)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    links = _LINK.findall(resp.text)
    assert "/openapi.json" in links and any(link.endswith(".js") for link in links)
    for link in links:
        assert link.startswith("/") and not link.startswith("//"), link
        asset = client.get(link)
        assert asset.status_code == 200 and asset.content, link
    assert "<script>" not in resp.text  # no inline script: a strict script-src still lets the page run
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "http" not in csp


def test_the_docs_pages_keep_their_policy_behind_the_web_security_headers(client):
    """SecurityHeaders adds its own CSP only where a response has none; a docs page keeps the one it needs."""
    from fastapi.testclient import TestClient

    from datawheel.web.security import SecurityHeaders

    with TestClient(SecurityHeaders(client.app)) as wrapped:
        resp = wrapped.get("/redoc")
    assert resp.status_code == 200
    assert resp.headers.get_list("content-security-policy") == [client.get("/redoc").headers[
        "content-security-policy"]]
    assert "blob:" in resp.headers["content-security-policy"]  # ReDoc's search runs in a blob: worker
