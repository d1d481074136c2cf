"""The long-lived objects one app serves with, built together so they share one workspace and one telemetry.

They are made once per app, in ``create_app``, and reach routes only through
``api/deps.py``: a route states what it needs in its signature and never digs
in the app's state, so its needs are visible and a test can swap any of them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from datawheel.api.ingest import Ingest
from datawheel.api.telemetry import Telemetry
from datawheel.models.chat_serving import ChatServer
from datawheel.models.serving import ModelServer
from datawheel.privacy.screen import Screen
from datawheel.settings import Settings
from datawheel.tasks import GENERATION_TASK
from datawheel.wheel.runner import CycleRunner
from datawheel.workspace import Workspace


@dataclass(frozen=True)
class Keys:
    """The three bearer keys; the annotator key is optional (empty: no annotator can log in).

    Kept out of ``repr`` so a logged or printed ``Services`` never shows a key.
    """

    app: str = field(repr=False)
    admin: str = field(repr=False)
    annotator: str = field(default="", repr=False)

    def role_of(self, given: str) -> str | None:
        """The role a presented key opens, compared in constant time so timing cannot guess a key."""
        raw = given.encode()
        if hmac.compare_digest(raw, self.admin.encode()):
            return "admin"
        if hmac.compare_digest(raw, self.app.encode()):
            return "app"
        if self.annotator and hmac.compare_digest(raw, self.annotator.encode()):
            return "annotator"
        return None


@dataclass(frozen=True)
class Services:
    ws: Workspace
    settings: Settings
    telemetry: Telemetry
    server: ModelServer
    runner: CycleRunner
    screen: Screen
    keys: Keys
    ingest: Ingest


def build_services(ws: Workspace, settings: Settings) -> Services:
    telemetry = Telemetry()
    server: ModelServer
    if ws.config.workspace.task == GENERATION_TASK:
        server = ChatServer(ws, refresh_interval=settings.refresh_interval)
    else:
        server = ModelServer(ws, refresh_interval=settings.refresh_interval, runtime=settings.runtime)

    def on_finish(cycle: dict) -> None:
        telemetry.cycles.labels(cycle["status"], cycle["decision"] or "none").inc()

    runner = CycleRunner(ws, server, subprocess=settings.cycle_in_subprocess,
                         auto_every=settings.auto_cycle or ws.config.cycle.auto_every, on_finish=on_finish)
    screen = ws.screen(on_finding=lambda kind, action: telemetry.pii.labels(kind, action).inc())
    keys = Keys(app=settings.app_key or ws.secrets.app_key, admin=settings.admin_key or ws.secrets.admin_key,
                annotator=settings.annotator_key or ws.secrets.annotator_key)
    return Services(ws=ws, settings=settings, telemetry=telemetry, server=server, runner=runner, screen=screen,
                    keys=keys, ingest=Ingest(ws, screen, telemetry))
