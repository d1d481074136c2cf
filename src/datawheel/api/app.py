"""The app factory. Everything the app needs is built here from a workspace and settings, never at import.

Client mistakes are answered with a 4xx whose ``detail`` says what is wrong
and where; the error bodies never echo the request's values, so personal data
cannot leak into them.
"""

from __future__ import annotations

from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datawheel.api.routes import admin, annotation, health, predict, records, users
from datawheel.api.telemetry import Telemetry
from datawheel.errors import DatawheelError
from datawheel.models.serving import ModelServer
from datawheel.settings import Settings
from datawheel.wheel.runner import CycleRunner
from datawheel.workspace import Workspace


class BodyLimit:
    """Refuse bodies over the limit with 413, whether or not the client sent Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing to the 4xx handler.
                    raise StarletteHTTPException(413, self._detail)
            return message

        await self.app(scope, limited, send)

    @property
    def _detail(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes"

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse({"error": "payload_too_large", "detail": self._detail}, status_code=413)
        await response(scope={"type": "http"}, receive=None, send=send)  # type: ignore[arg-type]


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"] or ["body"]
    return ".".join(parts)


def create_app(ws: Workspace, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    torch.set_num_threads(1)  # serving answers one small request at a time; leave cores to training
    app = FastAPI(title="datawheel", version="0.1.0",
                  description="The user-data flywheel: predict, log, feedback, consent, erasure, cycles.")
    telemetry = Telemetry()
    server = ModelServer(ws, refresh_interval=settings.refresh_interval, runtime=settings.runtime)

    def on_finish(cycle: dict) -> None:
        telemetry.cycles.labels(cycle["status"], cycle["decision"] or "none").inc()

    auto_every = settings.auto_cycle or ws.config.cycle.auto_every
    app.state.ws = ws
    app.state.settings = settings
    app.state.telemetry = telemetry
    app.state.server = server
    app.state.runner = CycleRunner(ws, server, subprocess=settings.cycle_in_subprocess, auto_every=auto_every,
                                   on_finish=on_finish)
    app.state.screen = ws.screen(on_finding=lambda kind, action: telemetry.pii.labels(kind, action).inc())
    ws.record_policy(actor="server")
    app.state.keys = {"app": settings.app_key or ws.secrets.app_key,
                      "admin": settings.admin_key or ws.secrets.admin_key,
                      "annotator": settings.annotator_key or ws.secrets.annotator_key}

    @app.exception_handler(DatawheelError)
    async def _datawheel_error(request: Request, exc: DatawheelError) -> JSONResponse:
        telemetry.rejected.labels(str(exc.status_code), exc.code).inc()
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        telemetry.rejected.labels("422", "invalid_request").inc()
        problems = [f"{_loc(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code < 500:
            telemetry.rejected.labels(str(exc.status_code), "http_error").inc()
        return JSONResponse({"error": "http_error", "detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    for module in (predict, records, users, annotation, admin, health):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
