"""Liveness, readiness (database, every connector's check, certificates, the last poll of each polled
partner) and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from hub.intake.polling import polling_check
from hub.trust.certificates import EXPIRED, EXPIRING, NOT_YET_VALID, inventory, parties_without_valid_certificate
from hub.metrics import CertificateCollector
from hub.store.counts import outbox_depths

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request):
    """Alive; `leader` says whether this process runs the scheduled jobs (hub/cluster/leader.py)."""
    leadership = getattr(request.app.state, "leadership", None)
    return {"status": "ok", "leader": bool(leadership is not None and leadership.is_leader)}


@router.get("/readyz", responses={503: {"description": "Not ready: the same report, with the failing checks",
                                         "content": {"application/json": {}}}})
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
    checks["certificates"] = certificates_check(hub)
    checks["polling"] = polling_check(hub)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def certificates_check(hub) -> dict:
    """Not ready only when a party (or the hub) has no currently valid certificate; certificates
    expiring within HUB_CERTIFICATE_WARNING_DAYS, expired or not yet valid are listed either way."""
    statuses = inventory(hub)
    unusable = parties_without_valid_certificate(statuses)
    flagged = [s.as_dict() for s in statuses if s.status in (EXPIRING, EXPIRED, NOT_YET_VALID)]
    expiring = sum(s.status == EXPIRING for s in statuses)
    if unusable:
        detail = f"no valid certificate for {', '.join(unusable)}"
    elif flagged:
        detail = (f"{expiring} expiring within {hub.settings.certificate_warning_days} days, "
                  f"{len(flagged) - expiring} expired or not yet valid")
    else:
        detail = f"{len(statuses)} valid"
    return {"ok": not unusable, "detail": detail, "certificates": flagged}


class OutboxCollector:
    def __init__(self, hub):
        self.hub = hub

    def collect(self):
        gauge = GaugeMetricFamily("hub_outbox_pending", "Deliveries waiting in the outbox", labels=["partner"])
        try:
            with self.hub.sessions() as session:
                pending = outbox_depths(session)
        except Exception:
            pending = {}
        for partner in self.hub.config.parties:
            gauge.add_metric([partner], pending.get(partner, 0))
        yield gauge


@router.get("/metrics", response_class=Response,
            responses={200: {"description": "Prometheus text exposition format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics_endpoint(request: Request):
    # Certificates are read from this app's hub at each scrape (a registry of its own: the process-wide
    # one keeps the first hub's collectors, and tests build several hubs in one process).
    own = CollectorRegistry(auto_describe=False)
    own.register(CertificateCollector(request.app.state.hub))
    return Response(generate_latest(REGISTRY) + generate_latest(own), media_type=CONTENT_TYPE_LATEST)
