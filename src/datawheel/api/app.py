"""The app factory. Everything the app needs is built here from a workspace and settings, never at import."""

from __future__ import annotations

import torch
from fastapi import FastAPI
from fastapi.routing import APIRoute

from datawheel.api.access_log import AccessLog
from datawheel.api.docs import install_docs
from datawheel.api.fast_predict import FastPredict
from datawheel.api.handlers import install_handlers
from datawheel.api.limits import BodyLimit
from datawheel.api.routes import (
    annotation,
    audit,
    chat,
    contributions,
    cycles,
    erasures,
    events,
    feedback,
    health,
    interactions,
    models,
    predict,
    trials,
    users,
)
from datawheel.api.services import build_services
from datawheel.settings import Settings, load_settings
from datawheel.version import __version__
from datawheel.web.app import WebFace, create_web
from datawheel.workspace import Workspace

ROUTERS = (predict, chat, interactions, feedback, contributions, users, erasures, annotation, cycles, models, trials,
           audit, events, health)


DESCRIPTION = """The user-data flywheel: predict, log, feedback, consent, erasure, cycles.

Every keyed route takes `Authorization: Bearer <key>`. Three keys open different routes: the **app key** (the
product's backend), the **annotator key** (the annotation queue) and the **admin key** (operators), which opens
every keyed route; each operation lists the keys it takes. Every refusal is `{error, detail}`."""


def _operation_id(route: APIRoute) -> str:
    """The route function's name (``predict``, ``list_cycles``): what generated clients call the method."""
    return route.name


def create_app(ws: Workspace, settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    torch.set_num_threads(1)  # serving answers one small request at a time; leave cores to training
    app = FastAPI(title="datawheel", version=__version__, generate_unique_id_function=_operation_id,
                  description=DESCRIPTION, docs_url=None, redoc_url=None)  # install_docs: no CDN
    services = build_services(ws, settings)
    app.state.services = services
    ws.record_policy(actor="server")
    install_handlers(app, services.telemetry)
    for module in ROUTERS:
        app.include_router(module.router)
    install_docs(app)
    # The web app (pages for users, operators, the community) answers its own paths, behind the body limit.
    app.add_middleware(FastPredict, api=app, services=services)  # innermost: answers POST /v1/predict before routing
    app.add_middleware(WebFace, web=create_web(services))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog, api=app)  # outermost: a 413 from the body limit is logged too
    return app
