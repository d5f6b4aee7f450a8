"""Shared fixtures: databases (SQLite and a real PostgreSQL), settings, a running hub, sandbox partners,
API tokens (`client` is an administrator; `api_token(role, ...)` and `client_as(role, ...)` for the others).

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

from hub.trust import pki
from hub.settings import PROJECT_ROOT, Settings

POSTGRES_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("HUB_REQUIRE_POSTGRES") == "1"
PARTIES = ["hub", "REGISTRY", "DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"]
PARTNERS = ["DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"]


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
    pki.ensure_dev_pki(path, PARTIES)
    pki.ensure_dev_ssh_keys(path)
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


FAST_RETRY = {"max_attempts": 6, "base_delay_seconds": 0.2, "max_delay_seconds": 1}


def write_config(directory: Path, *, retry: dict | None = None, narsa_url: str | None = None) -> Path:
    """A copy of config/ whose partners retry fast (a test's time is short) and time out in 5 s;
    `narsa_url` pins NARSA's address in the file itself (for processes that get no environment)."""
    shutil.copytree(PROJECT_ROOT / "config", directory, dirs_exist_ok=True)
    for path in (directory / "partners").glob("*.yaml"):
        party = yaml.safe_load(path.read_text(encoding="utf-8"))
        if party.get("transport") != "local":
            party["timeout_seconds"] = 5
            party["retry"] = retry or FAST_RETRY
        if path.stem == "NARSA" and narsa_url:
            party["connection"]["endpoint"] = f"{narsa_url}/narsa/v1"
        path.write_text(yaml.safe_dump(party, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return directory


@pytest.fixture
def partner_ports() -> dict[str, int]:
    """A free loopback port per partner (CDG's is its SFTP port)."""
    return {code: free_port() for code in PARTNERS}


@pytest.fixture
def narsa_port(partner_ports) -> int:
    return partner_ports["NARSA"]


def partner_environment(ports: dict[str, int]) -> dict[str, str]:
    """The variables config/partners/*.yaml read to find each partner on loopback."""
    env = {f"HUB_{code}_URL": f"http://127.0.0.1:{port}" for code, port in ports.items() if code != "CDG"}
    env["HUB_CDG_SFTP_PORT"] = str(ports["CDG"])
    return env


@pytest.fixture
def settings(tmp_path, pki_dir, database_url, partner_ports) -> Settings:
    return Settings.from_env(var_dir=tmp_path / "var", pki_dir=pki_dir, database_url=database_url,
                             config_dir=write_config(tmp_path / "config"), lease_seconds=5,
                             environment={**os.environ, **partner_environment(partner_ports)})


# hub base URL -> fn(role, post=None, partner=None) -> token, for the hubs a test runs (sandboxes that call
# a hub back get a partner token of that hub; a test running `hub serve` itself registers with `serve_tokens`)
TOKEN_MINTERS: dict[str, object] = {}


def token_minter(sessions):
    """fn(role, post=None, partner=None, expires_in_days=1) -> a new token string, created with `sessions`."""
    from hub.access.tokens import create_token

    def mint(role: str, post: str | None = None, partner: str | None = None, expires_in_days: float = 1) -> str:
        with sessions.begin() as session:
            return create_token(session, role=role, name=f"test {role} {post or partner or ''}".strip(),
                                created_by="tests", post_code=post, partner=partner,
                                expires_in_days=expires_in_days)[1]
    return mint


def serve_tokens(hub_url: str, database_url: str):
    """Register a hub run outside this process (`hub serve`) so sandboxes get tokens; returns its minter."""
    from hub.store.db import make_engine, make_sessionmaker
    mint = token_minter(make_sessionmaker(make_engine(database_url)))
    TOKEN_MINTERS[hub_url.rstrip("/")] = mint
    return mint


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def serve_hub(settings: Settings):
    """Yields the hub serving HTTP on a loopback port in this process, with its workers and scheduler;
    `.mint_token(role, post=None, partner=None)` makes API tokens for it. Stops it afterwards."""
    from hub.service import HubService
    service = HubService(settings)
    port = free_port()
    service.serve_in_thread("127.0.0.1", port)
    service.url = f"http://127.0.0.1:{port}"
    service.mint_token = token_minter(service.hub.sessions)
    TOKEN_MINTERS[service.url] = service.mint_token
    yield service
    TOKEN_MINTERS.pop(service.url, None)
    service.stop()


@pytest.fixture
def running_hub(settings):
    """The hub serving HTTP in this process (see `serve_hub`)."""
    yield from serve_hub(settings)


@pytest.fixture
def hub(settings):
    """The assembled hub in this process on a migrated database, without HTTP, workers or scheduler."""
    from hub.engine import Hub
    hub = Hub(settings)
    hub.migrate()
    yield hub
    hub.close()


@pytest.fixture
def api_token(running_hub):
    """api_token(role, post=None, partner=None) -> a token of the running hub ("hub_<id>_<secret>")."""
    return running_hub.mint_token


@pytest.fixture
def client(running_hub):
    """An HTTP client of the running hub's API, authenticated as an administrator."""
    with httpx.Client(base_url=running_hub.url, timeout=30,
                      headers=bearer(running_hub.mint_token("administrator"))) as c:
        yield c


@pytest.fixture
def anonymous(running_hub):
    """An HTTP client of the running hub without a token."""
    with httpx.Client(base_url=running_hub.url, timeout=30) as c:
        yield c


@pytest.fixture
def client_as(running_hub):
    """client_as(role, post=None, partner=None) -> an HTTP client of the running hub with a new token of
    that role (closed at the end of the test); its token is in `.token`."""
    clients = []

    def make(role: str, post: str | None = None, partner: str | None = None) -> httpx.Client:
        token = running_hub.mint_token(role, post=post, partner=partner)
        c = httpx.Client(base_url=running_hub.url, timeout=30, headers=bearer(token))
        c.token = token
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


def wait_for(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Sandbox:
    """A sandbox partner process (`python -m sandbox NAME ...`); `url` is its HTTP (control) address."""

    def __init__(self, port: int, hub_url: str, pki_dir: Path, data_dir: Path, *, name: str = "narsa",
                 extra_args: list[str] | None = None, http_port: int | None = None, token: str | None = None):
        self.port, self.hub_url, self.pki_dir, self.data_dir = port, hub_url, pki_dir, data_dir
        minter = TOKEN_MINTERS.get(hub_url.rstrip("/"))
        # the partner token its callbacks to the hub's /api carry (HUB_PARTNER_TOKEN)
        self.token = token or (minter("partner", partner=name.upper()) if minter else None)
        self.name, self.extra_args = name, list(extra_args or ["--answer-delay", "0.05"])
        self.url = f"http://127.0.0.1:{http_port or port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Sandbox":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", self.name, "--port", str(self.port), "--hub-url", self.hub_url,
             "--pki-dir", str(self.pki_dir), "--data-dir", str(self.data_dir), *self.extra_args],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **({"HUB_PARTNER_TOKEN": self.token} if self.token else {})})

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"sandbox exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(healthy, 30, what=f"{self.name} sandbox")
        return self

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/_sandbox/stats", timeout=5).json()

    def behave(self, **behaviour) -> dict:
        response = httpx.post(f"{self.url}/_sandbox/behaviour", json=behaviour, timeout=5)
        response.raise_for_status()
        return response.json()

    def received(self, partner: str = "NARSA") -> list[Path]:
        return sorted(p for p in (self.data_dir / partner / "received").glob("*.xml") if not p.name.endswith(".ack.xml"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def start_sandbox(tmp_path, pki_dir, partner_ports):
    """start_sandbox("dgsn", hub_url, extra_args=[...]) runs that partner's sandbox on its test port, with
    a partner token of that hub when the hub is one the test runs; every sandbox started is stopped at
    the end of the test."""
    started = []

    def start(name: str, hub_url: str, *, extra_args: list[str] | None = None, http_port: int | None = None,
              token: str | None = None) -> Sandbox:
        port = partner_ports[name.upper()]
        box = Sandbox(port, hub_url, pki_dir, tmp_path / "sandbox", name=name, extra_args=extra_args,
                      http_port=http_port, token=token).start()
        started.append(box)
        return box
    yield start
    for box in started:
        box.stop()


@pytest.fixture
def sandbox_factory(start_sandbox):
    """The NARSA sandbox, answering 0.05 s after acknowledging."""
    return lambda hub_url: start_sandbox("narsa", hub_url)
