"""The server's HTTP protocol writes an answer's headers and body together, and a stream's headers at once."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from conftest import APP, make_client
from datawheel.api.http_protocol import HeadersWithBody, OneWriteHttpToolsProtocol
from datawheel.tasks.image import to_png_base64


class _Wire:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_headers_join_the_body_written_in_the_same_turn():
    async def go() -> _Wire:
        wire = _Wire()
        out = HeadersWithBody(wire, asyncio.get_running_loop())  # type: ignore[arg-type]
        out.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        out.write(b"{}")
        await asyncio.sleep(0)
        out.write(b"later")
        assert out.is_closing() is False  # anything else is the real transport's
        return wire

    assert asyncio.run(go()).writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"later"]


def test_headers_alone_leave_on_the_next_turn_and_before_a_close():
    async def go() -> tuple[list[bytes], _Wire]:
        wire = _Wire()
        out = HeadersWithBody(wire, asyncio.get_running_loop())  # type: ignore[arg-type]
        out.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert wire.writes == []
        await asyncio.sleep(0)
        seen = list(wire.writes)
        closing = HeadersWithBody(_Wire(), asyncio.get_running_loop())  # type: ignore[arg-type]
        closing.write(b"head")
        closing.close()
        return seen, closing._transport  # type: ignore[return-value]

    seen, closed = asyncio.run(go())
    assert seen == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert closed.writes == [b"head"] and closed.closed


class _Counting:
    """A real transport, its writes counted."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


WRITES: list[bytes] = []


class _CountedOneWrite(OneWriteHttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(_Counting(transport, WRITES))


class _CountedPlain(HttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(_Counting(transport, WRITES))


@contextmanager
def _serving(app: Any, protocol: type) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, loop="asyncio",
                                           log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(("protocol", "writes_per_answer"), [(_CountedOneWrite, 1), (_CountedPlain, 2)])
def test_predict_answers_leave_in_one_write_each_over_keep_alive(ws, protocol, writes_per_answer):
    import numpy as np

    app = make_client(ws).app
    image = to_png_base64(np.pad(np.full((12, 4), 255, dtype=np.uint8), 8))
    body = json.dumps({"user_id": "proto-user", "input": {"image": image}})
    WRITES.clear()
    with _serving(app, protocol) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answers = []
        for _ in range(3):  # one connection, kept alive
            conn.request("POST", "/v1/predict", body, {**APP, "Content-Type": "application/json"})
            response = conn.getresponse()
            answers.append((response.status, response.getheader("content-type"), json.loads(response.read())))
        conn.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
        refused = conn.getresponse()
        assert refused.status == 401 and "error" in json.loads(refused.read())
        conn.close()
    assert [(s, c) for s, c, _ in answers] == [(200, "application/json")] * 3
    assert all(a["label"] in a["scores"] for _, _, a in answers)
    assert len(WRITES) == 4 * writes_per_answer
    if writes_per_answer == 1:
        assert all(w.startswith(b"HTTP/1.1 ") and b"\r\n\r\n{" in w for w in WRITES)


def test_a_streamed_answer_has_its_headers_on_the_wire_before_its_first_part():
    produce = threading.Event()

    async def parts() -> Any:
        await asyncio.to_thread(produce.wait, 10)  # nothing is sent until the client has seen the headers
        yield b"data: one\n\n"

    async def stream(_request: Any) -> StreamingResponse:
        return StreamingResponse(parts(), media_type="text/event-stream")

    async def plain(_request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/stream", stream), Route("/plain", plain)])
    with _serving(app, OneWriteHttpToolsProtocol) as port, socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the connection"
            head += chunk  # would time out (socket timeout, 10 s) if the headers waited for the first part
        assert head.startswith(b"HTTP/1.1 200 OK") and b"text/event-stream" in head
        produce.set()
        rest = head.split(b"\r\n\r\n", 1)[1]
        while b"data: one" not in rest:
            chunk = sock.recv(4096)
            assert chunk
            rest += chunk
