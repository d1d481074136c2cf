"""The Python client: a method for every route, and refusals raised as datawheel errors with the server's code."""

from __future__ import annotations

import httpx
import pytest

from datawheel.api.app import create_app
from datawheel.client import Client
from datawheel.demo.run import BackgroundServer, _free_port
from datawheel.errors import ClientError, DatawheelError, ServerUnavailable
from datawheel.settings import Settings
from datawheel.tasks.image import to_png_base64

#: operationId in /openapi.json -> the Client method that calls it
OPERATIONS = {
    "predict": "predict",
    "log_interaction": "log_interaction",
    "add_feedback": "feedback",
    "contribute": "contribute",
    "create_chat_completion": "chat",
    "set_consent": "set_consent",
    "export_user_data": "user_data",
    "erase_user": "erase",
    "get_erasure_receipt": "erasure_receipt",
    "annotation_queue": "annotation_queue",
    "annotate": "annotate",
    "start_cycle": "start_cycle",
    "list_cycles": "cycles",
    "get_cycle": "cycle",
    "retrain_without": "retrain_without",
    "list_models": "models",
    "promote_model": "promote",
    "rollback": "rollback",
    "start_shadow": "start_shadow",
    "stop_shadow": "stop_shadow",
    "shadow_report": "shadow_report",
    "start_canary": "start_canary",
    "stop_canary": "stop_canary",
    "canary_report": "canary_report",
    "audit_log": "audit",
    "healthz": "health",
    "metrics": "metrics",
}
#: Client methods that are conveniences over the ones above, not routes
HELPERS = {"close", "wait_cycle"}


@pytest.fixture
def server(ws):
    port = _free_port()
    with BackgroundServer(create_app(ws, Settings(cycle_in_subprocess=False)), port):
        yield f"http://127.0.0.1:{port}"


def test_every_operation_has_a_client_method(client):
    """Adding a route without its Client method (or the reverse) fails here."""
    spec = client.get("/openapi.json").json()
    operations = {op["operationId"] for ops in spec["paths"].values() for op in ops.values()}
    assert operations == set(OPERATIONS)
    public = {name for name in vars(Client) if not name.startswith("_")}
    assert public == set(OPERATIONS.values()) | HELPERS
    assert all(callable(getattr(Client, name)) for name in OPERATIONS.values())


def test_the_client_reaches_health_metrics_cycles_audit_and_retrain_without(ws, splits, server):
    """The routes the client once lacked, end to end over HTTP."""
    with Client(server, ws.secrets.app_key) as product, Client(server, ws.secrets.admin_key) as operator:
        assert operator.health() == {"status": "ok", "champion_version": 1}
        product.predict("leaver", {"image": to_png_base64(splits.pool[0][0])}, consent=True)
        assert "datawheel_predictions_total 1.0" in operator.metrics()
        assert operator.cycles() == []
        receipt = product.erase("leaver")
        kept = product.erasure_receipt(receipt["receipt_id"])
        assert kept["receipt_id"] == receipt["receipt_id"] and kept["records_deleted"] == 1
        assert "leaver" not in str(kept)  # the id itself is gone; the receipt keeps a keyed pseudonym
        state = operator.wait_cycle(operator.retrain_without("leaver"), timeout=120)
        assert state["status"] == "done", state["error"]
        assert [(c["cycle_id"], c["trigger"]) for c in operator.cycles()] == [(state["cycle_id"], "forget")]
        audit = operator.audit(limit=3)
        assert audit["chain"]["ok"] and len(audit["entries"]) == 3
        assert "erasure" in [e["action"] for e in operator.audit()["entries"]]


def test_a_refused_request_raises_client_error_with_the_servers_code(ws, server):
    """Status, code and detail come from the server's answer; the error is a DatawheelError."""
    with Client(server, ws.secrets.app_key) as product, Client(server, "not-a-key-but-long-enough") as stranger:
        with pytest.raises(ClientError) as missing:
            product.feedback("0" * 32, "alice", label="1")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        assert missing.value.detail.startswith("interaction_id:")
        with pytest.raises(ClientError) as invalid:
            product.predict("alice", {})
        assert (invalid.value.status, invalid.value.code) == (422, "invalid_input")
        with pytest.raises(ClientError) as forbidden:
            product.start_cycle()
        assert (forbidden.value.status, forbidden.value.code) == (403, "http_error")
        assert stranger.health()["status"] == "ok"  # no key needed
        with pytest.raises(DatawheelError) as unknown:
            stranger.models()
        assert isinstance(unknown.value, ClientError) and unknown.value.status == 401


def test_no_answer_raises_server_unavailable():
    """A refused connection is a ClientError too, without a status, never a raw httpx error."""
    nobody = Client(f"http://127.0.0.1:{_free_port()}", "any-key-long-enough-0123", timeout=2)
    with nobody, pytest.raises(ServerUnavailable) as down:
        nobody.health()
    assert isinstance(down.value, ClientError)
    assert down.value.status is None and down.value.code == "server_unavailable"


def test_a_refusal_not_in_the_servers_shape_still_raises_client_error():
    """A proxy's HTML error page has no code: the status is kept and the code says it is a plain HTTP error."""
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    client = Client("http://datawheel.test", "k" * 20, transport=transport)
    with client, pytest.raises(ClientError) as refused:
        client.models()
    assert (refused.value.status, refused.value.code, refused.value.detail) == (502, "http_error", "Bad Gateway")
