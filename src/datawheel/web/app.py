"""The web app, served by ``datawheel serve`` itself: pages for the user, the operator and the community.

Plain HTML, CSS and JavaScript from ``web/static`` (no build step, no library fetched from anywhere): each
page loads its own script, which calls this app's same-origin JSON routes under ``/app/``. Those routes are
a second FastAPI app sharing the API's services, kept out of the API's OpenAPI document and key table: the
browser authenticates with signed cookies (``web/security.py``), never with the API's bearer keys.

:class:`WebFace` sits in front of the API and hands the web app's paths to it; everything else reaches
the API unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from datawheel.api.handlers import install_handlers
from datawheel.api.services import Services
from datawheel.web import chat, community, console, visitor
from datawheel.web.security import USER_COOKIE, SecurityHeaders, Signer
from datawheel.web.session import issue_user

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/admin": "admin.html", "/community": "community.html"}
PREFIXES = ("/app/", "/static/")


def _page(name: str) -> Callable[[Request], Response]:
    """A route serving one static page, giving a browser without an id cookie its pseudonymous id."""
    def page(request: Request) -> Response:
        response: Response = FileResponse(STATIC / name, media_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        if request.app.state.signer.unsign("uid", request.cookies.get(USER_COOKIE)) is None:
            issue_user(response, request.app.state.signer)
        return response
    page.__name__ = f"page_{name.split('.')[0]}"
    return page


def create_web(services: Services) -> FastAPI:
    """The web app over the API's services; its cookies are signed with a key derived from the workspace's
    pseudonym key, so they survive restarts and differ between workspaces."""
    web = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    web.state.services = services
    web.state.signer = Signer(hashlib.sha256(b"web-cookies:" + services.ws.secrets.pseudonym_key.encode()).digest())
    install_handlers(web, services.telemetry)
    for path, name in PAGES.items():
        web.add_api_route(path, _page(name), methods=["GET"], include_in_schema=False)
    for module in (visitor, chat, console, community):
        web.include_router(module.router)
    web.mount("/static", StaticFiles(directory=STATIC), name="static")
    web.add_middleware(SecurityHeaders)
    return web


def is_web_path(path: str) -> bool:
    return path in PAGES or path.startswith(PREFIXES)


class WebFace:
    """Route the web app's paths to it and every other request to the API."""

    def __init__(self, app: ASGIApp, web: ASGIApp) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_web_path(scope["path"]):
            await self.web(scope, receive, send)
        else:
            await self.app(scope, receive, send)
