"""What the fault tests (tests/test_faults.py) drive real processes with: a `hub serve` process that
can be killed, a TCP proxy that makes PostgreSQL go away and come back, a client that keeps sending
signed messages until each is accepted, a watcher of an SFTP inbox on disk, and the scale factor.

Long faults last `seconds * fault_scale()`: HUB_FAULT_SCALE (default 0.1, so `make test` stays
short; `make bench-faults` runs them at 1.0, the length the issue states).
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import httpx

from conftest import wait_for
from hub.trust import pki
from hub.trust.signing import Signer

DEFAULT_SCALE = 0.1


def fault_scale() -> float:
    """HUB_FAULT_SCALE as a positive float (0.1 when unset)."""
    raw = os.environ.get("HUB_FAULT_SCALE", "")
    if not raw:
        return DEFAULT_SCALE
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"HUB_FAULT_SCALE={raw!r} is not a number (use e.g. 0.1 or 1)") from None
    if scale <= 0:
        raise ValueError(f"HUB_FAULT_SCALE={raw!r} must be positive")
    return scale


def scaled(seconds: float, *, minimum: float = 0.0) -> float:
    """`seconds` (the full length) times the fault scale, never below `minimum`."""
    return max(minimum, seconds * fault_scale())


# -- `hub serve` as a process ------------------------------------------------------------------------


class HubProcess:
    """`hub serve --port PORT` with `env`, stderr appended to `log`. It runs in a session of its own, so
    `kill()` (SIGKILL to the whole process group) takes down anything it started, as a dead machine would."""

    def __init__(self, env: dict, port: int, log: Path):
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def start(self) -> "HubProcess":
        hub = Path(sys.executable).with_name("hub")
        self.proc = subprocess.Popen([str(hub), "serve", "--port", str(self.port)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"hub serve exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, 60, what="hub serve to start")
        return self

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def hub_environment(tmp_path: Path, *, pki_dir: Path, database_url: str, config: Path, **settings: str) -> dict:
    """The environment of a `hub serve` for a test: its own var/, the test PKI and config, `settings`
    as HUB_* variables (e.g. HUB_LEASE_SECONDS="3")."""
    return {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_VAR_DIR": str(tmp_path / "var"),
            "HUB_PKI_DIR": str(pki_dir), "HUB_CONFIG_DIR": str(config), **settings}


# -- messages --------------------------------------------------------------------------------------


class LicenceRequests:
    """Signed canonical LicenceAuthenticationRequests (REGISTRY's key), each with its own message id
    REGISTRY-LIC-<tag>-<n>; built on demand (about a millisecond each), thread-safe."""

    def __init__(self, pki_dir: Path, tag: str):
        self.signer = SimpleNamespace(signer=Signer(pki.load_key(str(pki_dir / "REGISTRY.key")),
                                                    pki.load_certificate(str(pki_dir / "REGISTRY.crt"))))
        self.tag = tag
        self._next = 0
        self._lock = threading.Lock()

    def next(self) -> tuple[str, bytes]:
        from registry.models import Case, Citizen
        from registry.services import licence
        with self._lock:
            index = self._next
            self._next += 1
        reference = f"LIC-{self.tag}-{index:06d}"
        citizen = Citizen(registration_id=f"MRE-{index:07d}", given_name_latin="Youssef", family_name_latin="El Amrani",
                          given_name_arabic="يوسف", family_name_arabic="العمراني", birth_date=dt.date(1988, 4, 12),
                          cnie="BK123456", country="FR", post_code="FR-PARIS")
        case = Case(reference=reference, post_code="FR-PARIS", created_at=dt.datetime.now(dt.timezone.utc),
                    citizen=citizen, details={"number": f"12/{345670 + index % 10}", "categories": ["B"],
                                              "issue_date": "2010-05-03"})
        return f"REGISTRY-{reference}", licence.build_request(self.signer, case)


class PersistentSender:
    """A client that sends each message until the hub accepts it (202), as a well-behaved caller does
    when the hub is down or answers 503: the same bytes again, which the hub accepts once by id.

    `send_one(data)` returns the message id's final answer; `counts` has, per outcome, how many HTTP
    attempts ended that way ("202", "202 duplicate", "503", "connection error", ...)."""

    def __init__(self, url: str, token: str, *, timeout: float = 10, pause: float = 0.2):
        self.client = httpx.Client(base_url=url, timeout=timeout, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/xml"})
        self.pause = pause
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    def attempt(self, data: bytes) -> httpx.Response | None:
        try:
            response = self.client.post("/api/v1/messages", content=data)
        except httpx.HTTPError as exc:
            self._count("timeout" if isinstance(exc, httpx.TimeoutException) else "connection error")
            return None
        duplicate = response.headers.get("x-duplicate") == "true"
        self._count(f"{response.status_code}{' duplicate' if duplicate else ''}")
        return response

    def send_one(self, data: bytes, *, give_up_after: float = 120) -> httpx.Response:
        deadline = time.monotonic() + give_up_after
        while True:
            response = self.attempt(data)
            if response is not None and response.status_code == 202:
                return response
            if response is not None and response.status_code not in (429, 503):
                raise AssertionError(f"the hub answered {response.status_code}: {response.text[:500]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not accepted within {give_up_after} s: {dict(self.counts)}")
            time.sleep(self.pause)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def close(self) -> None:
        self.client.close()


class LoadThread:
    """Threads sending fresh messages (`LicenceRequests`) with a `PersistentSender` each, at about `rate`
    messages/s in all, until `stop()`; `accepted` holds the ids the hub answered 202 for."""

    def __init__(self, url: str, token: str, messages: LicenceRequests, *, threads: int = 2, rate: float = 30):
        self.url, self.token, self.messages = url, token, messages
        self.interval = threads / rate
        self.accepted: list[str] = []
        self.senders = [PersistentSender(url, token) for _ in range(threads)]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in self.senders]

    def _run(self, sender: PersistentSender) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                message_id, data = self.messages.next()
                sender.send_one(data)
                with self._lock:
                    self.accepted.append(message_id)
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        except BaseException as exc:  # shown by stop()
            self.errors.append(exc)

    def start(self) -> "LoadThread":
        for thread in self._threads:
            thread.start()
        return self

    def halt(self) -> None:
        """Stop taking new messages, without waiting (clean-up after a failure)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop taking new messages; each thread finishes the one it holds (until it is accepted)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(180)
        for sender in self.senders:
            sender.close()
        if self.errors:
            raise self.errors[0]

    def counts(self) -> Counter:
        total: Counter = Counter()
        for sender in self.senders:
            total.update(sender.counts)
        return total


# -- a database that goes away ----------------------------------------------------------------------


class TcpProxy:
    """A loopback TCP proxy in front of `upstream` (threads). `stop()` closes the listening socket (new
    connections are refused) and cuts every open connection, as a database server that dies does;
    `start()` listens again on the same port."""

    def __init__(self, upstream: tuple[str, int], port: int = 0):
        self.upstream = upstream
        self.port = port
        self.connections = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()

    def start(self) -> "TcpProxy":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="proxy-accept").start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._open.update((client, server))
                self.connections += 1
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True, name="proxy-pump").start()
        listener.close()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(target)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def stop(self) -> int:
        """Refuse new connections and cut the open ones; returns how many were cut."""
        self._running.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            cut = list(self._open)
        for sock in cut:
            self._close(sock)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and self.accepts_connections():
            time.sleep(0.05)
        return len(cut) // 2

    def accepts_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False


# -- an SFTP inbox seen from the partner's side --------------------------------------------------------


class FolderWatcher:
    """Lists a folder on disk as fast as it can while a fault happens, recording every name seen and,
    for names not starting with "." (the names the partner takes files under), every size seen."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names: set[str] = set()
        self.sizes: dict[str, set[int]] = {}
        self.listings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="folder-watcher")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._look()
            time.sleep(0.0005)  # a thousand listings a second or so, without taking a whole core
        self._look()

    def _look(self) -> None:
        for name in os.listdir(self.folder):
            self.names.add(name)
            if not name.startswith("."):
                try:
                    self.sizes.setdefault(name, set()).add(os.path.getsize(self.folder / name))
                except FileNotFoundError:  # the partner took it meanwhile
                    pass
        self.listings += 1

    def __enter__(self) -> "FolderWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def received_ids(sandbox, partner: str = "NARSA") -> list[str]:
    """The message ids a sandbox stored (its received/ folder: one file per distinct id)."""
    return [p.stem for p in sandbox.received(partner)]
