"""What a route may ask for in its signature: who is calling, and the app's long-lived objects.

Three keys: the *app* key (the product's backend, acting for its users), the
*admin* key (operators) and the *annotator* key (people labelling the annotation
queue, and nothing else). The admin key can do everything the others can.

All three arrive the same way (``Authorization: Bearer <key>``) and the key
itself says which role it opens. ``/openapi.json`` still names one security
scheme per key (``appKey``, ``adminKey``, ``annotatorKey``), and each operation
lists the schemes that open it, so a reader and a generated client see which key
a route takes.

This module is the only reader of ``app.state``; routes name a typed alias
(``WorkspaceDep``, ``AdminKey``...) and FastAPI resolves it once per request.
Every dependency here is ``async def`` though none awaits: FastAPI runs a plain
``def`` dependency in its threadpool, one thread hop each, which cost more than
the rest of a prediction under load. They must stay quick and never block.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from datawheel.api.ingest import Ingest
from datawheel.api.schemas import UserPath
from datawheel.api.services import Services
from datawheel.api.telemetry import Telemetry
from datawheel.models.serving import ModelServer
from datawheel.privacy.screen import Screen
from datawheel.wheel.runner import CycleRunner
from datawheel.workspace import Workspace

_ADMIN_TOO = " The admin key opens these routes too."
# auto_error=False: a missing key is answered by _role, in the API's {error, detail} shape
_app_scheme = HTTPBearer(scheme_name="appKey", auto_error=False, description=(
    "The app key: the product's backend, acting for its users (predict, log, feedback, consent, export, "
    "erasure)." + _ADMIN_TOO))
_admin_scheme = HTTPBearer(scheme_name="adminKey", auto_error=False, description=(
    "The admin key: operators (cycles, models, trials, the audit log); it opens every keyed route."))
_annotator_scheme = HTTPBearer(scheme_name="annotatorKey", auto_error=False, description=(
    "The annotator key: the annotation queue and nothing else." + _ADMIN_TOO))


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]
# One header, read through each scheme a route lists: the scheme a key is read through says nothing about it.
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_scheme)]
AppCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_app_scheme)]
AnnotatorCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_annotator_scheme)]


def _role(services: Services, creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None:
        raise HTTPException(401, "missing key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    role = services.keys.role_of(creds.credentials)
    if role is None:
        raise HTTPException(401, "invalid key", headers={"WWW-Authenticate": "Bearer"})
    return role


async def app_role(services: ServicesDep, creds: AppCredentials, _: AdminCredentials) -> str:
    role = _role(services, creds)
    if role == "annotator":
        raise HTTPException(403, "the annotator key only opens the annotation routes")
    return role


async def annotator_role(services: ServicesDep, creds: AnnotatorCredentials, _: AdminCredentials) -> str:
    role = _role(services, creds)
    if role not in ("admin", "annotator"):
        raise HTTPException(403, "this route needs the annotator or the admin key")
    return role


async def admin_role(services: ServicesDep, creds: AdminCredentials) -> str:
    role = _role(services, creds)
    if role != "admin":
        raise HTTPException(403, "this route needs the admin key")
    return role


async def _ws(s: ServicesDep) -> Workspace:
    return s.ws


async def _server(s: ServicesDep) -> ModelServer:
    return s.server


async def _runner(s: ServicesDep) -> CycleRunner:
    return s.runner


async def _screen(s: ServicesDep) -> Screen:
    return s.screen


async def _telemetry(s: ServicesDep) -> Telemetry:
    return s.telemetry


async def _ingest(s: ServicesDep) -> Ingest:
    return s.ingest


async def _user_id(user_id: UserPath, s: ServicesDep) -> str:
    return s.screen.check_user_id(user_id)


AppKey = Annotated[str, Depends(app_role)]
AdminKey = Annotated[str, Depends(admin_role)]
AnnotatorKey = Annotated[str, Depends(annotator_role)]
WorkspaceDep = Annotated[Workspace, Depends(_ws)]
ServerDep = Annotated[ModelServer, Depends(_server)]
RunnerDep = Annotated[CycleRunner, Depends(_runner)]
ScreenDep = Annotated[Screen, Depends(_screen)]
TelemetryDep = Annotated[Telemetry, Depends(_telemetry)]
IngestDep = Annotated[Ingest, Depends(_ingest)]
#: the ``{user_id}`` of a path, matched by the pattern and refused when it looks like personal data;
#: declare it after the key, so an unauthenticated caller learns nothing about the ids it tries
UserIdPath = Annotated[str, Depends(_user_id)]
