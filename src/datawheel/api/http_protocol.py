"""uvicorn's httptools protocol, sending an answer's headers and body in one socket write.

uvicorn writes the status line and headers the moment the app sends ``http.response.start``, then the body
when it comes: two ``send`` calls, two TCP segments and two wake-ups of the client for a 300-byte predict
answer. Under load at 32 connections the first of those writes was 12 % of the server's samples (py-spy,
issue 12). Here each request's first write (its headers, or a ``100 Continue``) is held until the next
write of the same request, which it joins, or until the event loop's next turn, whichever comes first:
an app sends a whole answer's start and body in one turn, so they leave together, and a streamed answer
(server-sent events) still has its headers on the wire before the loop waits for its first event.
Nothing about the bytes sent changes, only how many writes carry them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadersWithBody:
    """A transport that holds its first write for the next one or the loop's next turn (see the module)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._first:
            self._first = False
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the real transport's
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """For ``uvicorn.Config(http=...)``: uvicorn's protocol, each answer written through :class:`HeadersWithBody`."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not isinstance(cycle.transport, HeadersWithBody):
            cycle.transport = HeadersWithBody(self.transport, self.loop)
