"""One access-log line per request, naming the route by its template, never by the path it was called with.

A path carries user ids (``/v1/users/{user_id}/data``) and a query string may carry anything, so a line
holds the method, the route template, the status, the time taken and a request id, and nothing the
client sent: no path, query, header (keys travel in ``Authorization``) or body. The template is an
attribute of the route the router matched, so naming it costs nothing; a request answered before
routing (the body limit's 413) is matched afterwards against the app's routes, flattened once; a
static file is named by its mount (``/static/{path}``); a path no route matches is ``route: null``.

A plain ASGI middleware (a ``BaseHTTPMiddleware`` costs a task and a body stream per request, and
``POST /v1/predict`` is a hot path): when the ``datawheel.access`` logger is off it passes the request
through untouched, and otherwise the line is built only as a ``LogRecord``'s fields; turning it into
JSON is the handler's formatter's work (``api/log_format.py``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("datawheel.access")
#: any other method is logged as OTHER: a method is a token the client chose, and may spell anything
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _flat(routes: Iterable[Any]) -> list[Any]:
    """The routes inside FastAPI's included-router wrappers, each with its full path."""
    out: list[Any] = []
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        out.extend(_flat(inner) if inner is not None else [route])
    return out


class AccessLog:
    def __init__(self, app: ASGIApp, api: Starlette) -> None:
        self.app = app
        self.api = api
        self._routes: list[Any] | None = None  # the app's routes, flattened at the first request routing missed

    def _template(self, scope: Scope, root_path: str) -> str | None:
        """The template of the route that answered: the router leaves it in the scope (``path_format``); a
        mount (static files) leaves its prefix in ``root_path``; else the route the path would have reached."""
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path_format", None)
        mounted = scope.get("root_path", "")
        if mounted != root_path:
            return f"{mounted[len(root_path):]}/{{path}}"
        if self._routes is None:
            self._routes = _flat(self.api.routes)
        for route in self._routes:  # answered before routing: the body limit's 413
            match, child = route.matches(scope)
            if match is not Match.NONE:
                return getattr(child.get("route", route), "path_format", None)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start, root_path = time.perf_counter(), scope.get("root_path", "")
        request_id = f"{random.getrandbits(64):016x}"  # unique enough to find a request by; no syscall per request
        status = 500  # what the server answers when the app raises before it starts an answer

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            # a record made here, not by log.info: that would walk the stack to find the caller, on every request
            record = logging.LogRecord(log.name, logging.INFO, __file__, 0, "request", None, None)
            record.fields = {"method": method, "route": self._template(scope, root_path), "status": status,
                             "ms": round((time.perf_counter() - start) * 1000, 2), "request_id": request_id}
            log.handle(record)
