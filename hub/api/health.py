"""Liveness, readiness (database and every connector's check) and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from hub.outbox import depth

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request):
    hub = request.app.state.hub
    checks = {}
    try:
        with hub.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "detail": hub.engine.dialect.name}
    except Exception as exc:  # any database failure means not ready
        checks["database"] = {"ok": False, "detail": type(exc).__name__}
    for code, connector in hub.connectors.items():
        health = connector.check()
        checks[code] = {"ok": health.ok, "detail": health.detail}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


class OutboxCollector:
    def __init__(self, hub):
        self.hub = hub

    def collect(self):
        gauge = GaugeMetricFamily("hub_outbox_pending", "Deliveries waiting in the outbox", labels=["partner"])
        try:
            with self.hub.sessions() as session:
                pending = depth(session)
        except Exception:
            pending = {}
        for partner in self.hub.config.parties:
            gauge.add_metric([partner], pending.get(partner, 0))
        yield gauge


@router.get("/metrics")
def metrics_endpoint():
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
