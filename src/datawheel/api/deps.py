"""Dependencies shared by the routes: who is calling, and the workspace objects they act on.

Three keys: the *app* key (the product's backend, acting for its users), the
*admin* key (operators) and the *annotator* key (people labelling the annotation
queue, and nothing else). The admin key can do everything the others can.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from datawheel.models.serving import ModelServer
from datawheel.privacy.screen import Screen
from datawheel.wheel.runner import CycleRunner
from datawheel.workspace import Workspace

_bearer = HTTPBearer(auto_error=False)


def _role(request: Request, creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None:
        raise HTTPException(401, "missing key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    keys = request.app.state.keys
    given = creds.credentials.encode()
    if hmac.compare_digest(given, keys["admin"].encode()):
        return "admin"
    if hmac.compare_digest(given, keys["app"].encode()):
        return "app"
    if keys.get("annotator") and hmac.compare_digest(given, keys["annotator"].encode()):
        return "annotator"
    raise HTTPException(401, "invalid key", headers={"WWW-Authenticate": "Bearer"})


def app_role(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    role = _role(request, creds)
    if role == "annotator":
        raise HTTPException(403, "the annotator key only opens the annotation routes")
    return role


def annotator_role(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    role = _role(request, creds)
    if role not in ("admin", "annotator"):
        raise HTTPException(403, "this route needs the annotator or the admin key")
    return role


def admin_role(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    role = _role(request, creds)
    if role != "admin":
        raise HTTPException(403, "this route needs the admin key")
    return role


def _ws(request: Request) -> Workspace:
    return request.app.state.ws


def _server(request: Request) -> ModelServer:
    return request.app.state.server


def _runner(request: Request) -> CycleRunner:
    return request.app.state.runner


def _screen(request: Request) -> Screen:
    return request.app.state.screen


AppKey = Annotated[str, Depends(app_role)]
AdminKey = Annotated[str, Depends(admin_role)]
AnnotatorKey = Annotated[str, Depends(annotator_role)]
WorkspaceDep = Annotated[Workspace, Depends(_ws)]
ServerDep = Annotated[ModelServer, Depends(_server)]
RunnerDep = Annotated[CycleRunner, Depends(_runner)]
ScreenDep = Annotated[Screen, Depends(_screen)]
