"""The Python client over real HTTP: typed answers, every key in one object, lists followed by cursor, events,
and every failure a datawheel error with the server's code. (Which method calls which route: test_client_routes.)"""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from conftest import register_model
from datawheel.api.app import create_app
from datawheel.api.responses import CycleOut, EventOut, PredictOut, UserDataOut
from datawheel.client import Client
from datawheel.demo.run import BackgroundServer, _free_port
from datawheel.errors import (
    ClientConflict,
    ClientError,
    ClientNotFound,
    DatawheelError,
    Forbidden,
    InvalidRequest,
    MissingKey,
    ServerError,
    ServerUnavailable,
    Unauthorized,
    UnexpectedAnswer,
    WaitTimedOut,
)
from datawheel.settings import Settings
from datawheel.tasks.image import to_png_base64


@pytest.fixture
def server(ws):
    port = _free_port()
    with BackgroundServer(create_app(ws, Settings(cycle_in_subprocess=False)), port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def dw(ws, server):
    """One client holding the product's and the operator's keys, as a backend that also runs the wheel would."""
    with Client(server, app_key=ws.secrets.app_key, admin_key=ws.secrets.admin_key) as client:
        yield client


def test_one_client_with_both_keys_predicts_erases_and_retrains(ws, splits, dw):
    """Product and operator routes from one object; each answer is its route's model, not a dict."""
    assert dw.health().champion_version == 1
    answer = dw.predict("leaver", {"image": to_png_base64(splits.pool[0][0])}, consent=True)
    assert isinstance(answer, PredictOut) and answer.model_version == 1 and answer.label in answer.scores
    assert dw.feedback(answer.interaction_id, "leaver", label=answer.label)  # the feedback's id
    assert "datawheel_predictions_total 1.0" in dw.metrics()
    receipt = dw.erase("leaver")
    assert receipt.records_deleted == 1 and receipt.feedback_deleted == 1
    kept = dw.erasure_receipt(receipt.receipt_id)
    assert kept.receipt_id == receipt.receipt_id and "leaver" not in kept.model_dump_json()
    state = dw.wait_cycle(dw.retrain_without("leaver"), timeout=120)
    assert isinstance(state, CycleOut) and state.status == "done", state.error
    assert [(c.cycle_id, c.trigger) for c in dw.iter_cycles()] == [(state.cycle_id, "forget")]
    audit = dw.audit(limit=3)
    assert audit.chain.ok and len(audit.entries) == 3
    assert "erasure" in [e.action for e in dw.iter_audit()]


def test_lists_are_followed_page_by_page(ws, splits, dw):
    """Iterators give every item once, in order, however small the pages: the same as one big page."""
    for i in range(5):
        dw.predict("pager", {"image": to_png_base64(splits.pool[i][0])}, consent=True)
    first = dw.user_data("pager", limit=2)
    assert isinstance(first, UserDataOut) and len(first.records) == 2 and first.next_cursor
    records = [r.id for r in dw.iter_user_records("pager", limit=2)]
    assert len(records) == 5 and records == [r.id for r in dw.user_data("pager", limit=500).records]
    whole = [e.id for e in dw.audit(limit=500).entries]
    assert [e.id for e in dw.iter_audit(limit=3)] == whole[::-1]  # newest first, none twice
    for _ in range(2):
        register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    assert [m.version for m in dw.iter_models(limit=1)] == [1, 2, 3]
    assert dw.models(limit=2).next_cursor is not None and dw.models(limit=3).next_cursor is None


def test_events_are_typed_and_resume_after_the_last_id(ws, dw):
    """``after`` gives what happened since; a live stream yields a change made while it is open."""
    past = list(dw.events(after=0, wait=False))  # from the first event kept: init's promotion of v1 at least
    assert all(isinstance(e, EventOut) for e in past) and ("model.promoted", 1) in [(e.type, e.version) for e in past]
    register_model(ws, ws.task.build_model("mlp", len(ws.labels)))
    dw.promote(2)
    since = list(dw.events(after=past[-1].id, wait=False))
    assert [(e.type, e.version) for e in since] == [("model.promoted", 2)]
    assert list(dw.events(after=since[-1].id, wait=False)) == []
    live = dw.events(after=since[-1].id)
    threading.Thread(target=dw.rollback).start()  # the stream waits for it, however long it takes
    event = next(live)
    live.close()
    assert (event.type, event.version, event.id > since[-1].id) == ("model.rolled_back", 1, True)


def test_refusals_raise_the_class_for_their_status_with_the_servers_code(ws, server, dw):
    with pytest.raises(ClientNotFound) as missing:
        dw.feedback("0" * 32, "alice", label="1")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert missing.value.detail.startswith("interaction_id:")
    with pytest.raises(InvalidRequest) as invalid:
        dw.predict("alice", {"image": "not base64 at all!"})
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_input")
    with pytest.raises(ClientConflict) as conflict:
        dw.chat("alice", [{"role": "user", "content": "hi"}])  # a classifier workspace serves no chat
    assert conflict.value.status == 409
    with pytest.raises(ClientConflict):
        next(dw.chat_stream("alice", [{"role": "user", "content": "hi"}]))
    with Client(server, ws.secrets.app_key) as older:  # one key for everything: the server refuses the admin route
        with pytest.raises(Forbidden) as forbidden:
            older.start_cycle()
        assert (forbidden.value.status, forbidden.value.code) == (403, "http_error")
    with Client(server, app_key="not-a-key-but-long-enough", admin_key="nor-this-one-long-enough") as stranger:
        assert stranger.health().status == "ok"  # no key needed
        with pytest.raises(Unauthorized) as unknown:
            stranger.models()
        assert unknown.value.status == 401 and isinstance(unknown.value, DatawheelError)


def test_a_route_whose_key_was_not_given_sends_nothing(ws, server):
    with Client(server, app_key=ws.secrets.app_key) as product, pytest.raises(MissingKey) as missing:
        product.start_cycle()
    assert "admin_key=" in str(missing.value) and ws.secrets.app_key not in str(missing.value)
    with Client(server, admin_key=ws.secrets.admin_key) as operator:
        assert operator.cycles().cycles == []  # nothing was started


def test_no_answer_raises_server_unavailable():
    """A refused connection is a ClientError too, without a status, never a raw httpx error."""
    port = _free_port()
    with Client(f"http://ops:s3cret@127.0.0.1:{port}", timeout=2) as nobody, \
            pytest.raises(ServerUnavailable) as down:
        nobody.health()
    assert isinstance(down.value, ClientError)
    assert down.value.status is None and down.value.code == "server_unavailable"
    assert f"127.0.0.1:{port}" in str(down.value) and "s3cret" not in str(down.value)  # a URL's secret stays out


def test_a_server_that_never_answers_times_out_as_server_unavailable():
    """Connected, request sent, no answer: the timeout ends the wait with ServerUnavailable."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts the connection; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Client(url, admin_key="k" * 20, timeout=0.3) as client, pytest.raises(ServerUnavailable) as late:
            client.rollback()
    assert "Timeout" in late.value.detail


def _answering(status: int, body: bytes, content_type: str = "application/json") -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body,
                                                              headers={"Content-Type": content_type}))


def test_a_refusal_not_in_the_servers_shape_keeps_its_status():
    """A proxy's HTML error page has no code: the status picks the class, the code says it is plain HTTP."""
    with Client("http://datawheel.test", admin_key="k" * 20,
                transport=_answering(502, b"<html>bad gateway</html>", "text/html")) as client, \
            pytest.raises(ServerError) as refused:
        client.models()
    assert (refused.value.status, refused.value.code, refused.value.detail) == (502, "http_error", "Bad Gateway")


def test_a_success_that_is_not_the_routes_answer_is_unexpected():
    """A 200 from something else (a captive portal, another version) is not taken for an answer."""
    with Client("http://datawheel.test", transport=_answering(200, b'{"status": "ok"}')) as client, \
            pytest.raises(UnexpectedAnswer) as odd:
        client.health()
    assert odd.value.code == "unexpected_answer" and "champion_version" in odd.value.detail


def test_waiting_for_a_cycle_gives_up_with_wait_timed_out():
    running = (b'{"cycle_id": "c1", "status": "running", "trigger": "api", "decision": null, "params": {}, '
               b'"champion_version": 1, "candidate_version": null, "snapshot_id": null, "report": null, '
               b'"error": null, "started_at": "2024-05-01T00:00:00+00:00", "finished_at": null}')
    with Client("http://datawheel.test", admin_key="k" * 20, transport=_answering(200, running)) as client, \
            pytest.raises(WaitTimedOut) as late:
        client.wait_cycle("c1", timeout=0, poll=0)
    assert isinstance(late.value, TimeoutError) and isinstance(late.value, ClientError)


def _chunk(content: str) -> str:
    return ('{"id":"r1","object":"chat.completion.chunk","created":1,"model":"datawheel-v2","choices":[{"index":0,'
            f'"delta":{{"content":"{content}"}},"finish_reason":null,"logprobs":null}}]}}')


def test_a_chat_stream_that_fails_after_its_200_raises_with_the_servers_code():
    """The server ends a stream it could not store with an error event instead of [DONE]."""
    body = (f"data: {_chunk('bl')}\n\ndata: {_chunk('ue')}\n\n"
            'data: {"error": {"code": "upstream_error", "message": "the upstream stopped answering"}}\n\n')
    with Client("http://datawheel.test", app_key="k" * 20,
                transport=_answering(200, body.encode(), "text/event-stream")) as client:
        stream = client.chat_stream("u1", [{"role": "user", "content": "sky?"}])
        assert [next(stream).choices[0].delta.content for _ in range(2)] == ["bl", "ue"]
        with pytest.raises(ClientError) as failed:
            next(stream)
    assert (failed.value.code, failed.value.detail) == ("upstream_error", "the upstream stopped answering")


def test_events_are_read_as_the_event_stream_format_says():
    """CRLF line ends, keep-alive comments, and data split over lines are one event each, with its id."""
    data = ['{"id": 7, "type": "model.promoted", "at": "2024-05-01T00:00:00+00:00",', '"version": 3}']
    body = ": keep-alive\r\n\r\n" + f"id: 7\r\ndata: {data[0]}\r\ndata: {data[1]}\r\n\r\n" + ": keep-alive\r\n\r\n"
    with Client("http://datawheel.test", admin_key="k" * 20,
                transport=_answering(200, body.encode(), "text/event-stream")) as client:
        assert [(e.id, e.type, e.version) for e in client.events(after=6)] == [(7, "model.promoted", 3)]
