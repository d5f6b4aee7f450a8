"""The running hub: HTTP API, delivery workers and scheduled jobs in one process."""
from __future__ import annotations

import logging
import threading

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler

from hub.api.app import create_app
from hub.delivery import DeliveryWorkers
from hub.errors import DeliveryError
from hub.polling import poll_partner, polling_partners
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
        self.app = create_app(self.hub, self.registry)
        self.workers = DeliveryWorkers(self.hub)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.scheduler.add_job(self.registry.resubmit_stalled, "interval", seconds=30, id="resubmit-stalled-cases",
                               max_instances=1, coalesce=True)
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
        self.hub.close()
