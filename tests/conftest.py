"""Shared fixtures: databases (SQLite and a real PostgreSQL), settings, a running hub, the NARSA sandbox.

PostgreSQL is used when HUB_TEST_POSTGRES_URL is set or 127.0.0.1:5432 answers; each test gets a
schema of its own so runs never collide. With HUB_REQUIRE_POSTGRES=1 (CI) a missing PostgreSQL is
a failure, not a skip.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from hub import pki
from hub.settings import PROJECT_ROOT, Settings

POSTGRES_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("HUB_REQUIRE_POSTGRES") == "1"


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_PG_PROBLEM = _postgres_available()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pki")
    pki.ensure_dev_pki(path, ["hub", "REGISTRY", "NARSA"])
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.sqlite'}"
        return
    if _PG_PROBLEM:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL required (HUB_REQUIRE_POSTGRES=1) but unreachable at {POSTGRES_URL}: {_PG_PROBLEM}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {_PG_PROBLEM}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def write_config(directory: Path, *, narsa_url: str, retry: dict | None = None) -> Path:
    """A copy of config/ with NARSA's endpoint and retry policy set for a test."""
    shutil.copytree(PROJECT_ROOT / "config", directory, dirs_exist_ok=True)
    partners = yaml.safe_load((directory / "partners.yaml").read_text())
    narsa = partners["parties"]["NARSA"]
    narsa["endpoint"] = f"{narsa_url}/narsa/v1/demandes-authentification"
    narsa["timeout_seconds"] = 5
    narsa["retry"] = retry or {"max_attempts": 6, "base_delay_seconds": 0.2, "max_delay_seconds": 1}
    (directory / "partners.yaml").write_text(yaml.safe_dump(partners, allow_unicode=True))
    return directory


@pytest.fixture
def narsa_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path, pki_dir, database_url, narsa_port) -> Settings:
    return Settings.from_env(var_dir=tmp_path / "var", pki_dir=pki_dir, database_url=database_url,
                             config_dir=write_config(tmp_path / "config", narsa_url=f"http://127.0.0.1:{narsa_port}"),
                             lease_seconds=5)


@pytest.fixture
def running_hub(settings):
    """The hub serving HTTP on a loopback port in this process, with its workers and scheduler."""
    from hub.server import HubService
    service = HubService(settings)
    port = free_port()
    service.serve_in_thread("127.0.0.1", port)
    service.url = f"http://127.0.0.1:{port}"
    yield service
    service.stop()


def wait_for(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Sandbox:
    def __init__(self, port: int, hub_url: str, pki_dir: Path, data_dir: Path):
        self.port, self.hub_url, self.pki_dir, self.data_dir = port, hub_url, pki_dir, data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Sandbox":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "narsa", "--port", str(self.port), "--hub-url", self.hub_url,
             "--pki-dir", str(self.pki_dir), "--data-dir", str(self.data_dir), "--answer-delay", "0.05"],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"sandbox exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(healthy, 30, what="NARSA sandbox")
        return self

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_sandbox/stats", timeout=5).json()

    def behave(self, **behaviour) -> None:
        httpx.post(f"{self.url}/_sandbox/behaviour", json=behaviour, timeout=5).raise_for_status()

    def received(self) -> list[Path]:
        return sorted(p for p in (self.data_dir / "NARSA" / "received").glob("*.xml") if not p.name.endswith(".ack.xml"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def sandbox_factory(tmp_path, pki_dir, narsa_port):
    started = []

    def start(hub_url: str) -> Sandbox:
        box = Sandbox(narsa_port, hub_url, pki_dir, tmp_path / "sandbox").start()
        started.append(box)
        return box
    yield start
    for box in started:
        box.stop()
