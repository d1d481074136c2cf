"""``POST /v1/predict`` answered before FastAPI's routing: the hot path, without the framework's per-request work.

A product calls predict for every user action, and around a route FastAPI resolves its dependencies (six
here), decodes the body to a dict and validates that, validates the answer again and runs two exit stacks:
under load (issue 12) answering without it took the server's CPU per prediction from 1.17 to 0.82 ms.
:class:`FastPredict` sits innermost among the app's middlewares (inside the access log and the body limit)
and answers the common request on its own: an app or admin key, ``Content-Type: application/json``, and a
body that ``PredictIn.model_validate_json`` accepts from the raw bytes. The work is the route's own
(:func:`~datawheel.api.routes.predict.serve_prediction`), and a refusal it raises (an input the task or the
privacy screen refuses, a blank input, a consent refusal) is answered by the app's own exception handlers.

Everything else is handed to FastAPI exactly as it arrived: a missing, wrong or annotator key, another
content type, a body the schema refuses, a body over the limit, a client that went away. The messages
already read are replayed to it, and an error raised while reading (the body limit's 413) is raised again
at the same point, so FastAPI answers as it always has: the same status, the same ``{error, detail}``, and
the same order of checks (a malformed JSON body is refused before the key is looked at, a bad key before
the schema). The route stays declared, so ``/openapi.json`` documents it, and it is the fallback.

Only acceptance is decided here, so only one direction matters: whatever ``model_validate_json`` accepts,
FastAPI's ``json.loads`` then validation accepts too, with the same values. Where the two parsers differ
(a lone surrogate, a byte-order mark, UTF-16) the raw-bytes parser refuses and the request goes to FastAPI.
``tests/test_fast_predict.py`` pins that and compares both paths' answers byte for byte.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datawheel.api.responses import PredictOut
from datawheel.api.routes.predict import router, serve_prediction
from datawheel.api.schemas import PredictIn
from datawheel.api.services import Services

PATH = "/v1/predict"
#: the roles whose key opens predict (``deps.app_role``); any other key is FastAPI's to refuse
_ROLES = ("app", "admin")
_JSON = b"application/json"
_TO_JSON = PredictOut.__pydantic_serializer__.to_json  # what FastAPI's response_model serialization calls


class FastPredict:
    def __init__(self, app: ASGIApp, api: FastAPI, services: Services) -> None:
        self.app = app
        self.services = services
        #: the app's handlers, read when a refusal needs one (the middleware stack is built at the first request)
        self.handlers: dict[Any, Any] = api.exception_handlers
        #: the documented route, put in the scope as the router would: the access log reads its template there
        #: rather than matching the path against every route
        self.route = next(r for r in router.routes
                          if isinstance(r, APIRoute) and r.path == PATH and "POST" in (r.methods or ()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI's own OpenTelemetry spans (when configured) are named by its router: left to it
        if (scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or scope.get("root_path")
                or scope.get("fastapi.telemetry") is not None or not self._opens(scope["headers"])):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        messages, body, error = await _read_body(receive)
        request = _parse(body)
        if request is None:
            await self.app(scope, _replay(messages, error, receive), send)
            return
        s = self.services
        try:
            answer = await serve_prediction(request, s.server, s.ingest, s.telemetry)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # as from the route: ServerErrorMiddleware answers 500
            await self._refuse(handler, exc, scope, receive, send)
            return
        payload = _TO_JSON(answer, by_alias=True)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()), (b"content-type", _JSON)]})
        await send({"type": "http.response.body", "body": payload})

    def _opens(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """A JSON body and a key that opens predict, read as FastAPI reads them (the first of each header,
        ``HTTPBearer``'s split); anything else goes to FastAPI."""
        authorization = content_type = None
        for name, value in headers:
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-type" and content_type is None:
                content_type = value
        if content_type != _JSON or not authorization:
            return False
        scheme, _, key = authorization.decode("latin-1").partition(" ")
        key = key.strip()
        return bool(key) and scheme.lower() == "bearer" and self.services.keys.role_of(key) in _ROLES

    def _handler(self, exc: Exception) -> Any:
        """The handler ExceptionMiddleware would pick: by status for an HTTPException, then by the exception's
        classes; 500 and ``Exception`` are ServerErrorMiddleware's, as there."""
        if isinstance(exc, HTTPException) and exc.status_code != 500 and exc.status_code in self.handlers:
            return self.handlers[exc.status_code]
        return next((self.handlers[cls] for cls in type(exc).__mro__ if cls is not Exception and cls in self.handlers),
                    None)

    @staticmethod
    async def _refuse(handler: Any, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)


def _parse(body: bytes | None) -> PredictIn | None:
    """The request, or None for FastAPI to parse again and word the refusal."""
    if not body:
        return None
    try:
        return PredictIn.model_validate_json(body)
    except ValidationError:
        return None


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None, Exception | None]:
    """The messages read, the whole body (None if the client left or reading failed) and the error raised."""
    messages: list[Message] = []
    while True:
        try:
            message = await receive()
        except Exception as exc:  # noqa: BLE001 - the body limit's 413: raised again for FastAPI by _replay
            return messages, None, exc
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None, None
        if not message.get("more_body", False):
            body = message.get("body", b"")
            return messages, body if len(messages) == 1 else b"".join(m.get("body", b"") for m in messages), None


def _replay(messages: list[Message], error: Exception | None, receive: Receive) -> Receive:
    """``receive`` as if nothing had been read yet: the same messages, then the same error, then the rest."""
    pending = list(reversed(messages))

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        if error is not None:
            raise error
        return await receive()

    return replayed
