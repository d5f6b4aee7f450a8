"""The running hub: HTTP API, delivery workers and scheduled jobs in one process, and the composition root.

This is the one module of hub/ that names the apps the hub runs (`INSTALLED_APPS`; hub/apps.py is their
contract): it builds the engine, builds each app on it, and wires what they contribute (routers, jobs,
local consumers, dead-letter hooks, reference data, tables for the migrations). Everything else in hub/
knows apps only through that contract, and connectors only through theirs (connectors/base.py).

Several processes may run on one database: each serves the API and runs delivery workers (claims
with leases and `FOR UPDATE SKIP LOCKED`), while the scheduled jobs run only in the one that leads
(hub/cluster/leader.py). `hub_scheduled_job_runs_total{job,outcome}` counts the runs in this process.
A process may also take one role only (`role`): "api" serves the API and delivers nothing, waking the
delivery processes after each commit (hub/cluster/wake.py); "delivery" runs the delivery workers and no
HTTP server (`hub serve --processes N --delivery-processes M`, hub/cluster/processes.py). Every role is a
candidate for leading the scheduled jobs.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from functools import partial
from typing import Callable, Sequence

import uvicorn
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError

from hub.api.app import create_app
from hub.api.server import uvicorn_options
from hub.apps import App, Job, install
from hub.evidence.audit import record_configuration
from hub.delivery.workers import DeliveryWorkers
from hub.errors import DeliveryError, HubError, TryLater, first_line
from hub.evidence.chains import seal_pending, write_checkpoint
from hub.cluster.leader import Leadership, startup_lock
from hub.cluster.wake import WakeListener, WakeSender, address
from hub.intake.polling import poll_partner, polling_partners
from hub.evidence.retention import purge_expired
from hub.engine import Hub
from hub.monitor.alerts import evaluate, overdue_sources
from hub.monitor.notify import configured_notifiers
from hub.trust.tls import uvicorn_tls_options
from hub.settings import Settings
from hub.store import statistics
from registry.app import Registry

# The apps this hub runs, each built as `cls(hub)`: the consular registry (registry/app.py).
INSTALLED_APPS: tuple[Callable[[Hub], App], ...] = (Registry,)

log = logging.getLogger("hub")

JOB_RUNS = Counter("hub_scheduled_job_runs_total", "Scheduled job runs in this process (only the leader runs them)",
                   ["job", "outcome"])


def _count_run(event) -> None:
    """A run that raised, or whose job returned False (it failed and said so itself), counts as an error."""
    failed = event.exception is not None or getattr(event, "retval", None) is False
    JOB_RUNS.labels(event.job_id, "error" if failed else "ok").inc()


def reusable_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def app_metadata(apps: Sequence = INSTALLED_APPS) -> list:
    """The SQLAlchemy metadata of the apps' tables (read from the app classes: nothing is built)."""
    return [app.metadata for app in apps if app.metadata is not None]


def app_samples(apps: Sequence = INSTALLED_APPS) -> dict:
    """`hub sample` builders the apps contribute: message type -> fn(settings) -> bytes."""
    return {message_type: build for app in apps for message_type, build in app.samples.items()}


ROLES = ("all", "api", "delivery")


class HubService:
    """Assembles the hub and its apps, migrates the database, loads reference data, and runs until stopped.

    `apps`: what to build on the engine (default INSTALLED_APPS); each is then `service.apps[name]`."""

    def __init__(self, settings: Settings | None = None, *, apps: Sequence[Callable[[Hub], App]] = INSTALLED_APPS,
                 role: str = "all", delivery_slot: int = 0):
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (the roles: {', '.join(ROLES)})")
        self.hub = Hub(settings)
        self.role, self.delivery_slot = role, delivery_slot
        self._wake_listener: WakeListener | None = None
        if role == "api" and self.hub.settings.delivery_processes:
            self.hub.wake_elsewhere = WakeSender([self._wake_address(slot)
                                                  for slot in range(self.hub.settings.delivery_processes)])
        self.apps: dict[str, App] = {}
        for factory in apps:
            app = factory(self.hub)
            if not isinstance(app, App):
                raise TypeError(f"{factory!r} does not build an app (hub.apps.App)")
            install(self.hub, app)
            self.apps[app.name] = app
        with startup_lock(self.hub.settings.database_url):  # processes started together take turns
            self.hub.migrate(metadata=app_metadata(apps))
            for app in self.apps.values():
                app.load_reference_data()
            record_configuration(self.hub)
        self.app = create_app(self.hub, list(self.apps.values()))
        self.workers = DeliveryWorkers(self.hub)
        self.app.state.breakers = self.workers.breakers  # this process's circuits, for the monitor's overview
        self.notifiers = configured_notifiers(self.hub.settings)  # alert e-mails and webhook (hub/monitor/notify.py)
        # Scheduled jobs run only in the leader among the hub processes on this database (hub/cluster/leader.py):
        # they are added when this process becomes the leader and removed when it stops leading.
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.scheduler.add_listener(_count_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        self.jobs: list[Job] = [
            # Evidence: new timeline and audit rows join their hash chains within a second (hub/evidence/chains.py),
            # the chains' heads are checkpointed, signed, to files outside the database every few minutes
            # (hub/evidence/checkpoints.py); payloads past their retention are purged daily
            # (hub/evidence/retention.py). All are idempotent.
            Job("seal-evidence", self.seal_now, every_seconds=1),
            Job("checkpoint-evidence", self.checkpoint_now,
                every_seconds=self.hub.settings.evidence_checkpoint_seconds),
            Job("retention-purge", self._purge, cron={"hour": 3, "minute": 30}),
            # Alerts: the rules evaluated, raised and cleared alerts recorded, new ones notified
            # (hub/monitor/alerts.py); idempotent, and a failed notification is tried again at the next run.
            Job("evaluate-alerts", self.evaluate_alerts, every_seconds=self.hub.settings.alert_evaluate_seconds),
        ]
        if self.hub.engine.dialect.name == "postgresql":
            # The planner's statistics kept as autovacuum would, autovacuum on or off (hub/store/statistics.py).
            self.jobs.append(Job("planner-statistics", self.refresh_statistics,
                                 every_seconds=statistics.EVERY_SECONDS))
        for partner, seconds in polling_partners(self.hub).items():
            self.jobs.append(Job(f"poll-{partner}", partial(self._poll, partner), every_seconds=seconds))
        for app in self.apps.values():
            self.jobs.extend(app.jobs())
        twice = {job.id for job in self.jobs if sum(other.id == job.id for other in self.jobs) > 1}
        if twice:
            raise ValueError(f"scheduled job ids must be unique; given more than once: {', '.join(sorted(twice))}")
        self.leadership = Leadership(self.hub.settings.database_url, retry_seconds=self.hub.settings.leader_retry_seconds,
                                     on_gain=self._add_jobs, on_loss=self._remove_jobs)
        self.app.state.leadership = self.leadership
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _add_jobs(self) -> None:
        for job in self.jobs:
            trigger, when = job.trigger
            self.scheduler.add_job(job.run, trigger, id=job.id, max_instances=1, coalesce=True,
                                   replace_existing=True, **when)

    def _remove_jobs(self) -> None:
        """Runs already under way finish; no new run starts in this process."""
        self.scheduler.remove_all_jobs()

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    def _poll(self, partner: str) -> bool:
        """One scheduled poll; False (counted as an error run) when it failed or left a file it could not handle."""
        try:
            counts = poll_partner(self.hub, partner)
        except DeliveryError as exc:  # the partner unreachable for now: the next interval tries again
            log.warning("polling %s: %s (will try again at the next interval)", partner, exc.reason)
        except TryLater as exc:  # back-pressure: the file stays on the server for the next poll
            log.warning("polling %s: %s (the file stays for the next interval)", partner, exc)
        except Exception:  # a defect: keep polling on schedule, but show it whole
            log.exception("polling %s failed; will try again at the next interval", partner)
        else:
            return counts["failed"] == 0
        return False

    def seal_now(self) -> dict[str, int]:
        """Seal pending evidence rows now (also the scheduled job); returns how many of each chain."""
        try:
            return seal_pending(self.hub)
        except DBAPIError as exc:  # the database away for a moment: the next run seals what is left
            log.warning("sealing the evidence chains failed (%s); will try again in a second", first_line(exc))
            return {}
        except Exception:
            log.exception("sealing the evidence chains failed; will try again in a second")
            return {}

    def checkpoint_now(self) -> str:
        """Append a signed checkpoint of the chains' heads (also the scheduled job); returns its line. A
        checkpoint the chains contradict is not written: the error is logged and the job's run counts as one."""
        try:
            return write_checkpoint(self.hub)
        except HubError as exc:
            log.error("evidence checkpoint: %s", exc)
            raise

    def evaluate_alerts(self) -> bool:
        """Evaluate the alert rules now (also the scheduled job); False when the run or a notification failed."""
        return evaluate(self.hub, overdue=overdue_sources(self.app.state.console_parts), notifiers=self.notifiers).ok

    def refresh_statistics(self) -> list[str]:
        """ANALYZE the tables that changed enough since their last analysis (also the scheduled job)."""
        try:
            return statistics.refresh(self.hub.engine)
        except DBAPIError as exc:  # the database away for a moment: the next run looks again
            log.warning("planner statistics: looking for tables to analyse failed (%s)", first_line(exc))
            return []

    def _purge(self) -> None:
        try:
            purge_expired(self.hub)
        except Exception:
            log.exception("retention purge failed; will try again tomorrow (or run `hub evidence purge`)")

    def _uvicorn(self, host: str, port: int) -> uvicorn.Server:
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=5, **uvicorn_options(self.hub.settings),
                                **uvicorn_tls_options(self.hub.settings))
        self._server = uvicorn.Server(config)
        return self._server

    def _wake_address(self, slot: int) -> str | None:
        return address(self.hub.settings.var_dir, slot)

    def _listen_for_wake_ups(self) -> None:
        """A delivery process listens for the API's wake-ups; if it cannot, it finds work at its polls."""
        path = self._wake_address(self.delivery_slot)
        try:
            if path is None:
                raise OSError(f"the path of its socket under {self.hub.settings.var_dir} is too long")
            self._wake_listener = WakeListener(path, self.hub.wake_workers)
        except OSError as exc:
            log.warning("delivery process %d cannot listen for wake-ups (%s): it looks for work every %g s",
                        self.delivery_slot, exc, self.hub.settings.poll_interval_seconds)
            return
        self._wake_listener.start()

    def start_background(self) -> bool:
        """Starts the delivery workers (unless this process only serves the API) and the (empty) scheduler, then
        tries to lead; returns whether it leads."""
        if self.role != "api":
            self.workers.start()
        if self.role == "delivery":
            self._listen_for_wake_ups()
        self.scheduler.start()
        return self.leadership.start()

    def deliver_forever(self) -> None:
        """A delivery process (role "delivery"): delivers and takes part in leading until SIGINT/SIGTERM, at
        a lower CPU priority than the API processes (HUB_DELIVERY_NICENESS)."""
        os.nice(self.hub.settings.delivery_niceness)
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        self.start_background()
        try:
            while not stopping.wait(1):
                pass
        finally:
            self.stop()

    def serve_forever(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Blocks until SIGINT/SIGTERM (uvicorn handles the signals). `reuse_port`: bind with SO_REUSEPORT,
        sharing the port with the other processes of `hub serve --processes N` (hub/cluster/processes.py)."""
        self.start_background()
        try:
            server = self._uvicorn(host, port)
            server.run(sockets=[reusable_socket(host, port)] if reuse_port else None)
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
        self.leadership.stop()  # another process can lead (and run the jobs) from now on
        if self._wake_listener is not None:
            self._wake_listener.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.workers.stop()
        self.seal_now()  # what was written last is sealed before the process goes
        self.hub.close()
