"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served with their scripts from this server, never a CDN.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank where the server has no network;
the ``fastapi-offline`` package ships both bundles, and they are served here under ``/docs/assets``. The
pages hold no inline script (Swagger UI is started by ``/docs/init.js``, ReDoc by its element), and each
sends its own Content-Security-Policy, which a security-headers middleware in front keeps rather than
replacing with a stricter one the bundles cannot run under: they need inline styles, ``data:`` images and,
for ReDoc's search, a ``blob:`` worker.
"""

from __future__ import annotations

from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
#: what the bundles need and nothing more: no other origin, no inline or evaluated script
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "worker-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")

_SWAGGER = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{root}{assets}/swagger-ui.css"><link rel="icon" href="{root}{assets}/favicon.png">
</head><body><div id="swagger-ui" data-openapi="{root}{openapi}"></div>
<script src="{root}{assets}/swagger-ui-bundle.js"></script><script src="{root}/docs/init.js"></script>
</body></html>
"""

_REDOC = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title><link rel="icon" href="{root}{assets}/favicon.png">
</head><body><redoc spec-url="{root}{openapi}"></redoc>
<script src="{root}{assets}/redoc.standalone.js"></script>
</body></html>
"""

# FastAPI's own settings for Swagger UI (fastapi.openapi.docs.swagger_ui_default_parameters), minus the inline script
_INIT = """window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapi,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to an app made with ``docs_url=None, redoc_url=None``."""
    openapi = app.openapi_url or "/openapi.json"

    def page(template: str, request: Request) -> HTMLResponse:
        html = template.format(title=escape(app.title), root=escape(request.scope.get("root_path", "")),
                               assets=ASSETS, openapi=escape(openapi))
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        return page(_SWAGGER, request)

    async def redoc_html(request: Request) -> HTMLResponse:
        return page(_REDOC, request)

    async def swagger_ui_init() -> Response:
        return Response(_INIT, media_type="text/javascript")

    for path, endpoint in (("/docs", swagger_ui_html), ("/redoc", redoc_html), ("/docs/init.js", swagger_ui_init)):
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")
