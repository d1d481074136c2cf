"""Every route of the app has its client method, in both clients, sending the key the route itself asks for.

The table maps each (HTTP method, path) the app serves to the client methods that call it, with an example
call. Each call is sent into a transport that records the request: its method and path must be the route's,
and its key the one the route's own dependency (``api/deps.py``) accepts.
"""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from datawheel.api.app import ROUTERS
from datawheel.api.deps import admin_role, annotator_role, app_role
from datawheel.client import AsyncClient, Client
from datawheel.errors import MissingKey, ServerUnavailable

USER, MSGS, ITEM, RECEIPT = "user-7", [{"role": "user", "content": "what colour is the sky?"}], "ab" * 32, "cd" * 16
#: (method, path) -> [(client method, args, kwargs)]
ROUTES: dict[tuple[str, str], list[tuple[str, tuple, dict]]] = {
    ("POST", "/v1/predict"): [("predict", (USER, {"text": "cheap pills"}), {"consent": True})],
    ("POST", "/v1/interactions"): [
        ("log_interaction", (USER, {"text": "hi"}, "ham", "my-model", 3), {"scores": {"ham": 0.9, "spam": 0.1}})],
    ("POST", "/v1/chat/completions"): [("chat", (USER, MSGS), {"max_tokens": 5}),
                                        ("chat_stream", (USER, MSGS), {"include_usage": True})],
    ("POST", "/v1/feedback"): [("feedback", ("0" * 32, USER), {"rating": -1})],
    ("POST", "/v1/contributions"): [("contribute", (USER, {"text": "hi"}, "ham"), {"consent": True})],
    ("PUT", "/v1/users/{user_id}/consent"): [("set_consent", (USER,), {"training": False})],
    ("GET", "/v1/users/{user_id}/data"): [("user_data", (USER,), {"limit": 5, "cursor": "WyJyZWNvcmRzIl0"}),
                                          ("iter_user_records", (USER,), {})],
    ("DELETE", "/v1/users/{user_id}"): [("erase", (USER,), {})],
    ("GET", "/v1/erasures/{receipt_id}"): [("erasure_receipt", (RECEIPT,), {})],
    ("GET", "/v1/annotation/queue"): [("annotation_queue", (), {"limit": 3})],
    ("POST", "/v1/annotation/{item_id}"): [("annotate", (ITEM, "ham"), {})],
    ("POST", "/v1/cycles"): [("start_cycle", (), {"warm_start": False})],
    ("GET", "/v1/cycles"): [("cycles", (), {"limit": 2, "cursor": "WyJjeWNsZXMiXQ"}), ("iter_cycles", (), {})],
    ("GET", "/v1/cycles/{cycle_id}"): [("cycle", ("c0ffee",), {}), ("wait_cycle", ("c0ffee",), {})],
    ("POST", "/v1/users/{user_id}/retrain-without"): [("retrain_without", (USER,), {})],
    ("GET", "/v1/models"): [("models", (), {}), ("iter_models", (), {"limit": 10})],
    ("POST", "/v1/models/{version}/promote"): [("promote", (2,), {})],
    ("POST", "/v1/rollback"): [("rollback", (), {})],
    ("POST", "/v1/models/{version}/shadow"): [("start_shadow", (3,), {})],
    ("DELETE", "/v1/shadow"): [("stop_shadow", (), {})],
    ("GET", "/v1/shadow"): [("shadow_report", (), {"version": 3})],
    ("POST", "/v1/models/{version}/canary"): [("start_canary", (3,), {})],
    ("DELETE", "/v1/canary"): [("stop_canary", (), {})],
    ("GET", "/v1/canary"): [("canary_report", (), {})],
    ("GET", "/v1/audit"): [("audit", (), {"limit": 10, "cursor": "WyJhdWRpdCJd"}), ("iter_audit", (), {})],
    ("GET", "/v1/events"): [("events", (), {"after": 41})],
    ("GET", "/healthz"): [("health", (), {})],
    ("GET", "/metrics"): [("metrics", (), {})],
}
#: public client members that call no route
HELPERS = {"close"}
ROLE_OF = {app_role: "app", admin_role: "admin", annotator_role: "annotator"}
KEYS = {"app": "key-of-the-app-0123456789", "admin": "key-of-the-admin-0123456789",
        "annotator": "key-of-the-annotator-0123456789"}


def _routes() -> dict[tuple[str, str], APIRoute]:
    return {(method, route.path): route for module in ROUTERS for route in module.router.routes
            if isinstance(route, APIRoute) for method in route.methods}


def _query_names(dependant: Dependant) -> set[str]:
    return {p.alias for p in dependant.query_params} | {n for d in dependant.dependencies for n in _query_names(d)}


def _check_accepted(route: APIRoute, request: httpx.Request) -> None:
    """The query names the route (or a dependency of it) reads, and a body its own request model validates."""
    assert set(request.url.params) <= _query_names(route.dependant), route.path
    if route.dependant.body_params:
        TypeAdapter(route.dependant.body_params[0].field_info.annotation).validate_json(request.content or b"null")
    else:
        assert request.content == b"", route.path


def _role(route: APIRoute) -> str | None:
    roles = {ROLE_OF[d.call] for d in route.dependant.dependencies if d.call in ROLE_OF}
    assert len(roles) <= 1, route.path
    return roles.pop() if roles else None


CASES = [(key, *call) for key, calls in ROUTES.items() for call in calls]


def _recorder() -> tuple[list[httpx.Request], httpx.MockTransport]:
    """A transport that keeps each request and then fails as a dead server would."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise httpx.ConnectError("refused", request=request)
    return sent, httpx.MockTransport(handle)


def _call_sync(client: Client, name: str, args: tuple, kwargs: dict) -> None:
    result = getattr(client, name)(*args, **kwargs)
    next(result)  # an iterator sends its first request when first read


def _call_async(transport: httpx.MockTransport, keys: dict[str, str], name: str, args: tuple, kwargs: dict) -> None:
    async def go() -> None:
        async with AsyncClient("http://datawheel.test", transport=transport, **keys) as client:
            result = getattr(client, name)(*args, **kwargs)
            await (result if inspect.iscoroutine(result) else anext(result))
    asyncio.run(go())


def _send(flavour: str, keys: dict[str, str], name: str, args: tuple, kwargs: dict) -> list[httpx.Request]:
    sent, transport = _recorder()
    if flavour == "sync":
        with Client("http://datawheel.test", transport=transport, **keys) as client, \
                pytest.raises(ServerUnavailable):
            _call_sync(client, name, args, kwargs)
    else:
        with pytest.raises(ServerUnavailable):
            _call_async(transport, keys, name, args, kwargs)
    return sent


def test_the_table_lists_every_route_of_the_app():
    """A route added without its client method (or a method whose route went away) fails here."""
    assert set(ROUTES) == set(_routes())


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_every_public_method_is_in_the_table(cls):
    public = {name for name in dir(cls) if not name.startswith("_")}
    assert public == {name for calls in ROUTES.values() for name, _, _ in calls} | HELPERS


def test_both_clients_take_the_same_arguments():
    """The async twin cannot drift: every method has the sync one's parameters."""
    for calls in ROUTES.values():
        for name, _, _ in calls:
            sync, aio = inspect.signature(getattr(Client, name)), inspect.signature(getattr(AsyncClient, name))
            assert list(sync.parameters.values()) == list(aio.parameters.values()), name


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(("route", "name", "args", "kwargs"), CASES, ids=[c[1] for c in CASES])
def test_each_method_calls_its_route_with_the_key_the_route_takes(flavour, route, name, args, kwargs):
    """Method, path, key, query names and body as the route itself declares them."""
    served = _routes()[route]
    sent = _send(flavour, {f"{role}_key": key for role, key in KEYS.items()}, name, args, kwargs)
    assert len(sent) == 1
    assert sent[0].method == route[0] and served.path_regex.match(sent[0].url.path), sent[0].url.path
    _check_accepted(served, sent[0])
    role = _role(served)
    assert sent[0].headers.get("Authorization") == (None if role is None else f"Bearer {KEYS[role]}")


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(("route", "name", "args", "kwargs"), CASES, ids=[c[1] for c in CASES])
def test_the_admin_key_alone_opens_every_route(flavour, route, name, args, kwargs):
    sent = _send(flavour, {"admin_key": KEYS["admin"]}, name, args, kwargs)
    expected = None if _role(_routes()[route]) is None else f"Bearer {KEYS['admin']}"
    assert [r.headers.get("Authorization") for r in sent] == [expected]


@pytest.mark.parametrize(("route", "name", "args", "kwargs"), CASES, ids=[c[1] for c in CASES])
def test_a_key_the_route_does_not_take_is_never_sent(route, name, args, kwargs):
    """With only the app key, or only the annotator key, a route needing another raises MissingKey, sending
    nothing; the message names the parameter to give."""
    role = _role(_routes()[route])
    for holder in ("app", "annotator"):
        keys = {f"{holder}_key": KEYS[holder]}
        if role in (None, holder):
            assert len(_send("sync", keys, name, args, kwargs)) == 1
            continue
        sent, transport = _recorder()
        with Client("http://datawheel.test", transport=transport, **keys) as client, \
                pytest.raises(MissingKey, match=f"{role}_key=") as missing:
            getattr(client, name)(*args, **kwargs)  # raised at the call, even by an iterator
        assert sent == [] and missing.value.code == "missing_key" and missing.value.status is None
        with pytest.raises(MissingKey, match=f"{role}_key="):
            _call_async(transport, keys, name, args, kwargs)
        assert sent == []


def test_the_one_key_of_older_code_is_sent_to_every_keyed_route():
    """``Client(url, key)`` keeps working: the key goes to every route and the server decides."""
    for route, name, args, kwargs in CASES:
        sent, transport = _recorder()
        with Client("http://datawheel.test", "the-only-key-0123456789", transport=transport) as client, \
                pytest.raises(ServerUnavailable):
            _call_sync(client, name, args, kwargs)
        keyed = _role(_routes()[route]) is not None
        assert sent[0].headers.get("Authorization") == ("Bearer the-only-key-0123456789" if keyed else None)


def test_a_user_id_stays_one_path_segment():
    """An id with a slash cannot reach another route: it is sent percent-encoded within its segment."""
    sent, transport = _recorder()
    with Client("http://datawheel.test", app_key="k" * 20, transport=transport) as client, \
            pytest.raises(ServerUnavailable):
        client.erase("../../v1/rollback")
    assert sent[0].url.raw_path == b"/v1/users/..%2F..%2Fv1%2Frollback"
