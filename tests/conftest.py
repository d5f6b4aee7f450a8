"""Shared fixtures: databases (SQLite and a real PostgreSQL), settings, a running hub, sandbox partners,
API tokens (`client` is an administrator; `api_token(role, ...)` and `client_as(role, ...)` for the others).

Databases. `database_url` is a database of the test's own, already migrated to the newest revision (a
copy of a template migrated once per session: a file copy on SQLite, CREATE DATABASE ... TEMPLATE on
PostgreSQL); `@pytest.mark.empty_database` gives an empty one instead. Tests run on SQLite; those whose
subject is storage (claims, leases, the leader, sealing, group commit, retention, search, faults,
migrations) say `@pytest.mark.both_databases` and run on PostgreSQL too, as every test does when
HUB_TEST_DATABASES=both (`make test-full`). PostgreSQL is used when HUB_TEST_POSTGRES_URL is set or
127.0.0.1:5432 answers; with HUB_REQUIRE_POSTGRES=1 (CI) a missing PostgreSQL is a failure, not a skip.

One hub per module. In a module marked `pytestmark = pytest.mark.shared_hub`, the tests share one
database, one `settings`, one set of `partner_ports` and one `running_hub` (per database kind), started
at the module's first use and stopped after its last test: each test must use data of its own (its own
message ids and references) and must not change what the others read. A test that does, or that needs
a fresh hub (counts everything in a table, restarts the hub, edits the configuration), says
`@pytest.mark.private_hub` and gets its own as before. Modules without the marker get a hub per test.
"""
from __future__ import annotations

import itertools
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url

from hub.trust import pki
from hub.settings import PROJECT_ROOT, Settings

# The real browser's fixtures (browser, browser_context, browser_page): one Chromium per worker, whichever
# test files use it.
pytest_plugins = ["browser_support"]

POSTGRES_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("HUB_REQUIRE_POSTGRES") == "1"
EVERY_TEST_ON_BOTH = os.environ.get("HUB_TEST_DATABASES", "") == "both"
PARTIES = ["hub", "REGISTRY", "DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"]
PARTNERS = ["DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"]

# Generated tests (hypothesis): `make test` runs the "ci" profile; `make test-full` the "full" one, ten times
# the examples. A test's own @settings(max_examples=...) is scaled with `examples(n)`.
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True)
hypothesis_settings.register_profile("full", deadline=None, derandomize=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
EXAMPLES_SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "full" else 1


def examples(n: int) -> int:
    """`n` examples under `make test`, ten times as many under `make test-full`."""
    return n * EXAMPLES_SCALE


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


_PG_PROBLEM = _postgres_available()


# Each pytest-xdist worker hands out ports from a block of its own below Linux's ephemeral range (32768-60999),
# where the kernel never picks one for another process's bind to port 0 or outgoing connection: a port given
# to a test cannot be taken by another worker between the test learning it and its server binding it.
_PORT_BLOCK = 1500
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % 8  # 8 blocks below 32768
_next_ports = itertools.cycle(range(20000 + _WORKER * _PORT_BLOCK, 20000 + (_WORKER + 1) * _PORT_BLOCK))


def free_port() -> int:
    """A loopback port nothing listens on, from this worker's block (one still in use is skipped)."""
    for _ in range(_PORT_BLOCK):
        port = next(_next_ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in this worker's block of {_PORT_BLOCK}")


def pytest_generate_tests(metafunc):
    """`database_url` is SQLite, plus PostgreSQL for `both_databases` tests (every test with
    HUB_TEST_DATABASES=both), unless the test parametrizes it itself or its module defines its own."""
    if "database_url" not in metafunc.fixturenames:
        return
    if any("database_url" in _argnames(m) for m in metafunc.definition.iter_markers("parametrize")):
        return
    definitions = metafunc._arg2fixturedefs.get("database_url") or []
    if not definitions or definitions[-1].func.__module__ != __name__:
        return
    both = EVERY_TEST_ON_BOTH or metafunc.definition.get_closest_marker("both_databases") is not None
    metafunc.parametrize("database_url", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True)


def _argnames(mark) -> list[str]:
    names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
    return [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pki")
    pki.init_dev_keys(path, PARTIES)  # what `hub dev init` makes: the hub never makes a key itself
    return path


class Databases:
    """New databases for tests, each a copy of a template migrated once (per session and database kind)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.sqlite_template: Path | None = None
        self.postgres_template: str | None = None
        self.dropper = _Dropper()

    @staticmethod
    def require_postgres() -> None:
        if _PG_PROBLEM:
            if REQUIRE_POSTGRES:
                pytest.fail(f"PostgreSQL required (HUB_REQUIRE_POSTGRES=1) but unreachable at {POSTGRES_URL}: "
                            f"{_PG_PROBLEM}")
            pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {_PG_PROBLEM}")

    def create(self, kind: str, directory: Path, *, empty: bool = False):
        """(url, drop): a new database of `kind` ("sqlite" or "postgresql"), migrated unless `empty`."""
        if kind == "sqlite":
            path = directory / "hub.sqlite"
            if not empty:
                shutil.copyfile(self._sqlite_template(), path)
            return f"sqlite:///{path}", lambda: None
        self.require_postgres()
        name = f"t_{uuid.uuid4().hex[:16]}"
        template = "" if empty else f' TEMPLATE "{self._postgres_template()}"'
        _create_postgres_database(name, template)
        return _postgres_url(name), lambda: self.dropper.drop(name)

    def _sqlite_template(self) -> Path:
        if self.sqlite_template is None:
            path = self.directory / "template.sqlite"
            _migrate(f"sqlite:///{path}")
            self.sqlite_template = path
        return self.sqlite_template

    def _postgres_template(self) -> str:
        if self.postgres_template is None:
            name = f"template_{uuid.uuid4().hex[:16]}"
            _create_postgres_database(name, "")
            _migrate(_postgres_url(name))
            self.postgres_template = name
        return self.postgres_template

    def close(self) -> None:
        if self.postgres_template:
            self.dropper.drop(self.postgres_template)
        self.dropper.close()


class _Dropper:
    """Drops PostgreSQL databases in a thread of its own: a DROP DATABASE takes a second or more (PostgreSQL
    removes and syncs the files), which the next test need not wait for."""

    def __init__(self):
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.thread: threading.Thread | None = None

    def drop(self, name: str) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="drop-test-databases", daemon=True)
            self.thread.start()
        self.queue.put(name)

    def _run(self) -> None:
        while (name := self.queue.get()) is not None:
            try:
                _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as exc:  # left behind, said once; the next drops go on
                print(f"could not drop test database {name}: {exc}", file=sys.stderr)

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()


def _create_postgres_database(name: str, template: str) -> None:
    """CREATE DATABASE; its sessions commit without waiting for the WAL flush (synchronous_commit off: only
    a crash of PostgreSQL itself, which no test causes, could lose the last commits; everything else about
    a transaction is unchanged), which takes a commit from milliseconds to a tenth of one on this disk."""
    _postgres_admin(f'CREATE DATABASE "{name}"{template}')
    _postgres_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


def _postgres_url(database: str) -> str:
    return make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


def _postgres_admin(statement: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(statement)


def _migrate(url: str) -> None:
    from hub.store.db import make_engine, migrate
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()  # a template must have no connection left (PostgreSQL copies only an idle one)


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    """Makes the tests' databases (`database_url`); `databases.create(kind, directory, empty=False)`."""
    made = Databases(tmp_path_factory.mktemp("templates"))
    yield made
    made.close()


def shares_hub(request) -> bool:
    """Whether this test uses its module's shared hub (see the module docstring)."""
    node = request.node
    return node.get_closest_marker("shared_hub") is not None and node.get_closest_marker("private_hub") is None


class ModuleHub:
    """What the tests of a shared_hub module share: a database per kind, and on each database its partner
    ports, settings and running hub, each made at its first use and undone after the module.

    The ports are the database's own: both hubs run until the module ends, and a sandbox a test starts for one
    must not take the other's deliveries still waiting (its answers would then reach the wrong hub, and a
    sandbox started later, numbering its answers afresh, would repeat their ids)."""

    def __init__(self, directory: Path, databases: Databases, pki_dir: Path):
        self.directory, self.databases, self.pki_dir = directory, databases, pki_dir
        self.urls: dict[str, str] = {}
        self.ports: dict[str, dict[str, int]] = {}
        self.settings: dict[str, Settings] = {}
        self.services: dict[str, object] = {}
        self.undo: list = []

    def database_url(self, kind: str) -> str:
        if kind not in self.urls:
            directory = self.directory / kind
            directory.mkdir(exist_ok=True)
            self.urls[kind], drop = self.databases.create(kind, directory)
            self.undo.append(drop)
        return self.urls[kind]

    def partner_ports(self, database_url: str) -> dict[str, int]:
        if database_url not in self.ports:
            self.ports[database_url] = {code: free_port() for code in PARTNERS}
        return self.ports[database_url]

    def settings_for(self, database_url: str) -> Settings:
        if database_url not in self.settings:
            directory = self.directory / f"hub-{len(self.settings)}"
            self.settings[database_url] = make_settings(directory, self.pki_dir, database_url,
                                                        self.partner_ports(database_url))
        return self.settings[database_url]

    def running_hub(self, settings: Settings):
        if settings.database_url not in self.services:
            serving = serve_hub(settings)
            self.services[settings.database_url] = next(serving)
            self.undo.append(lambda: next(serving, None))
        return self.services[settings.database_url]

    def close(self) -> None:
        for undo in reversed(self.undo):
            undo()


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory, databases, pki_dir):
    """The module's shared database, settings and running hub (used by the fixtures below in shared_hub
    modules; a test rarely needs it by name)."""
    shared = ModuleHub(tmp_path_factory.mktemp("module"), databases, pki_dir)
    yield shared
    shared.close()


@pytest.fixture
def database_url(request, tmp_path, databases):
    """The URL of a migrated database of this test's own (its module's in a shared_hub module)."""
    kind = getattr(request, "param", "sqlite")
    if shares_hub(request):
        yield request.getfixturevalue("module_hub").database_url(kind)
        return
    url, drop = databases.create(kind, tmp_path, empty=request.node.get_closest_marker("empty_database") is not None)
    yield url
    drop()


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
def partner_ports(request) -> dict[str, int]:
    """A free loopback port per partner (CDG's is its SFTP port)."""
    if shares_hub(request):
        return request.getfixturevalue("module_hub").partner_ports(request.getfixturevalue("database_url"))
    return {code: free_port() for code in PARTNERS}


@pytest.fixture
def narsa_port(partner_ports) -> int:
    return partner_ports["NARSA"]


def partner_environment(ports: dict[str, int]) -> dict[str, str]:
    """The variables config/partners/*.yaml read to find each partner on loopback."""
    env = {f"HUB_{code}_URL": f"http://127.0.0.1:{port}" for code, port in ports.items() if code != "CDG"}
    env["HUB_CDG_SFTP_PORT"] = str(ports["CDG"])
    return env


def make_settings(directory: Path, pki_dir: Path, database_url: str, partner_ports: dict[str, int]) -> Settings:
    return Settings.from_env(var_dir=directory / "var", pki_dir=pki_dir, database_url=database_url,
                             config_dir=write_config(directory / "config"), lease_seconds=5, breaker_seconds=2,
                             environment={**os.environ, **partner_environment(partner_ports)})


@pytest.fixture
def settings(request, tmp_path, pki_dir, database_url, partner_ports) -> Settings:
    """The hub's settings: var/ and a fast-retrying copy of config/ under tmp_path (the module's directory
    in a shared_hub module), the partners on `partner_ports`."""
    if shares_hub(request):
        return request.getfixturevalue("module_hub").settings_for(database_url)
    return make_settings(tmp_path, pki_dir, database_url, partner_ports)


# hub base URL -> fn(role, post=None, partner=None) -> token, for the hubs a test runs (sandboxes that call
# a hub back get a partner token of that hub; a test running `hub serve` itself registers with `serve_tokens`)
TOKEN_MINTERS: dict[str, object] = {}
# hub base URL -> the sessionmaker of its database, for the hubs a test runs: tests/support.register_citizen seeds
# citizens through the registry's service layer of the hub a client talks to
SESSIONS: dict[str, object] = {}


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
    sessions = make_sessionmaker(make_engine(database_url))
    mint = token_minter(sessions)
    TOKEN_MINTERS[hub_url.rstrip("/")] = mint
    SESSIONS[hub_url.rstrip("/")] = sessions
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
    SESSIONS[service.url] = service.hub.sessions
    yield service
    TOKEN_MINTERS.pop(service.url, None)
    SESSIONS.pop(service.url, None)
    service.stop()


@pytest.fixture
def running_hub(request, settings):
    """The hub serving HTTP in this process (see `serve_hub`); the module's in a shared_hub module."""
    if shares_hub(request):
        yield request.getfixturevalue("module_hub").running_hub(settings)
        return
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
        return self.launch().wait_ready()

    def launch(self) -> "Sandbox":
        """Start the process without waiting for it (`wait_ready` waits): several start side by side."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", self.name, "--port", str(self.port), "--hub-url", self.hub_url,
             "--pki-dir", str(self.pki_dir), "--data-dir", str(self.data_dir), *self.extra_args],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **({"HUB_PARTNER_TOKEN": self.token} if self.token else {})})
        return self

    def wait_ready(self) -> "Sandbox":
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
    a partner token of that hub when the hub is one the test runs; start_sandbox(["sante", "dgsn"], hub_url)
    starts several side by side and returns them by name. Every sandbox started is stopped at the end of
    the test."""
    started = []

    def start(name: str | list[str], hub_url: str, *, extra_args: list[str] | None = None,
              http_port: int | None = None, token: str | None = None):
        names = [name] if isinstance(name, str) else name
        boxes = [Sandbox(partner_ports[n.upper()], hub_url, pki_dir, tmp_path / "sandbox", name=n,
                         extra_args=extra_args, http_port=http_port, token=token) for n in names]
        for box in boxes:
            started.append(box.launch())
        for box in boxes:
            box.wait_ready()
        return boxes[0] if isinstance(name, str) else dict(zip(names, boxes))
    yield start
    for box in started:
        box.stop()


@pytest.fixture
def sandbox_factory(start_sandbox):
    """The NARSA sandbox, answering 0.05 s after acknowledging."""
    return lambda hub_url: start_sandbox("narsa", hub_url)
