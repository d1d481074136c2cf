"""The browser's side of trust: signed cookies, the CSRF token, and the headers every page is sent with.

The browser never holds a key. A visitor gets a random pseudonymous id in a signed, HTTP-only cookie
(``dw_uid``); an operator types the admin (or annotator) key once, and gets a second signed cookie
(``dw_console``) naming the role and a fingerprint of the key, so rotating the key ends every console
session. Both are ``Secure`` (browsers accept that on ``localhost``; anywhere else serve over HTTPS),
``HttpOnly`` and ``SameSite=Strict``.

Every state-changing ``/app/`` request must also carry ``X-CSRF-Token``: an HMAC of the visitor's cookie
that only a page of this origin can read (from ``GET /app/session``), and must not come from another
origin (``Origin``/``Sec-Fetch-Site``). SameSite already stops most cross-site requests; the token
stops the rest (a sibling subdomain, an old browser).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

USER_COOKIE = "dw_uid"
CONSOLE_COOKIE = "dw_console"
CSRF_HEADER = "x-csrf-token"
CONSOLE_SECONDS = 8 * 3600

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Add the headers to every response of the web app (pages, scripts, JSON, errors alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((n, v) for n, v in HEADERS if n not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


class Signer:
    """HMAC-SHA256 signed values: the server can trust what it gets back, the browser can neither read
    a secret from it nor forge one."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"datawheel-web\x00" + secret).digest()

    def mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self.mac(purpose, body)}"

    def unsign(self, purpose: str, token: str | None) -> dict[str, Any] | None:
        """The payload, or None when the token is missing, altered or expired (``exp`` in Unix seconds)."""
        if not token or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        if not hmac.compare_digest(mac, self.mac(purpose, body)):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        if not isinstance(payload, dict) or payload.get("exp", float("inf")) < time.time():
            return None
        return payload

    def csrf_token(self, user_cookie: str) -> str:
        return self.mac("csrf", user_cookie)

    def key_fingerprint(self, key: str) -> str:
        return self.mac("key", key)[:22]


def new_user_id() -> str:
    """A random pseudonymous id: nothing about the person is in it, and it is never shown to anyone else."""
    return "web-" + secrets.token_hex(16)


def cookie_options(max_age: int | None) -> dict[str, Any]:
    return {"httponly": True, "secure": True, "samesite": "strict", "path": "/", "max_age": max_age}
