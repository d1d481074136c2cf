"""The blocking client: each method runs its route's description from ``_routes.py`` with httpx."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from datawheel.api.responses import CycleOut
from datawheel.client import _routes as r
from datawheel.client._call import Call, Keys, Pages, answer, method_like, refusal, request_args, unavailable
from datawheel.client._routes import still_running
from datawheel.client._sse import Decoder, Stream

P = ParamSpec("P")
T = TypeVar("T")


def _route(build: Callable[P, Call[T]]) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(build(*args, **kwargs))
    method_like(method, build, "Client", "{}")
    return method


def _stream(build: Callable[P, Stream[T]]) -> Callable[Concatenate[Client, P], Iterator[T]]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        stream = build(*args, **kwargs)
        request = self._http.build_request(**request_args(stream.call, self._keys))  # MissingKey now, not at next()
        return self._read_stream(request, stream)
    method_like(method, build, "Client", "Iterator[{}]")
    return method


def _pages(build: Callable[P, Pages[T]]) -> Callable[Concatenate[Client, P], Iterator[T]]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        pages = build(*args, **kwargs)
        self._keys.headers(pages.page(None))  # MissingKey now, not at next()
        return self._walk(pages)
    method_like(method, build, "Client", "Iterator[{}]")
    return method


class Client:
    """A product backend's (or an operator's) client: one method per route, typed answers, one object for all keys.

    ``app_key`` opens the product's routes, ``admin_key`` the operators' (and every other), ``annotator_key``
    the annotation queue. Each method sends the key its route takes (an app or annotation route falls back on
    the admin key) and raises :class:`~datawheel.errors.MissingKey` before sending anything when the client has
    none. ``key`` is the one key of older code: sent to every route no named key covers, the server deciding.
    """

    def __init__(self, base_url: str, key: str | None = None, *, app_key: str | None = None,
                 admin_key: str | None = None, annotator_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._keys = Keys(key, app_key=app_key, admin_key=admin_key, annotator_key=annotator_key)
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise unavailable(self._http.base_url, exc) from exc

    def _run(self, call: Call[T]) -> T:
        return answer(call, self._send(self._http.build_request(**request_args(call, self._keys))))

    def _read_stream(self, request: httpx.Request, stream: Stream[T]) -> Iterator[T]:
        resp = self._send(request, stream=True)
        try:
            if resp.status_code >= 400:
                resp.read()
                raise refusal(resp)
            decoder = Decoder()
            for line in resp.iter_lines():
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
            resp.close()

    def _walk(self, pages: Pages[T]) -> Iterator[T]:
        cursor = None
        while True:
            page: Any = self._run(pages.page(cursor))
            yield from pages.items(page)
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

    def wait_cycle(self, cycle_id: str, timeout: float = 600.0, poll: float = 0.2) -> CycleOut:
        """The cycle once it has ended (done or failed); :class:`~datawheel.errors.WaitTimedOut` after
        ``timeout`` seconds, the cycle going on."""
        deadline = time.monotonic() + timeout
        while still_running(state := self.cycle(cycle_id), deadline, timeout):
            time.sleep(poll)
        return state
