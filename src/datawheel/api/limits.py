"""The request body limit, enforced while the body streams in rather than after it has been buffered."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
