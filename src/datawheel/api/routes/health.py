"""Liveness and Prometheus metrics; no key needed, nothing personal exposed."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from datawheel.api.deps import ServerDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(server: ServerDep) -> dict:
    return {"status": "ok", "champion_version": server.current.version}


@router.get("/metrics")
def metrics(request: Request, server: ServerDep) -> Response:
    telemetry = request.app.state.telemetry
    telemetry.champion.set(server.current.version)
    return Response(telemetry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
