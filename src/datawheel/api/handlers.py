"""Every refusal answered the same way: ``{"error": code, "detail": prose}`` (``responses.ErrorOut``).

Client mistakes are answered with a 4xx whose ``detail`` says what is wrong and
where; the bodies never echo the request's values, so personal data cannot leak
into them (or into a log that keeps them). Each refusal is counted.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from datawheel.api.telemetry import Telemetry
from datawheel.errors import DatawheelError

#: body fields whose keys are the client's own words: a location inside them names no key
_FREE_FORM = ("metadata", "input")


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"] or ["body"]
    if parts[0] in _FREE_FORM and len(parts) > 1:
        return f"{parts[0]} key" if "[key]" in parts else f"{parts[0]} value"
    return ".".join(parts)


def install_handlers(app: FastAPI, telemetry: Telemetry) -> None:
    @app.exception_handler(DatawheelError)
    async def _datawheel_error(request: Request, exc: DatawheelError) -> JSONResponse:
        telemetry.rejected.labels(str(exc.status_code), exc.code).inc()
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        telemetry.rejected.labels("422", "invalid_request").inc()
        # Pydantic's message and location only: its "input" key would echo the value.
        problems = [f"{_loc(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code < 500:
            telemetry.rejected.labels(str(exc.status_code), "http_error").inc()
        return JSONResponse({"error": "http_error", "detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
