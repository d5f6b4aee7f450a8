"""NARSA sandbox: a simulator of the national road-safety agency's licence-authentication service.

It speaks NARSA's own REST/XML format (schemas/partners/narsa/authentification-permis.xsd) and
signs and verifies like the real partner:

    POST /narsa/v1/demandes-authentification   a DemandeAuthentification signed by the hub
         -> 202 AccuseReception signed by NARSA; later, a ResultatAuthentification is POSTed to
            {hub_url}/api/v1/partners/NARSA/messages
         -> 400 (malformed, invalid, badly signed), 413 (over 1 MiB), 415 (not application/xml),
            with a small <Erreur> document saying what is wrong; nothing is stored
    GET  /healthz                              {"status": "ok", "partner": "NARSA"}
    GET  /_sandbox/stats                       counters (see `NarsaSandbox.stats`)
    POST /_sandbox/behaviour                   {"mode": "normal" | "fail" | "slow", "status": 503,
                                                "retry_after": null, "delay_seconds": 5, "fail_every": null}

Verdict rule (deterministic, so tests can predict it), by the LAST DIGIT of Permis/NumeroPermis
("12/345678" -> 8), see `verdict_for`:

    0-6   AUTHENTIQUE       with an Attestation valid 90 days, signed by NARSA on its own
    7, 8  DIVERGENCE        with one Divergence on DateNaissance
    9     NON_AUTHENTIQUE

The result as a whole is signed by NARSA too (its signature the last child of the root).

Exactly-once effect over the hub's at-least-once delivery: requests are deduplicated by
IdentifiantMessage. The first one is stored exactly as received (`<data>/NARSA/received/<id>.xml`),
then its acknowledgement (`<data>/NARSA/acknowledged/<id>.xml`: a folder of its own, since an id
may itself end in ".ack"); a repeat gets the same acknowledgement bytes and schedules nothing.
That state is on disk, so it survives a restart; so do pending callbacks (sandbox/outbox.py), and
a request acknowledged but not yet answered is answered after a restart.

The 400 on a malformed request is not schema-bound: <Erreur> holds a Code (XML_MALFORME,
SCHEMA_INVALIDE, SIGNATURE_INVALIDE, MESSAGE_TROP_VOLUMINEUX, TYPE_MEDIA_NON_SUPPORTE), a Message
and up to 20 Probleme elements (attributes ligne and chemin when known).

Counters in /_sandbox/stats are since the process started, except `received` and
`pending_callbacks`, which are read from disk.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import signal
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from lxml import etree
from lxml.builder import ElementMaker
from pydantic import BaseModel, Field

from hub.errors import (InputError, MessageTooLarge, Problem, SchemaInvalid, SignatureInvalid,
                        UnsupportedMediaType)
from hub.pki import ensure_dev_pki, load_certificate, load_key
from hub.schemas import SchemaSet
from hub.signing import Signer, verify
from hub.xmlsafe import parse_trusted, parse_untrusted, to_bytes
from sandbox.common import error_response
from sandbox.outbox import CallbackOutbox, write_atomically

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARTNER = "NARSA"
NS = "urn:ma:narsa:authentification-permis:1"
XSD = "partners/narsa/authentification-permis.xsd"
MAX_REQUEST_BYTES = 1024 * 1024
PARTIES = ["hub", "REGISTRY", PARTNER]
ATTESTATION_VALIDITY = dt.timedelta(days=90)
DIVERGENCE_FIELD = "DateNaissance"
DIVERGENCE_TEXT = "La date de naissance ne correspond pas au fichier national des permis"
VERDICTS = ("AUTHENTIQUE", "DIVERGENCE", "NON_AUTHENTIQUE")

N = ElementMaker(namespace=NS, nsmap={None: NS})


def verdict_for(numero_permis: str) -> str:
    """The sandbox's decision for a licence number, by its last digit: 0-6 AUTHENTIQUE,
    7-8 DIVERGENCE, 9 NON_AUTHENTIQUE."""
    last = numero_permis.strip()[-1:]
    if not last.isdigit():
        raise ValueError(f"licence number {numero_permis!r} does not end with a digit")
    digit = int(last)
    if digit <= 6:
        return "AUTHENTIQUE"
    if digit <= 8:
        return "DIVERGENCE"
    return "NON_AUTHENTIQUE"


def _tag(name: str) -> str:
    return f"{{{NS}}}{name}"


def _text(element: etree._Element, path: str) -> str:
    """Text of a child found by a path of local names ("Permis/NumeroPermis"), whitespace-trimmed."""
    return (element.findtext("/".join(_tag(part) for part in path.split("/"))) or "").strip()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _date_jma(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")


def _digits(reference: str) -> str:
    return re.sub(r"\D", "", reference)


# -- run-time behaviour --------------------------------------------------------------------------


class Behaviour(BaseModel):
    """How the request endpoint behaves: normally, failing with `status`, or slowly."""

    mode: Literal["normal", "fail", "slow"] = "normal"
    status: int = Field(503, ge=400, le=599)
    retry_after: int | None = Field(None, ge=0)
    delay_seconds: float = Field(5.0, ge=0, le=600)
    fail_every: int | None = Field(None, ge=1)


NULLABLE = {"retry_after", "fail_every"}


class BehaviourChange(BaseModel):
    """A partial update of Behaviour: fields left out (or null, except those in NULLABLE) keep
    their current value."""

    mode: Literal["normal", "fail", "slow"] | None = None
    status: int | None = Field(None, ge=400, le=599)
    retry_after: int | None = Field(None, ge=0)
    delay_seconds: float | None = Field(None, ge=0, le=600)
    fail_every: int | None = Field(None, ge=1)


# -- the partner ---------------------------------------------------------------------------------


class NarsaSandbox:
    """NARSA's state: keys, pinned hub certificate, received requests, counters, callback outbox."""

    def __init__(self, *, pki_dir: Path, data_dir: Path, hub_url: str, answer_delay: float,
                 mode: str = "normal", schemas_dir: Path = PROJECT_ROOT / "schemas"):
        pki_dir = Path(pki_dir)
        ensure_dev_pki(pki_dir, PARTIES)
        self.signer = Signer(load_key(str(pki_dir / f"{PARTNER}.key")),
                             load_certificate(str(pki_dir / f"{PARTNER}.crt")))
        self.hub_certificate = load_certificate(str(pki_dir / "hub.crt"))
        self.schemas = SchemaSet(schemas_dir)
        self.answer_delay = answer_delay
        self.callback_url = hub_url.rstrip("/") + f"/api/v1/partners/{PARTNER}/messages"

        self.received_dir = Path(data_dir) / PARTNER / "received"
        self.acknowledged_dir = Path(data_dir) / PARTNER / "acknowledged"
        for folder in (self.received_dir, self.acknowledged_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.outbox = CallbackOutbox(Path(data_dir) / PARTNER, self.callback_url, on_delivered=self._count_sent)

        self._lock = threading.Lock()  # guards the acknowledgements and the counters
        self._acknowledgements = self._load_acknowledgements()  # IdentifiantMessage -> ack bytes
        self._counters = {"duplicates": 0, "refused": 0, "results_sent": 0}
        self._verdicts = dict.fromkeys(VERDICTS, 0)
        self.behaviour = Behaviour(mode=mode)
        self._requests_while_failing = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start delivering callbacks: re-send the outbox, answer requests a restart left unanswered."""
        self.outbox.start()
        for request_id in sorted(self._acknowledgements):
            if not self.outbox.knows(self._result_id(request_id)):
                log.info("answering %s, acknowledged before the restart", request_id)
                self._schedule_result(request_id)

    def stop(self) -> None:
        self.outbox.stop()

    # -- requests ----------------------------------------------------------------------------------

    def receive(self, body: bytes) -> tuple[bytes, bool]:
        """Check and store one request; return (acknowledgement bytes, whether it is new).

        Raises an InputError subclass (nothing stored) when the request is refused."""
        request = self._checked_request(body)
        request_id = _text(request, "IdentifiantMessage")
        with self._lock:
            acknowledgement = self._acknowledgements.get(request_id)
            if acknowledgement is not None:
                self._counters["duplicates"] += 1
                log.info("duplicate request %s: same acknowledgement, nothing scheduled", request_id)
                return acknowledgement, False
            acknowledgement = self._acknowledgement(request_id, sequence=len(self._acknowledgements) + 1)
            write_atomically(self.received_dir / f"{request_id}.xml", body)
            write_atomically(self.acknowledged_dir / f"{request_id}.xml", acknowledgement)
            self._acknowledgements[request_id] = acknowledgement
        self._schedule_result(request_id)
        return acknowledgement, True

    def _checked_request(self, body: bytes) -> etree._Element:
        """Hardened parse, XSD, hub signature; return the element the signature covers."""
        root = parse_untrusted(body, max_bytes=MAX_REQUEST_BYTES, what="DemandeAuthentification")
        if root.tag != _tag("DemandeAuthentification"):
            raise SchemaInvalid(f"expected a DemandeAuthentification in namespace {NS}, got {root.tag}",
                                [Problem(f"unexpected root element {root.tag}", line=root.sourceline)])
        self.schemas.validate(root, XSD, what="DemandeAuthentification")
        try:
            return verify(root, self.hub_certificate, signer_name="HUB")
        except (etree.DocumentInvalid, ValueError) as exc:
            # hub.signing.verify lets signxml's own schema check of ds:Signature escape untranslated
            raise SignatureInvalid(f"the hub's signature element is malformed: {exc}", [Problem(str(exc))]) from None

    def _acknowledgement(self, request_id: str, *, sequence: int) -> bytes:
        now = _utc_now()
        document = N.AccuseReception(
            N.ReferenceDemande(request_id),
            N.ReferenceNarsa(f"NARSA-{now.year}-{sequence:06d}"),
            N.DateReception(now.isoformat()),
        )
        return self._signed_bytes(document, "AccuseReception")

    def _load_acknowledgements(self) -> dict[str, bytes]:
        acknowledgements = {}
        for ack_path in self.acknowledged_dir.glob("*.xml"):
            request_id = ack_path.stem
            if (self.received_dir / f"{request_id}.xml").exists():
                acknowledgements[request_id] = ack_path.read_bytes()
        return acknowledgements

    def count_refusal(self) -> None:
        with self._lock:
            self._counters["refused"] += 1

    # -- results -----------------------------------------------------------------------------------

    def _reference_narsa(self, request_id: str) -> str:
        return _text(parse_trusted(self._acknowledgements[request_id]), "ReferenceNarsa")

    def _result_id(self, request_id: str) -> str:
        return f"NARSA-R-{_digits(self._reference_narsa(request_id))}"

    def _schedule_result(self, request_id: str) -> None:
        self.outbox.produce_later(lambda: self.result_for(request_id), self.answer_delay)

    def result_for(self, request_id: str) -> tuple[str, bytes]:
        """Decide on a stored request: (result IdentifiantMessage, signed ResultatAuthentification)."""
        request = parse_trusted((self.received_dir / f"{request_id}.xml").read_bytes())
        reference = self._reference_narsa(request_id)
        result_id = self._result_id(request_id)
        verdict = verdict_for(_text(request, "Permis/NumeroPermis"))
        result = N.ResultatAuthentification(
            N.IdentifiantMessage(result_id),
            N.ReferenceDemande(request_id),
            N.ReferenceDossier(_text(request, "ReferenceDossier")),
            N.ReferenceNarsa(reference),
            N.DateDecision(_utc_now().isoformat()),
            N.Verdict(verdict),
        )
        if verdict == "DIVERGENCE":
            result.append(N.Divergence(DIVERGENCE_TEXT, champ=DIVERGENCE_FIELD))
        if verdict == "AUTHENTIQUE":
            result.append(self._signed_attestation(request, reference))
        body = self._signed_bytes(result, "ResultatAuthentification")
        with self._lock:
            self._verdicts[verdict] += 1
        log.info("result %s for %s: %s", result_id, request_id, verdict)
        return result_id, body

    def _signed_attestation(self, request: etree._Element, reference: str) -> etree._Element:
        """The Attestation, carrying NARSA's own enveloped signature so it can travel on its own."""
        holder = f"{_text(request, 'Titulaire/Prenom')} {_text(request, 'Titulaire/Nom')}"[:100]
        categories = request.findall(f"{_tag('Permis')}/{_tag('Categories')}/{_tag('Categorie')}")
        attestation = N.Attestation(
            N.NumeroAttestation(f"ATT-{_digits(reference)}"),
            N.NumeroPermis(_text(request, "Permis/NumeroPermis")),
            N.Titulaire(holder),
            N.Categories(*[N.Categorie((category.text or "").strip()) for category in categories]),
            N.DateDelivrance(_text(request, "Permis/DateDelivrance")),
            N.ValableJusquAu(_date_jma(_utc_now().date() + ATTESTATION_VALIDITY)),
        )
        return self.signer.sign(attestation)

    def _signed_bytes(self, document: etree._Element, what: str) -> bytes:
        """Sign with NARSA's key; what the sandbox sends must itself be valid NARSA format."""
        signed = self.signer.sign(document)
        self.schemas.validate(signed, XSD, what=what)
        return to_bytes(signed)

    def _count_sent(self, result_id: str) -> None:
        with self._lock:
            self._counters["results_sent"] += 1

    # -- behaviour and stats -----------------------------------------------------------------------

    def change_behaviour(self, change: BehaviourChange) -> Behaviour:
        with self._lock:
            update = change.model_dump(exclude_unset=True)
            update = {key: value for key, value in update.items() if value is not None or key in NULLABLE}
            self.behaviour = Behaviour.model_validate({**self.behaviour.model_dump(), **update})
            self._requests_while_failing = 0
            return self.behaviour

    def should_fail(self) -> Behaviour | None:
        """The behaviour to fail with if this request must fail, else None."""
        with self._lock:
            behaviour = self.behaviour
            if behaviour.mode != "fail":
                return None
            self._requests_while_failing += 1
            if behaviour.fail_every and self._requests_while_failing % behaviour.fail_every:
                return None
            return behaviour

    def stats(self) -> dict:
        with self._lock:
            return {
                "received": len(self._acknowledgements),
                **self._counters,
                "pending_callbacks": self.outbox.pending(),
                "verdicts": dict(self._verdicts),
            }


# -- HTTP ----------------------------------------------------------------------------------------

async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it exceeds `limit` bytes (never read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise MessageTooLarge(f"request is {declared} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MessageTooLarge(f"request is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_xml(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/xml"


def create_app(sandbox: NarsaSandbox) -> FastAPI:
    """The sandbox's HTTP surface; starting the app starts the callback worker."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sandbox.start()
        try:
            yield
        finally:
            sandbox.stop()

    app = FastAPI(title="NARSA sandbox", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/narsa/v1/demandes-authentification")
    async def demande_authentification(request: Request) -> Response:
        failing = sandbox.should_fail()
        if failing is not None:
            headers = {"Retry-After": str(failing.retry_after)} if failing.retry_after is not None else {}
            return Response(f"NARSA sandbox simulating a failure (HTTP {failing.status})\n",
                            status_code=failing.status, headers=headers, media_type="text/plain")
        if sandbox.behaviour.mode == "slow":
            await asyncio.sleep(sandbox.behaviour.delay_seconds)
        try:
            if not _is_xml(request.headers.get("content-type")):
                raise UnsupportedMediaType(f"Content-Type must be application/xml, not "
                                           f"{request.headers.get('content-type') or 'missing'}")
            body = await _read_capped(request, MAX_REQUEST_BYTES)
            acknowledgement, _new = await run_in_threadpool(sandbox.receive, body)
        except InputError as error:
            sandbox.count_refusal()
            log.warning("request refused (HTTP %d): %s", error.status, error.detail)
            return error_response(error, N)
        return Response(acknowledgement, status_code=202, media_type="application/xml")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "partner": PARTNER}

    @app.get("/_sandbox/stats")
    def stats() -> dict:
        return sandbox.stats()

    @app.post("/_sandbox/behaviour")
    def behaviour(change: BehaviourChange) -> JSONResponse:
        return JSONResponse(sandbox.change_behaviour(change).model_dump())

    return app


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints one line once it is listening."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            config = self.config
            print(f"NARSA sandbox listening on http://{config.host}:{config.port}", flush=True)


def _stop(signum, frame) -> None:
    raise SystemExit(0)


def serve(*, host: str, port: int, hub_url: str, pki_dir: Path, data_dir: Path, answer_delay: float,
          mode: str = "normal") -> int:
    """Run the NARSA sandbox until SIGTERM or SIGINT; return the exit status."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then raises the signal again with
    # these handlers back in place: the process then exits with status 0.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sandbox = NarsaSandbox(pki_dir=pki_dir, data_dir=data_dir, hub_url=hub_url, answer_delay=answer_delay, mode=mode)
    server = _AnnouncingServer(uvicorn.Config(create_app(sandbox), host=host, port=port, log_level="warning",
                                              lifespan="on"))
    server.run()
    return 0 if server.started else 1


def add_arguments(parser) -> None:
    from sandbox.common import add_common_arguments
    add_common_arguments(parser, port=8711, answer_delay=0.2)


def run(args) -> int:
    return serve(host=args.host, port=args.port, hub_url=args.hub_url, pki_dir=args.pki_dir, data_dir=args.data_dir,
                 answer_delay=args.answer_delay, mode=args.mode)
