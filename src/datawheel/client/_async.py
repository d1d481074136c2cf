"""The asyncio client: the same route descriptions as ``Client``, run with httpx's async client.

A stream or a list iterator is an async iterator (``async for``); one left before its end holds its
connection until it is closed (``contextlib.aclosing``) or collected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from datawheel.api.responses import CycleOut
from datawheel.client import _routes as r
from datawheel.client._call import Call, Keys, Pages, answer, method_like, refusal, request_args, unavailable
from datawheel.client._routes import still_running
from datawheel.client._sse import Decoder, Stream

P = ParamSpec("P")
T = TypeVar("T")


def _route(build: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(build(*args, **kwargs))
    method_like(method, build, "AsyncClient", "{}")
    return method


def _stream(build: Callable[P, Stream[T]]) -> Callable[Concatenate[AsyncClient, P], AsyncIterator[T]]:
    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        stream = build(*args, **kwargs)
        request = self._http.build_request(**request_args(stream.call, self._keys))  # MissingKey now
        return self._read_stream(request, stream)
    method_like(method, build, "AsyncClient", "AsyncIterator[{}]")
    return method


def _pages(build: Callable[P, Pages[T]]) -> Callable[Concatenate[AsyncClient, P], AsyncIterator[T]]:
    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        pages = build(*args, **kwargs)
        self._keys.headers(pages.page(None))  # MissingKey now
        return self._walk(pages)
    method_like(method, build, "AsyncClient", "AsyncIterator[{}]")
    return method


class AsyncClient:
    """:class:`~datawheel.client.Client`'s twin for asyncio: the same methods and keys, as coroutines."""

    def __init__(self, base_url: str, key: str | None = None, *, app_key: str | None = None,
                 admin_key: str | None = None, annotator_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._keys = Keys(key, app_key=app_key, admin_key=admin_key, annotator_key=annotator_key)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise unavailable(self._http.base_url, exc) from exc

    async def _run(self, call: Call[T]) -> T:
        return answer(call, await self._send(self._http.build_request(**request_args(call, self._keys))))

    async def _read_stream(self, request: httpx.Request, stream: Stream[T]) -> AsyncIterator[T]:
        resp = await self._send(request, stream=True)
        try:
            if resp.status_code >= 400:
                await resp.aread()
                raise refusal(resp)
            decoder = Decoder()
            async for line in resp.aiter_lines():
                event = decoder.line(line)
                if event is None:
                    continue
                item = stream.item(event)
                if item is None:
                    return
                yield item
        except httpx.TransportError as exc:  # the connection dropped mid-stream
            raise unavailable(self._http.base_url, exc) from exc
        finally:
            await resp.aclose()

    async def _walk(self, pages: Pages[T]) -> AsyncIterator[T]:
        cursor = None
        while True:
            page: Any = await self._run(pages.page(cursor))
            for item in pages.items(page):
                yield item
            cursor = pages.next_cursor(page, cursor)
            if cursor is None:
                return

    predict = _route(r.predict)
    log_interaction = _route(r.log_interaction)
    chat = _route(r.chat)
    chat_stream = _stream(r.chat_stream)
    feedback = _route(r.feedback)
    contribute = _route(r.contribute)
    set_consent = _route(r.set_consent)
    user_data = _route(r.user_data)
    iter_user_records = _pages(r.iter_user_records)
    erase = _route(r.erase)
    erasure_receipt = _route(r.erasure_receipt)
    annotation_queue = _route(r.annotation_queue)
    annotate = _route(r.annotate)
    start_cycle = _route(r.start_cycle)
    retrain_without = _route(r.retrain_without)
    cycles = _route(r.cycles)
    iter_cycles = _pages(r.iter_cycles)
    cycle = _route(r.cycle)
    models = _route(r.models)
    iter_models = _pages(r.iter_models)
    promote = _route(r.promote)
    rollback = _route(r.rollback)
    start_shadow = _route(r.start_shadow)
    stop_shadow = _route(r.stop_shadow)
    shadow_report = _route(r.shadow_report)
    start_canary = _route(r.start_canary)
    stop_canary = _route(r.stop_canary)
    canary_report = _route(r.canary_report)
    audit = _route(r.audit)
    iter_audit = _pages(r.iter_audit)
    events = _stream(r.events)
    health = _route(r.health)
    metrics = _route(r.metrics)

    async def wait_cycle(self, cycle_id: str, timeout: float = 600.0, poll: float = 0.2) -> CycleOut:
        """The cycle once it has ended (done or failed); :class:`~datawheel.errors.WaitTimedOut` after
        ``timeout`` seconds, the cycle going on."""
        deadline = time.monotonic() + timeout
        while still_running(state := await self.cycle(cycle_id), deadline, timeout):
            await asyncio.sleep(poll)
        return state
