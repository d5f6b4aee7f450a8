"""What every sandbox partner shares: keys, checks, stores, behaviour, control routes, the server.

A partner sandbox subclasses `PartnerSandbox` for its decisions and builds a FastAPI app for its own
protocol (`partner_app` gives one that starts and stops the sandbox with the server and carries the
control routes; `answer_post` runs the common part of a document endpoint); `add_control_routes`
adds the standard surface and `run_app` serves it:

    GET  /healthz              {"status": "ok", "partner": CODE}
    GET  /_sandbox/stats       counters (`PartnerSandbox.stats`)
    POST /_sandbox/behaviour   a partial `Behaviour`: {"mode": "normal"|"fail"|"slow"|"refuse",
                               "status": 503, "retry_after": null, "delay_seconds": 5,
                               "fail_every": null, "refuse_seconds": 10}

`refuse` closes the listening socket for `refuse_seconds` (connections are refused, as when the
partner is down), then listens again in `normal` mode. Received documents and answers are kept as
files under `<data>/<CODE>/received/` and `<data>/<CODE>/acknowledged/`, so deduplication by message
id survives a restart; they are made durable, before the answer leaves, by one append to
`<data>/<CODE>/journal` (sandbox/journal.py), whose sync is shared by the requests in flight together.
The journal is emptied at each start, and whenever it outgrows JOURNAL_LIMIT_BYTES while no request
is in flight (after one sync of the file systems has made the files it covers durable).

`--journal-only` (the benchmark's sandboxes) keeps the journal as the only store: no file per message.
Creating the two files took a fifth to a third of the sandbox's CPU on the benchmark machine, whose ext4
has no journal of its own and skips the inodes freed in the last minute when it allocates one (up to
0.8 ms a file after a run's files were deleted). The journal is then replayed at start and never
emptied, and deduplication survives a restart all the same.

Document endpoints are served straight from the ASGI front (`add_document_route`, `DocumentFront`):
a partner's request needs none of FastAPI's middleware, dependency resolution or validation, since
the endpoint reads and checks the body itself; the control routes stay FastAPI's. Their checks and
signatures run inline on the event loop (`run_work`): the work holds the interpreter lock wherever it runs,
and a pool of threads taking turns at it spent more CPU handing the lock over (in the kernel) than on the
work. Only the journal's sync waits, on a thread, the loop meanwhile serving the next requests, whose
records the next sync covers.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import re
import signal
import sys
import threading
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lxml import etree
from pydantic import BaseModel, Field
from starlette.routing import Match, Route

from connectors.http import read_body
from hub import cpu
from hub.concurrency import run_inline
from hub.errors import InputError, Problem, SchemaInvalid, SignatureInvalid
from hub.trust.pki import ensure_dev_pki, load_certificate, load_key
from hub.xml.schemas import SchemaSet
from hub.trust.signing import Signer, verify
from hub.xml.safe import parse_untrusted, to_bytes
from sandbox.journal import Journal
from sandbox.outbox import CallbackOutbox, write_atomically

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ALL_PARTIES = ["hub", "REGISTRY", "DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"]
MAX_REQUEST_BYTES = 1024 * 1024
JOURNAL_LIMIT_BYTES = 64 * 1024 * 1024


# -- small helpers on partner documents ------------------------------------------------------------


def tag(path: str, namespace: str) -> str:
    """The qualified name of a local name in `namespace`, or of each step of a path of local names
    ("Permis/NumeroPermis" -> "{ns}Permis/{ns}NumeroPermis"), for find/findall/findtext."""
    return "/".join(f"{{{namespace}}}{part}" for part in path.split("/"))


def text(element: etree._Element, path: str, namespace: str) -> str:
    """Text of a descendant found by a path of local names in `namespace` ("Permis/NumeroPermis"),
    whitespace-trimmed; "" when there is none."""
    return (element.findtext(tag(path, namespace)) or "").strip()


def hub_token() -> str | None:
    """The partner token this sandbox's callbacks to the hub's /api carry (environment HUB_PARTNER_TOKEN,
    given by whoever starts the process: never on the command line, where `ps` would show it)."""
    return os.environ.get("HUB_PARTNER_TOKEN") or None


def utc_now() -> dt.datetime:
    """Now, in UTC, to the second (what partner documents carry)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def digits(value: str) -> str:
    """The digits of `value`, in order ("NARSA-2025-000012" -> "2025000012")."""
    return re.sub(r"\D", "", value)


class Behaviour(BaseModel):
    """How the partner behaves: normally, failing with `status`, slowly, or refusing connections."""

    mode: Literal["normal", "fail", "slow", "refuse"] = "normal"
    status: int = Field(503, ge=400, le=599, description="HTTP status (or fault) returned in `fail` mode")
    retry_after: int | None = Field(None, ge=0, description="Retry-After seconds sent with failures")
    delay_seconds: float = Field(5.0, ge=0, le=600, description="Extra delay per request in `slow` mode")
    fail_every: int | None = Field(None, ge=1, description="In `fail` mode, fail only every n-th request")
    refuse_seconds: float = Field(10.0, gt=0, le=3600, description="How long `refuse` keeps the port closed")


NULLABLE = {"retry_after", "fail_every"}


class BehaviourChange(BaseModel):
    """A partial update of Behaviour: fields left out keep their value (null clears NULLABLE ones)."""

    mode: Literal["normal", "fail", "slow", "refuse"] | None = None
    status: int | None = Field(None, ge=400, le=599)
    retry_after: int | None = Field(None, ge=0)
    delay_seconds: float | None = Field(None, ge=0, le=600)
    fail_every: int | None = Field(None, ge=1)
    refuse_seconds: float | None = Field(None, gt=0, le=3600)


class PartnerSandbox:
    """Keys, the pinned hub certificate, schema checks, the received/answer store, counters, behaviour.

    A subclass that sends callbacks sets `outbox` (a sandbox.outbox.CallbackOutbox): `start` and
    `stop` then start and stop its delivery, and `stats` reports `pending_callbacks`."""

    outbox: CallbackOutbox | None = None
    journal_limit_bytes = JOURNAL_LIMIT_BYTES

    def __init__(self, partner: str, *, pki_dir: Path, data_dir: Path, schemas_dir: Path = PROJECT_ROOT / "schemas",
                 mode: str = "normal", parties: list[str] = ALL_PARTIES, journal_only: bool = False):
        self.partner = partner
        pki_dir = Path(pki_dir)
        ensure_dev_pki(pki_dir, parties)
        self.signer = Signer(load_key(str(pki_dir / f"{partner}.key")), load_certificate(str(pki_dir / f"{partner}.crt")))
        self.hub_certificate = load_certificate(str(pki_dir / "hub.crt"))
        self.schemas = SchemaSet(schemas_dir)
        self.home = Path(data_dir) / partner
        self.received_dir = self.home / "received"
        self.acknowledged_dir = self.home / "acknowledged"
        for folder in (self.received_dir, self.acknowledged_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.journal_only = journal_only  # no file per message: the journal is the store (see sandbox/journal.py)
        self._answers = {} if journal_only else {p.stem: p.read_bytes() for p in self.acknowledged_dir.glob("*.xml")
                                                 if (self.received_dir / p.name).exists()}
        self._replay_journal(self.home / "journal")
        self.journal = Journal(self.home / "journal")
        self._unfiled = 0  # requests journalled whose files are not written yet (under self._lock)
        self.counters: Counter = Counter()
        self.behaviour = Behaviour(mode=mode)
        self._requests_while_failing = 0
        self.on_refuse: Callable[[float], None] | None = None  # set by run_app

    # -- lifecycle (run by `partner_app` as the server starts and stops) ---------------------------

    def start(self) -> None:
        if self.outbox is not None:
            self.outbox.start()

    def stop(self) -> None:
        if self.outbox is not None:
            self.outbox.stop()

    # -- documents ---------------------------------------------------------------------------------

    def check_document(self, body: bytes, *, xsd: str, roots: set[str], what: str) -> etree._Element:
        """Hardened parse, expected root, XSD, the hub's signature; returns the element the signature covers.

        Raises hub.errors.InputError subclasses (nothing stored)."""
        root = parse_untrusted(body, max_bytes=MAX_REQUEST_BYTES, what=what)
        if root.tag not in roots:
            raise SchemaInvalid(f"{what}: expected one of {', '.join(sorted(roots))}, got {root.tag}",
                                [Problem(f"unexpected root element {root.tag}", line=root.sourceline, path="/*")])
        self.schemas.validate(root, xsd, what=what)
        try:
            return verify(root, self.hub_certificate, signer_name="hub")
        except (etree.DocumentInvalid, ValueError) as exc:
            raise SignatureInvalid(f"{what}: the hub's signature element is malformed: {exc}", [Problem(str(exc))]) from None

    def sign(self, document: etree._Element, *, xsd: str, what: str) -> bytes:
        """Sign with the partner's key; what a sandbox sends must itself be valid in its own format."""
        signed = self.signer.sign(document)
        self.schemas.validate(signed, xsd, what=what)
        return to_bytes(signed)

    def answer_once(self, message_id: str, body: bytes, make_answer: Callable[[], bytes]) -> tuple[bytes, bool]:
        """Store a request and its answer the first time; a repeat of the id gets the same answer bytes.

        Returns (answer, new), once the request and its answer are durable (in the journal, synced:
        a restart replays it), never before. `make_answer` runs under the store's lock, once per
        message id; the sync runs outside it, shared with the requests appended meanwhile."""
        with self._lock:
            answer = self._answers.get(message_id)
            if answer is None:
                answer = make_answer()
                durable_at = self.journal.append(message_id, body, answer)
                self._answers[message_id] = answer
                self._unfiled += 1
                self.counters["received"] += 1
            else:
                self.counters["duplicates"] += 1
                durable_at = None
        if durable_at is None:  # the first copy may still be on its way to the disk: answer once it is there
            self.journal.sync()
            return answer, False
        try:
            self.journal.sync(durable_at)
            if not self.journal_only:
                write_plainly(self.received_dir / f"{message_id}.xml", body)
                write_plainly(self.acknowledged_dir / f"{message_id}.xml", answer)
        finally:
            with self._lock:
                self._unfiled -= 1
                if not self.journal_only and self._unfiled == 0 and self.journal.size > self.journal_limit_bytes:
                    self._empty_journal()  # journal-only, the journal is the store: never emptied
        return answer, True

    def _empty_journal(self) -> None:
        """Under the store's lock, nothing in flight: every journalled request has its files written.
        One sync of the file systems makes them durable (rather than one fsync per file), then the
        journal starts afresh."""
        os.sync()
        for folder in (self.received_dir, self.acknowledged_dir):
            sync_folder(folder)
        self.journal.truncate()
        log.info("%s: journal emptied, its %d messages' files synced", self.partner, len(self._answers))

    def _replay_journal(self, path: Path) -> None:
        """Rewrite the files of every record the journal holds (a crash may have cut them short, or
        come before them), sync them, then empty the journal: it only ever holds one run's records.
        Journal-only, the records are the store: their answers are read, and a torn tail (a record
        never answered) cut off, so that what is appended next is read back after it."""
        if self.journal_only:
            complete = 0
            for message_id, _body, answer, complete in Journal.scan(path):
                self._answers[message_id] = answer
            if path.exists() and path.stat().st_size != complete:
                os.truncate(path, complete)
            return
        replayed = 0
        for message_id, body, answer in Journal.records(path):
            write_atomically(self.received_dir / f"{message_id}.xml", body)
            write_atomically(self.acknowledged_dir / f"{message_id}.xml", answer)
            self._answers[message_id] = answer
            replayed += 1
        if path.exists():
            for folder in (self.received_dir, self.acknowledged_dir):
                sync_folder(folder)
            os.truncate(path, 0)
            with open(path, "rb") as journal:
                os.fsync(journal.fileno())
        if replayed:
            log.info("%s: %d received messages replayed from the journal", self.partner, replayed)

    def received_count(self) -> int:
        with self._lock:
            return len(self._answers)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    # -- behaviour ---------------------------------------------------------------------------------

    def change_behaviour(self, change: BehaviourChange) -> Behaviour:
        with self._lock:
            update = {k: v for k, v in change.model_dump(exclude_unset=True).items() if v is not None or k in NULLABLE}
            self.behaviour = Behaviour.model_validate({**self.behaviour.model_dump(), **update})
            self._requests_while_failing = 0
            behaviour = self.behaviour
        if behaviour.mode == "refuse" and self.on_refuse is not None:
            self.on_refuse(behaviour.refuse_seconds)
        return behaviour

    def should_fail(self) -> Behaviour | None:
        """The behaviour to fail with if this request must fail, else None."""
        with self._lock:
            behaviour = self.behaviour
            if behaviour.mode != "fail":
                return None
            self._requests_while_failing += 1
            if behaviour.fail_every and self._requests_while_failing % behaviour.fail_every:
                return None
            self.counters["failed_on_purpose"] += 1
            return behaviour

    async def delay_if_slow(self) -> None:
        if self.behaviour.mode == "slow":
            await asyncio.sleep(self.behaviour.delay_seconds)

    def stats(self) -> dict:
        """Counters since the process started; `stored` (and `pending_callbacks`, with an outbox) is
        read from disk (survives restarts)."""
        with self._lock:
            stats = {"partner": self.partner, "stored": len(self._answers), **self.counters,
                     "behaviour": self.behaviour.mode}
        if self.outbox is not None:
            stats["pending_callbacks"] = self.outbox.pending()
        return stats


def write_plainly(path: Path, data: bytes) -> None:
    """Write a file without syncing it: for copies of what the journal already holds durably."""
    with open(path, "wb") as handle:
        handle.write(data)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that the names created or renamed in it survive a crash."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


_ERROR_CODES = {"MalformedXml": "XML_MALFORME", "SchemaInvalid": "SCHEMA_INVALIDE",
                "SignatureInvalid": "SIGNATURE_INVALIDE", "MessageTooLarge": "MESSAGE_TROP_VOLUMINEUX",
                "UnsupportedMediaType": "TYPE_MEDIA_NON_SUPPORTE"}
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def error_response(error: InputError, maker) -> Response:
    """A small <Erreur> document in the partner's namespace (`maker`: its lxml ElementMaker), not
    schema-bound: a Code (XML_MALFORME, SCHEMA_INVALIDE, SIGNATURE_INVALIDE, MESSAGE_TROP_VOLUMINEUX,
    TYPE_MEDIA_NON_SUPPORTE, DEMANDE_REFUSEE), a Message, and up to 20 Probleme (ligne, chemin)."""
    document = maker.Erreur(maker.Code(_ERROR_CODES.get(type(error).__name__, "DEMANDE_REFUSEE")),
                            maker.Message(_NOT_XML.sub("?", error.detail)))
    for problem in error.problems[:20]:
        where = {key: str(value) for key, value in (("ligne", problem.line), ("chemin", problem.path)) if value}
        document.append(maker.Probleme(_NOT_XML.sub("?", problem.message), **where))
    return Response(to_bytes(document), status_code=error.status, media_type="application/xml")


def failure_response(behaviour: Behaviour, partner: str) -> Response:
    headers = {"Retry-After": str(behaviour.retry_after)} if behaviour.retry_after is not None else {}
    return Response(f"{partner} sandbox simulating a failure (HTTP {behaviour.status})\n", status_code=behaviour.status,
                    headers=headers, media_type="text/plain")


async def answer_post(request: Request, sandbox: PartnerSandbox, handle: Callable[[bytes], bytes], *,
                      refused: Callable[[InputError], Response], respond: Callable[[bytes], Response],
                      failure: Callable[[Behaviour], Response] | None = None, content_type: str = "application/xml",
                      what: str = "request") -> Response:
    """What every document endpoint does around the partner's own `handle(body) -> answer`:

    in `fail` mode (when this request must fail) the answer is `failure(behaviour)` (by default
    `failure_response`) and nothing is read; in `slow` mode it waits `delay_seconds` first; then the
    Content-Type must be `content_type`, the body is read capped at MAX_REQUEST_BYTES, and `handle`
    runs on the work pool (`run_work`). An InputError (415, 413 or raised by `handle`) is counted as `refused`,
    logged and answered with `refused(error)`; otherwise the answer is `respond(answer)`."""
    failing = sandbox.should_fail()
    if failing is not None:
        return failure(failing) if failure is not None else failure_response(failing, sandbox.partner)
    await sandbox.delay_if_slow()
    try:
        body = await read_body(request, max_bytes=MAX_REQUEST_BYTES, media_types=(content_type,))
        answer = await run_work(handle, body)
    except InputError as error:
        sandbox.count("refused")
        log.warning("%s: %s refused (HTTP %d): %s", sandbox.partner, what, error.status, error.detail)
        return refused(error)
    return respond(answer)


async def answer_xml_post(request: Request, sandbox: PartnerSandbox, handle: Callable[[bytes], bytes], *,
                          maker, status: int = 200, what: str = "request") -> Response:
    """`answer_post` for a REST/XML endpoint: application/xml in; the answer as application/xml with
    `status`; refusals as an <Erreur> document (`error_response`, in `maker`'s namespace)."""
    return await answer_post(request, sandbox, handle, what=what, refused=lambda error: error_response(error, maker),
                             respond=lambda answer: Response(answer, status_code=status, media_type="application/xml"))


async def run_work(function: Callable, *args):
    """Run `function(*args)` inline on the event loop and return its result (hub/concurrency.py `run_inline`):
    its checks and signatures hold the interpreter lock wherever they run, and handing them to threads cost
    more in lock hand-overs than the work itself. Where it must wait (the journal's sync), it awaits."""
    return await run_inline(function, *args)


def add_document_route(app: FastAPI, path: str, endpoint: Callable[[Request], "asyncio.Future[Response]"]) -> None:
    """Serve POST `path` with `endpoint(request)` (path parameters in `request.path_params`): straight
    from `DocumentFront` when served by `run_app`, and as a plain Starlette route of `app` otherwise."""
    route = Route(path, endpoint, methods=["POST"])
    app.router.routes.append(route)
    app.state.document_routes = [*getattr(app.state, "document_routes", []), route]


class DocumentFront:
    """The ASGI app `run_app` serves: a POST to a document endpoint goes straight to it, without the
    FastAPI middleware stack (error pages, exception handlers, exit stacks, body limits: the endpoint
    caps and checks the body itself); everything else (control routes, WSDL, lifespan) to `app`.
    An exception escaping an endpoint is a bug: uvicorn logs it and answers 500."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.routes: list[Route] = list(getattr(app.state, "document_routes", []))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope = {**scope, **child_scope}
                    response = await route.endpoint(Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def partner_app(sandbox: PartnerSandbox) -> FastAPI:
    """A FastAPI app titled "<CODE> sandbox", without API docs, that starts the sandbox with the server
    and stops it with it, and carries the control routes (`add_control_routes`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sandbox.start()
        try:
            yield
        finally:
            sandbox.stop()

    app = FastAPI(title=f"{sandbox.partner} sandbox", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    add_control_routes(app, sandbox)
    return app


def add_control_routes(app: FastAPI, sandbox: PartnerSandbox, stats: Callable[[], dict] | None = None) -> None:
    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "partner": sandbox.partner}

    @app.get("/_sandbox/stats")
    def get_stats() -> dict:
        return stats() if stats else sandbox.stats()

    @app.post("/_sandbox/behaviour")
    def behaviour(change: BehaviourChange) -> JSONResponse:
        return JSONResponse(sandbox.change_behaviour(change).model_dump())


class SandboxServer(uvicorn.Server):
    """uvicorn that prints one line once listening, and can stop listening for a while (`refuse`)."""

    def __init__(self, config: uvicorn.Config, name: str):
        super().__init__(config)
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._loop = asyncio.get_running_loop()
            print(f"{self.name} sandbox listening on http://{self.config.host}:{self.config.port}", flush=True)

    def refuse_for(self, seconds: float) -> None:
        """Close the listening sockets now (from any thread); listen again after `seconds`."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._refuse(seconds)))

    async def _refuse(self, seconds: float) -> None:
        for server in self.servers:
            server.close()
        log.warning("%s refusing connections for %.1f s", self.name, seconds)
        await asyncio.sleep(seconds)
        config = self.config

        def create_protocol(_loop=None):
            return config.http_protocol_class(config=config, server_state=self.server_state,
                                              app_state=self.lifespan.state, _loop=_loop)
        self.servers = [await asyncio.get_running_loop().create_server(create_protocol, host=config.host,
                                                                      port=config.port, backlog=config.backlog)]
        log.warning("%s listening again", self.name)


def _exit(signum, frame) -> None:
    raise SystemExit(0)


def run_app(app: FastAPI, *, sandbox: PartnerSandbox, host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status (0 once it has served)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    server = SandboxServer(uvicorn.Config(DocumentFront(app), host=host, port=port, log_level="warning", lifespan="on"),
                           sandbox.partner)

    def refuse(seconds: float) -> None:
        server.refuse_for(seconds)
        threading.Timer(seconds, lambda: sandbox.change_behaviour(BehaviourChange(mode="normal"))).start()
    sandbox.on_refuse = refuse
    server.run()
    return 0 if server.started else 1


def project_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else PROJECT_ROOT / path


def positive_port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


def non_negative(value: str) -> float:
    seconds = float(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return seconds


def add_journal_only_argument(parser) -> None:
    """`--journal-only`, for a sandbox whose store is `answer_once`'s alone (not CDG's or JUSTICE's, which read
    their received/ files again)."""
    parser.add_argument("--journal-only", action="store_true",
                        help="keep what is received and answered in the journal only, without a file per message "
                             "in received/ and acknowledged/ (the benchmark's sandboxes)")


def add_common_arguments(parser, *, port: int, answer_delay: float | None = None) -> None:
    """The options every sandbox takes (relative folders are taken from the project root)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=positive_port, default=port, help="port to listen on (default %(default)s)")
    parser.add_argument("--hub-url", default="http://127.0.0.1:8700",
                        help="the hub's base URL, for callbacks (default %(default)s)")
    parser.add_argument("--pki-dir", type=project_path, default="var/pki",
                        help="development PKI folder, created if missing (default %(default)s)")
    parser.add_argument("--data-dir", type=project_path, default="var/sandbox",
                        help="where received documents and answers are kept (default %(default)s)")
    parser.add_argument("--mode", choices=["normal", "fail", "slow"], default="normal",
                        help="initial behaviour; change it at run time with POST /_sandbox/behaviour")
    parser.add_argument("--cpu-scheduling", choices=cpu.POLICIES, default="batch",
                        help="how Linux schedules the sandbox's threads, as the hub's HUB_CPU_SCHEDULING (hub/cpu.py; "
                             "default %(default)s)")
    if answer_delay is not None:
        parser.add_argument("--answer-delay", type=non_negative, default=answer_delay,
                            help="seconds before an asynchronous answer is sent (default %(default)s)")
