"""The running service is the engine plus apps (hub/apps.py): what an app declares is wired, and the
engine runs without the registry when it is not installed."""
from __future__ import annotations

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from hub.apps import App, Job
from hub.service import INSTALLED_APPS, HubService, app_metadata, app_samples
from registry.app import Registry


class NoticeBoard:
    """A small app: one route, one job, one dead-letter hook, reference data counted."""

    name = "notices"
    metadata = None
    samples = {"Notice": lambda settings: b"<Notice/>"}

    def __init__(self, hub):
        self.hub, self.loaded, self.dead = hub, 0, []

    def routers(self):
        router = APIRouter()

        @router.get("/notices")
        def notices(request: Request):
            return {"app": request.app.state.notices.name, "loaded": request.app.state.notices.loaded}
        return [router]

    def jobs(self):
        return [Job("notices-tidy", lambda: None, every_seconds=60)]

    def local_consumers(self):
        return {}

    def dead_letter_hooks(self):
        return [lambda *dead: self.dead.append(dead)]

    def load_reference_data(self):
        self.loaded += 1


def test_an_app_contributes_its_routes_jobs_hooks_and_reference_data_and_the_registry_is_one_app(settings):
    assert isinstance(NoticeBoard(None), App)
    service = HubService(settings, apps=(NoticeBoard,))
    try:
        board = service.apps["notices"]
        assert list(service.apps) == ["notices"] and board.loaded == 1
        jobs = {job.id for job in service.jobs}
        assert {"notices-tidy", "seal-evidence", "checkpoint-evidence", "retention-purge", "poll-CDG"} <= jobs
        assert "resubmit-stalled-cases" not in jobs                    # the registry's, not installed
        [checkpoint] = [job for job in service.jobs if job.id == "checkpoint-evidence"]
        assert checkpoint.every_seconds == settings.evidence_checkpoint_seconds == 300
        line = service.checkpoint_now()                                # what the leader's job appends
        assert (settings.var_dir / "evidence" / "checkpoints.log").read_text() == line
        assert service.hub.chained_histories == [] and [c.name for c in Registry.chains] == ["cases"]
        assert len(service.hub.dead_letter_listeners) == 1
        assert service.hub.resend_listeners == []  # resend_hooks() is optional: this app has nothing to reopen
        with TestClient(service.app) as http:
            assert http.get("/notices").json() == {"app": "notices", "loaded": 1}
            assert http.get("/healthz").status_code == 200
            assert http.get("/api/v1/posts").status_code in (401, 404)   # no registry API without the registry
    finally:
        service.hub.close()
    assert app_samples((NoticeBoard,)) == {"Notice": NoticeBoard.samples["Notice"]}
    assert app_metadata((NoticeBoard,)) == []
    assert "LicenceAuthenticationRequest" in app_samples(INSTALLED_APPS)


def test_a_job_runs_either_every_n_seconds_or_at_cron_fields():
    assert Job("a", print, every_seconds=5).trigger == ("interval", {"seconds": 5})
    assert Job("b", print, cron={"hour": 2}).trigger == ("cron", {"hour": 2})
    for wrong in ({}, {"every_seconds": 5, "cron": {"hour": 2}}):
        with pytest.raises(ValueError):
            Job("c", print, **wrong)


def test_a_job_run_that_returns_false_counts_as_an_error():
    """A scheduled poll that failed says so by returning False (hub/service.py's `_poll`): /metrics shows an error."""
    from types import SimpleNamespace
    from hub.service import JOB_RUNS, _count_run

    def runs(outcome: str) -> float:
        return JOB_RUNS.labels("poll-TEST", outcome)._value.get()
    before = runs("error"), runs("ok")
    _count_run(SimpleNamespace(job_id="poll-TEST", exception=None, retval=False))
    _count_run(SimpleNamespace(job_id="poll-TEST", exception=RuntimeError("x"), retval=None))
    _count_run(SimpleNamespace(job_id="poll-TEST", exception=None, retval={"sealed": 0}))
    assert (runs("error"), runs("ok")) == (before[0] + 2, before[1] + 1)
