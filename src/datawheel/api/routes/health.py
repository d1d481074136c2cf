"""Liveness and Prometheus metrics; no key needed, nothing personal exposed."""

from __future__ import annotations

from fastapi import APIRouter, Response

from datawheel.api.deps import ServerDep, TelemetryDep
from datawheel.api.responses import HealthOut

router = APIRouter(tags=["health"])
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=HealthOut)
def healthz(server: ServerDep) -> HealthOut:
    return HealthOut(status="ok", champion_version=server.current.version)


@router.get("/metrics", response_class=Response,
            responses={200: {"description": "Prometheus text exposition format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(server: ServerDep, telemetry: TelemetryDep) -> Response:
    telemetry.champion.set(server.current.version)
    return Response(telemetry.render(), media_type=PROMETHEUS_TEXT)
