"""Who a browser request is from, as typed dependencies: the visitor's pseudonymous id, the console's role.

The web app's JSON routes (``/app/...``) take these in their signatures the way API routes take keys
(``api/deps.py``); the cookies and the CSRF rule are described in ``web/security.py``. Like the API's,
each dependency is ``async def`` and never blocks (a plain ``def`` would cost a thread hop per request).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, Response

from datawheel.api.deps import ServicesDep
from datawheel.web.security import (
    CONSOLE_COOKIE,
    CSRF_HEADER,
    USER_COOKIE,
    Signer,
    cookie_options,
    new_user_id,
)

#: a visitor's id lives as long as their browser keeps it (a year): it is their only handle on their data
USER_SECONDS = 365 * 24 * 3600


async def signer(request: Request) -> Signer:
    found: Signer = request.app.state.signer
    return found


SignerDep = Annotated[Signer, Depends(signer)]


def user_cookie_value(sign: Signer, user_id: str) -> str:
    return sign.sign("uid", {"uid": user_id})


def issue_user(response: Response, sign: Signer) -> str:
    """Give the browser a fresh pseudonymous id; returns the cookie value (the CSRF token derives from it)."""
    value = user_cookie_value(sign, new_user_id())
    response.set_cookie(USER_COOKIE, value, **cookie_options(USER_SECONDS))
    return value


async def _visitor(request: Request, sign: SignerDep) -> str:
    payload = sign.unsign("uid", request.cookies.get(USER_COOKIE))
    if payload is None or not isinstance(payload.get("uid"), str):
        raise HTTPException(401, "no browser session: reload the page to get one")
    uid: str = payload["uid"]
    return uid


async def _same_origin(request: Request, sign: SignerDep) -> None:
    """Refuse a state-changing request from another origin or without this browser's CSRF token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site request refused")
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, "origin: cross-origin request refused")
    cookie = request.cookies.get(USER_COOKIE) or ""
    token = request.headers.get(CSRF_HEADER, "")
    if not cookie or not token or token != sign.csrf_token(cookie):
        raise HTTPException(403, f"{CSRF_HEADER}: missing or wrong CSRF token; reload the page")


Visitor = Annotated[str, Depends(_visitor)]
SameOrigin = Depends(_same_origin)


async def _console_role(request: Request, sign: SignerDep, services: ServicesDep) -> str:
    """The role the console cookie was issued for, if the key it was issued with still opens that role."""
    payload = sign.unsign("console", request.cookies.get(CONSOLE_COOKIE))
    if payload is None:
        raise HTTPException(401, "not signed in to the console: enter the admin or annotator key")
    role = payload.get("role")
    keys = {"admin": services.keys.admin, "annotator": services.keys.annotator}
    key = keys.get(role) if isinstance(role, str) else None
    if not key or payload.get("kfp") != sign.key_fingerprint(key):
        raise HTTPException(401, "the console session has ended (the key changed): sign in again")
    return str(role)


async def _console_admin(role: Annotated[str, Depends(_console_role)]) -> str:
    if role != "admin":
        raise HTTPException(403, "this needs the admin key; the annotator key opens only the queue")
    return role


ConsoleRole = Annotated[str, Depends(_console_role)]
ConsoleAdmin = Annotated[str, Depends(_console_admin)]
