"""Who may call what, checked for every route the app serves against one table written here.

Each route is called with no key, a wrong key, and the app, annotator and admin keys. Without a valid
key the answer is 401; with a key whose role the table does not allow, 403; with an allowed one,
anything but 401/403. A route the table does not list fails the test, so a new route cannot ship
without someone deciding who may call it.

The requests carry deliberately invalid path parameters or bodies where they can, so an allowed
role gets a 4xx from validation instead of starting a cycle or erasing someone: keys are checked
before anything else, so the refusal still shows the authorization decision.
"""

from __future__ import annotations

import re

import pytest
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from conftest import ADMIN, ADMIN_KEY, APP, APP_KEY, make_client

ANNOTATOR_KEY = "annotator-key-for-tests-0123456789"
PUBLIC = frozenset({"anyone"})
PRODUCT = frozenset({"app", "admin"})
ANNOTATORS = frozenset({"annotator", "admin"})
OPERATORS = frozenset({"admin"})

#: route name (the operation id) -> the roles that may call it
ALLOWED: dict[str, frozenset[str]] = {
    # the product's backend, acting for its users
    "predict": PRODUCT, "create_chat_completion": PRODUCT, "log_interaction": PRODUCT, "add_feedback": PRODUCT,
    "contribute": PRODUCT,
    "set_consent": PRODUCT, "export_user_data": PRODUCT, "erase_user": PRODUCT, "get_erasure_receipt": PRODUCT,
    # people labelling the queue
    "annotation_queue": ANNOTATORS, "annotate": ANNOTATORS,
    # operators
    "start_cycle": OPERATORS, "list_cycles": OPERATORS, "get_cycle": OPERATORS, "retrain_without": OPERATORS,
    "list_models": OPERATORS, "promote_model": OPERATORS, "rollback": OPERATORS,
    "start_shadow": OPERATORS, "stop_shadow": OPERATORS, "shadow_report": OPERATORS,
    "start_canary": OPERATORS, "stop_canary": OPERATORS, "canary_report": OPERATORS, "audit_log": OPERATORS,
    "stream_events": OPERATORS,
    # no key: liveness, metrics, and the API's own description
    "healthz": PUBLIC, "metrics": PUBLIC,
    "openapi": PUBLIC, "swagger_ui_html": PUBLIC, "swagger_ui_init": PUBLIC, "redoc_html": PUBLIC,
}

KEYS = {
    "no key": {},
    "wrong key": {"Authorization": "Bearer wrong-key-for-tests-0123456789"},
    "app": APP,
    "annotator": {"Authorization": f"Bearer {ANNOTATOR_KEY}"},
    "admin": ADMIN,
}
#: path parameters that fail validation, so an allowed caller is stopped before the route does anything
INVALID_PARAMS = {"user_id": "not a valid id", "item_id": "not-a-hash", "cycle_id": "x" * 65, "version": "0",
                  "receipt_id": "not-a-receipt"}
INVALID_QUERY = {"shadow_report": "?version=0", "annotation_queue": "?limit=0", "audit_log": "?limit=x",
                 "stream_events": "?after=x"}  # a valid one would stream until the client left
INVALID_BODY = {"surprise": True}  # every body model forbids unknown fields


@pytest.fixture
def app_client(ws):
    with make_client(ws, annotator_key=ANNOTATOR_KEY) as client:
        yield client


def _routes(routes: list, prefix: str = "") -> list[tuple[str, Route]]:
    """(path, route) for every route in ``app.routes``, looking inside the routers FastAPI keeps included whole."""
    out = []
    for route in routes:
        if isinstance(route, Route):
            out.append((prefix + route.path_format, route))
        elif hasattr(route, "original_router"):  # FastAPI's wrapper of an included APIRouter
            out.extend(_routes(route.original_router.routes, prefix + route.include_context.prefix))
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            continue  # the docs pages' script bundles: files anyone may fetch (tests/test_api_openapi.py)
        else:
            raise AssertionError(f"{route!r}: neither a route nor an included router; extend this test for it")
    return out


def _calls(app) -> list[tuple[str, str, str]]:
    """(route name, method, url) for every method of every route the app serves."""
    out = []
    for path, route in _routes(app.routes):
        url = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: INVALID_PARAMS[m.group(1)], path)
        url += INVALID_QUERY.get(route.name, "")
        out.extend((route.name, method, url) for method in sorted(route.methods or ()) if method != "HEAD")
    return out


def test_every_route_is_in_the_table(app_client):
    """A route nobody classified fails here; so does a table entry for a route that is gone."""
    served = {route.name for _, route in _routes(app_client.app.routes)}
    assert served - set(ALLOWED) == set(), "add these routes to ALLOWED"
    assert set(ALLOWED) - served == set(), "these routes are gone; remove them from ALLOWED"


def test_every_route_answers_every_key_as_the_table_says(app_client, ws):
    problems = []
    calls = _calls(app_client.app)
    for name, method, url in calls:
        allowed = ALLOWED.get(name, frozenset())
        for who, headers in KEYS.items():
            body = {"json": INVALID_BODY} if method in ("POST", "PUT") else {}
            status = app_client.request(method, url, headers=headers, **body).status_code
            if allowed == PUBLIC or who in allowed:
                ok = status not in (401, 403)
            elif who in ("no key", "wrong key"):
                ok = status == 401
            else:
                ok = status == 403
            if not ok:
                problems.append(f"{method} {url} with {who}: {status}")
    assert not problems, "\n".join(problems)
    cases = len(calls) * len(KEYS)
    print(f"authorization: {len(calls)} operations x {len(KEYS)} keys = {cases} cases")
    assert cases >= 29 * 5
    assert ws.store.list_cycles() == []  # no allowed call got far enough to start anything


def test_the_keys_in_the_table_are_the_ones_the_app_knows(app_client):
    """Guards the table itself: the app and admin keys used here really are different roles."""
    assert APP_KEY != ADMIN_KEY != ANNOTATOR_KEY
    assert app_client.get("/v1/models", headers=APP).status_code == 403
    assert app_client.get("/v1/models", headers=ADMIN).status_code == 200
