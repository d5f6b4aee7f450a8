"""The running hub: HTTP API, delivery workers and scheduled jobs in one process."""
from __future__ import annotations

import logging
import threading

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from hub.api.app import create_app
from hub.audit import record_configuration
from hub.delivery import DeliveryWorkers
from hub.errors import DeliveryError
from hub.evidence import seal_pending
from hub.polling import poll_partner, polling_partners
from hub.retention import purge_expired
from hub.runtime import Hub
from hub.tls import uvicorn_tls_options
from hub.settings import Settings
from registry.runtime import Registry

log = logging.getLogger("hub")


class HubService:
    """Assembles the hub, migrates the database, loads reference data, and runs until stopped."""

    def __init__(self, settings: Settings | None = None):
        self.hub = Hub(settings)
        self.hub.migrate()
        self.registry = Registry(self.hub)
        self.registry.load_reference_data()
        record_configuration(self.hub)
        self.app = create_app(self.hub, self.registry)
        self.workers = DeliveryWorkers(self.hub)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.scheduler.add_job(self.registry.resubmit_stalled, "interval", seconds=30, id="resubmit-stalled-cases",
                               max_instances=1, coalesce=True)
        # Evidence: new timeline and audit rows join their hash chains within a second (hub/evidence.py);
        # payloads past their retention are purged daily (hub/retention.py). Both are idempotent.
        self.scheduler.add_job(self.seal_now, "interval", seconds=1, id="seal-evidence", max_instances=1,
                               coalesce=True)
        self.scheduler.add_job(self._purge, "cron", hour=3, minute=30, id="retention-purge", max_instances=1,
                               coalesce=True)
        for partner, seconds in polling_partners(self.hub).items():
            self.scheduler.add_job(self._poll, "interval", args=[partner], seconds=seconds, id=f"poll-{partner}",
                                   max_instances=1, coalesce=True)
        for job_id, function, when in self.registry.scheduled_jobs():
            trigger = ("cron", when) if isinstance(when, dict) else ("interval", {"seconds": when})
            self.scheduler.add_job(function, trigger[0], id=job_id, max_instances=1, coalesce=True, **trigger[1])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _poll(self, partner: str) -> None:
        try:
            poll_partner(self.hub, partner)
        except DeliveryError as exc:  # the partner unreachable for now: the next interval tries again
            log.warning("polling %s: %s (will try again at the next interval)", partner, exc.reason)
        except Exception:  # a defect: keep polling on schedule, but show it whole
            log.exception("polling %s failed; will try again at the next interval", partner)

    def seal_now(self) -> dict[str, int]:
        """Seal pending evidence rows now (also the scheduled job); returns how many of each chain."""
        try:
            return seal_pending(self.hub)
        except Exception:  # the database away for a moment: the next run seals what is left
            log.exception("sealing the evidence chains failed; will try again in a second")
            return {}

    def _purge(self) -> None:
        try:
            purge_expired(self.hub)
        except Exception:
            log.exception("retention purge failed; will try again tomorrow (or run `hub evidence purge`)")

    def _uvicorn(self, host: str, port: int) -> uvicorn.Server:
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=5, **uvicorn_tls_options(self.hub.settings))
        self._server = uvicorn.Server(config)
        return self._server

    def start_background(self) -> None:
        self.workers.start()
        self.scheduler.start()

    def serve_forever(self, host: str, port: int) -> None:
        """Blocks until SIGINT/SIGTERM (uvicorn handles the signals)."""
        self.start_background()
        try:
            self._uvicorn(host, port).run()
        finally:
            self.stop()

    def serve_in_thread(self, host: str, port: int) -> None:
        self.start_background()
        server = self._uvicorn(host, port)
        server.install_signal_handlers = lambda: None  # the calling thread keeps its own handlers
        self._thread = threading.Thread(target=server.run, name="http", daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the hub's HTTP server could not start on {host}:{port}")
            threading.Event().wait(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.workers.stop()
        self.seal_now()  # what was written last is sealed before the process goes
        self.hub.close()
