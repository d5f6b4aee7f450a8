"""JUSTICE sandbox: the Ministry of Justice's side of judicial documents served abroad (service 7).

It speaks Justice's own format (schemas/partners/justice/plis-judiciaires.xsd) over SOAP 1.1 both ways,
and signs and verifies like the real partner:

    POST /justice/ws/attestations-remise        (Justice's service, schemas/partners/justice/attestations-remise.wsdl)
         SOAP Body: an AttestationRemise signed by the hub
         -> 200, Body: an AccuseReception signed by Justice; the same IdentifiantMessage again gets the
            same bytes (nothing recorded twice)
         -> soap:Client fault (HTTP 500; 413 over 1 MiB, 415 not text/xml) when refused, nothing stored:
            malformed, not valid, not signed by the hub, or a certificate for a request Justice never
            sent (ReferenceDemande unknown, or ReferenceMJ not the one of that request)
    GET  /justice/ws/attestations-remise?wsdl   that WSDL, its soap:address set to the URL requested
    GET  /justice/ws/plis-judiciaires.xsd       the schema it imports
    POST /_sandbox/send-requests                Justice starts exchanges on its own, see `SendRequests`:
         {"addressees": [{"cnie": "BK123456", "name": "Youssef El Amrani"}], "document_type": "CONVOCATION"}
         -> 202 {"requests": [{"message_id", "reference", "cnie"}]}: one signed DemandeSignification per
            addressee, stored in <data>/JUSTICE/outbox/ and sent to the hub (after --answer-delay seconds)
            until it answers with a receipt
    GET  /_sandbox/requests                     every request sent: state (pending | acknowledged | rejected),
                                                the hub's receipt id, and the certificate's outcome once received
    GET  /healthz, GET /_sandbox/stats, POST /_sandbox/behaviour   (sandbox/common.py)

Requests go to the hub with zeep, loaded from the hub's own WSDL ({hub_url}/soap/JUSTICE?wsdl, over
HTTP): zeep builds the call from the WSDL (operation, SOAPAction, address, and the document parsed
against the WSDL's types), then the Body child is replaced by the signed document BYTE FOR BYTE and
the envelope is posted through zeep's transport. Delivery is durable and at-least-once with the same
IdentifiantMessage: a connection error, HTTP 5xx or a fault marked transient (RetryAfter) is retried
with backoff (0.5 s doubling to 10 s, or RetryAfter) for as long as the process runs, and the outbox
survives a restart; a soap:Client fault moves the request to rejected/ with the fault beside it. The
hub's receipt must verify against the pinned hub certificate and name the request's id; it is kept in
<data>/JUSTICE/receipts/<id>.xml.

Decision rules (deterministic): every certificate that verifies and answers a request Justice sent is
accepted; its acknowledgement number is "MJ-AR-" followed by the certificate id's digits. Behaviour
`fail` answers a soap:Server fault with HTTP `status`, marked transient (RetryAfter = `retry_after`, or
1 s) when `status` is 5xx; with a 4xx `status` the fault is soap:Client (permanent).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import requests
import zeep
import zeep.exceptions
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from lxml import etree
from lxml.builder import ElementMaker
from pydantic import BaseModel, ConfigDict, Field
from zeep.transports import Transport

from connectors.soap.envelope import (CONTENT_TYPE, SOAP_ENV, Fault, body_document_bytes, build_fault, parse_envelope,
                                      read_fault, wrap_document_bytes)
from connectors.soap.wsdl import render_wsdl
from connectors.http import read_body
from hub.errors import HubError, InputError, Problem
from hub.xml.schemas import ENVELOPE_NS
from hub.trust.signing import verify
from hub.xml.safe import parse_trusted
from sandbox.common import (MAX_REQUEST_BYTES, PROJECT_ROOT, PartnerSandbox, add_common_arguments, add_control_routes,
                            add_document_route, run_app, run_work)
from sandbox.delayed_queue import DelayedQueue
from sandbox.outbox import backoff_seconds, write_atomically

log = logging.getLogger(__name__)

PARTNER = "JUSTICE"
NS = "urn:ma:justice:plis-judiciaires:1"
XSD = "partners/justice/plis-judiciaires.xsd"
WSDL = PROJECT_ROOT / "schemas" / "partners" / "justice" / "attestations-remise.wsdl"
SERVICE_PATH = "/justice/ws/attestations-remise"
HUB_OPERATION = "DeposerDemandeSignification"
TIMEOUT_SECONDS = 10.0
OUTCOMES = ("REMIS", "REFUS", "INTROUVABLE", "DESTINATAIRE_INCONNU")

J = ElementMaker(namespace=NS, nsmap={None: NS})


def _tag(name: str) -> str:
    return f"{{{NS}}}{name}"


def _text(element: etree._Element, name: str) -> str:
    return (element.findtext(_tag(name)) or "").strip()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


# -- what Justice sends --------------------------------------------------------------------------


class Addressee(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    cnie: str = Field(pattern=r"^[A-Z]{1,2}[0-9]{5,6}$", description="The addressee's CNIE number")
    name: str = Field(min_length=1, max_length=200, description="The addressee's full name, as Justice knows it")


class SendRequests(BaseModel):
    """Justice sends one DemandeSignification per addressee to the hub."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    addressees: list[Addressee] = Field(min_length=1, max_length=500)
    document_type: Literal["CONVOCATION", "ASSIGNATION", "JUGEMENT", "ARRET", "ORDONNANCE",
                           "NOTIFICATION"] = "CONVOCATION"
    court_code: str = Field("TPI-CASA", pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,79}$")
    court_name: str = Field("Tribunal de première instance de Casablanca", min_length=1, max_length=200)
    hearing_date: dt.date | None = Field(None, description="None: 60 days from today")
    document: Literal["content", "reference"] = Field("content", description="The act as encrypted content "
                                                      "(opaque base64) or as a reference to an encrypted blob")


@dataclass
class SentRequest:
    message_id: str
    reference: str
    cnie: str
    state: str                     # pending | acknowledged | rejected
    outcome: str | None = None     # Resultat of the certificate, once received


# -- the partner ---------------------------------------------------------------------------------


class JusticeSandbox(PartnerSandbox):
    def __init__(self, *, pki_dir: Path, data_dir: Path, hub_url: str, mode: str = "normal", send_delay: float = 0.0):
        super().__init__(PARTNER, pki_dir=pki_dir, data_dir=data_dir, mode=mode)
        self.sender = HubSender(self, hub_url.rstrip("/") + f"/soap/{PARTNER}?wsdl", send_delay=send_delay)
        self.requests: dict[str, SentRequest] = {}
        for folder, state in ((self.sender.outbox_dir, "pending"), (self.sender.sent_dir, "acknowledged"),
                              (self.sender.rejected_dir, "rejected")):
            for path in folder.glob("*.xml"):
                document = parse_trusted(path.read_bytes())
                self.requests[path.stem] = SentRequest(path.stem, _text(document, "ReferenceMJ"),
                                                       _text(document.find(_tag("Destinataire")), "CNIE"), state)
        for path in self.received_dir.glob("*.xml"):
            certificate = parse_trusted(path.read_bytes())
            sent = self.requests.get(_text(certificate, "ReferenceDemande"))
            if sent is not None:
                sent.outcome = _text(certificate, "Resultat")

    # -- requests Justice starts ---------------------------------------------------------------

    def send_requests(self, order: SendRequests) -> list[dict]:
        """Sign one DemandeSignification per addressee, keep it in the outbox and queue it for the hub."""
        created = []
        for addressee in order.addressees:
            message_id, document = self._service_request(order, addressee)
            with self._lock:
                self.requests[message_id] = SentRequest(message_id, _text(document, "ReferenceMJ"), addressee.cnie,
                                                        "pending")
            self.sender.enqueue(message_id, self.sign(document, xsd=XSD, what="DemandeSignification"))
            created.append({"message_id": message_id, "reference": _text(document, "ReferenceMJ"),
                            "cnie": addressee.cnie})
        return created

    def _service_request(self, order: SendRequests, addressee: Addressee) -> tuple[str, etree._Element]:
        now, token = _utc_now(), uuid.uuid4().hex[:10].upper()
        message_id = f"MJ-DS-{now:%Y%m%d}-{token}"
        hearing = order.hearing_date or (now.date() + dt.timedelta(days=60))
        opaque = hashlib.sha512(token.encode()).digest() * 4  # stands for the encrypted act: never read by the hub
        if order.document == "content":
            act = J.ContenuChiffre(base64.b64encode(opaque).decode(), typeMime="application/pdf",
                                   chiffrement="AES-256-GCM")
        else:
            act = J.ReferenceChiffree(J.Uri(f"https://plis.justice.gov.ma/blobs/{token.lower()}.enc"),
                                      J.EmpreinteSHA256(hashlib.sha256(opaque).hexdigest()))
        document = J.DemandeSignification(
            J.IdentifiantMessage(message_id),
            J.ReferenceMJ(f"MJ-{now:%Y}-{token}"),
            J.DateEmission(now.isoformat()),
            J.Juridiction(J.Code(order.court_code), J.Nom(order.court_name)),
            J.NumeroDossier(f"{now:%Y}/{int(token[:4], 16) % 9000 + 1000}/{int(token[4:8], 16) % 900 + 100}"),
            J.TypeActe(order.document_type),
            J.DateAudience(hearing.strftime("%d/%m/%Y")),
            J.Destinataire(J.CNIE(addressee.cnie), J.NomComplet(addressee.name)),
            J.Acte(act),
        )
        return message_id, document

    def request_settled(self, message_id: str, state: str) -> None:
        with self._lock:
            if message_id in self.requests:
                self.requests[message_id].state = state
            self.counters[f"requests_{state}"] += 1

    # -- delivery certificates the hub sends ---------------------------------------------------

    def receive_certificate(self, envelope: bytes) -> bytes:
        """Check and store one AttestationRemise; return Justice's signed AccuseReception (same bytes for a repeat).

        Raises InputError subclasses (nothing stored) when it is refused."""
        document = parse_envelope(envelope, max_bytes=MAX_REQUEST_BYTES, what="requête SOAP")
        body = body_document_bytes(document)
        certificate = self.check_document(body, xsd=XSD, roots={_tag("AttestationRemise")}, what="AttestationRemise")
        certificate_id, request_id = _text(certificate, "IdentifiantMessage"), _text(certificate, "ReferenceDemande")
        with self._lock:
            sent = self.requests.get(request_id)
        if sent is None or sent.reference != _text(certificate, "ReferenceMJ"):
            raise InputError(f"DEMANDE_INCONNUE: Justice n'a envoyé aucune demande {request_id} "
                             f"(ReferenceMJ {_text(certificate, 'ReferenceMJ')})",
                             [Problem("ReferenceDemande inconnue ou ReferenceMJ différente",
                                      path="/AttestationRemise")])
        outcome = _text(certificate, "Resultat")
        answer, new = self.answer_once(certificate_id, body, lambda: self._acknowledgement(certificate_id))
        if new:
            with self._lock:
                sent.outcome = outcome
                self.counters[f"outcome_{outcome}"] += 1
        return answer

    def _acknowledgement(self, certificate_id: str) -> bytes:
        document = J.AccuseReception(
            J.ReferenceAttestation(certificate_id),
            J.NumeroEnregistrement("MJ-AR-" + (re.sub(r"\D", "", certificate_id) or "0")),
            J.DateReception(_utc_now().isoformat()),
        )
        return self.sign(document, xsd=XSD, what="AccuseReception")

    # -- views ---------------------------------------------------------------------------------

    def sent_requests(self) -> list[dict]:
        with self._lock:
            return [vars(r).copy() for r in sorted(self.requests.values(), key=lambda r: r.message_id)]

    def stats(self) -> dict:
        with self._lock:
            states = {"pending": 0, "acknowledged": 0, "rejected": 0}
            for request in self.requests.values():
                states[request.state] += 1
            outcomes = dict.fromkeys(OUTCOMES, 0)
            for request in self.requests.values():
                if request.outcome in outcomes:
                    outcomes[request.outcome] += 1
        return {**super().stats(), "requests": states, "outcomes": outcomes}


# -- durable sending to the hub ------------------------------------------------------------------


class HubSender:
    """Sends signed documents to the hub's SOAP endpoint from `outbox/` until it answers with a receipt.

    One worker thread owns the zeep client (built from the hub's WSDL on first use, rebuilt after a
    failure to load it)."""

    def __init__(self, sandbox: JusticeSandbox, wsdl_url: str, *, send_delay: float = 0.0):
        self.sandbox = sandbox
        self.wsdl_url = wsdl_url
        self.send_delay = send_delay
        home = sandbox.home
        self.outbox_dir, self.sent_dir = home / "outbox", home / "sent"
        self.rejected_dir, self.receipts_dir = home / "rejected", home / "receipts"
        for folder in (self.outbox_dir, self.sent_dir, self.rejected_dir, self.receipts_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._queue = DelayedQueue()
        self._client: zeep.Client | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="justice-sender", daemon=True)
        self._thread.start()
        for path in sorted(self.outbox_dir.glob("*.xml")):
            self._queue.put((path.stem, 1))

    def stop(self) -> None:
        self._queue.close()
        if self._thread is not None:
            self._thread.join(2)
        if self._client is not None:
            self._client.transport.session.close()

    def enqueue(self, message_id: str, document: bytes) -> None:
        write_atomically(self.outbox_dir / f"{message_id}.xml", document)
        self._queue.put((message_id, 1), self.send_delay)

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            message_id, attempt = task
            try:
                retry_in = self._deliver(message_id)
            except Exception:  # the worker must survive anything
                log.exception("sending %s failed; trying again", message_id)
                retry_in = backoff_seconds(attempt)
            if retry_in is not None:
                self._queue.put((message_id, attempt + 1), retry_in or backoff_seconds(attempt))

    def _deliver(self, message_id: str) -> float | None:
        """One attempt; returns None when settled, else seconds to wait (0: the usual backoff)."""
        path = self.outbox_dir / f"{message_id}.xml"
        if not path.exists():
            return None
        document = path.read_bytes()
        try:
            response = self._post(document)
        except (requests.RequestException, zeep.exceptions.Error, etree.Error, OSError) as exc:
            log.warning("%s not delivered to the hub (%s); retrying", message_id, type(exc).__name__)
            return 0
        try:
            answer = parse_envelope(response.content, max_bytes=MAX_REQUEST_BYTES, what="réponse du hub")
        except InputError:
            answer = None
        fault = read_fault(answer) if answer is not None else None
        if fault is not None and not fault.transient and fault.code.endswith("Client"):
            self._settle(message_id, path, self.rejected_dir, "rejected")
            write_atomically(self.rejected_dir / f"{message_id}.response.txt",
                             f"HTTP {response.status_code}\n\n".encode() + response.content)
            log.warning("%s refused by the hub: %s", message_id, fault.string)
            return None
        if fault is not None or answer is None or response.status_code != 200:
            log.warning("%s not accepted yet (HTTP %d%s); retrying", message_id, response.status_code,
                        f", {fault.code}: {fault.string}" if fault else "")
            return fault.retry_after if fault is not None and fault.retry_after else 0
        receipt = verify(answer, self.sandbox.hub_certificate, signer_name="hub")
        if receipt.findtext(f"{{{ENVELOPE_NS}}}MessageId") != message_id:
            log.warning("%s: the hub's receipt names another message; retrying", message_id)
            return 0
        write_atomically(self.receipts_dir / f"{message_id}.xml", body_document_bytes(answer))
        self._settle(message_id, path, self.sent_dir, "acknowledged")
        return None

    def _settle(self, message_id: str, path: Path, folder: Path, state: str) -> None:
        write_atomically(folder / path.name, path.read_bytes())
        path.unlink(missing_ok=True)
        self.sandbox.request_settled(message_id, state)

    def _post(self, document: bytes) -> requests.Response:
        """zeep builds the call from the hub's WSDL; the Body then carries `document` byte for byte."""
        if self._client is None:
            self._client = zeep.Client(self.wsdl_url, transport=Transport(timeout=TIMEOUT_SECONDS,
                                                                          operation_timeout=TIMEOUT_SECONDS))
        client = self._client
        values = client.get_element(_tag("DemandeSignification")).parse(parse_trusted(document), client.wsdl.types)
        envelope = client.create_message(client.service, HUB_OPERATION,
                                         **{name: values[name] for name in values})
        return client.transport.post(client.service._binding_options["address"],
                                     splice_body(envelope, document), soap_headers(client, HUB_OPERATION))


def splice_body(envelope: etree._Element, document: bytes) -> bytes:
    """`envelope` serialised with its Body child replaced by `document`, byte for byte (without its XML declaration)."""
    body = envelope.find(f"{{{SOAP_ENV}}}Body")
    for child in list(body):
        body.remove(child)
    body.text = None
    body.append(etree.Comment("document"))
    head, tail = etree.tostring(envelope, encoding="UTF-8", xml_declaration=True).split(b"<!--document-->")
    content = document.split(b"?>", 1)[1].lstrip() if document.startswith(b"<?xml") else document
    return head + content + tail


def soap_headers(client: zeep.Client, operation: str) -> dict:
    action = client.service._binding._operations[operation].soapaction or ""
    return {"Content-Type": CONTENT_TYPE, "SOAPAction": f'"{action}"'}


# -- HTTP ----------------------------------------------------------------------------------------


def fault_response(error: InputError) -> Response:
    status = error.status if error.status in (413, 415) else 500
    fault = Fault("soap:Client", error.detail, problems=error.problems)
    return Response(build_fault(fault), status_code=status, media_type=CONTENT_TYPE)


def create_app(sandbox: JusticeSandbox) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sandbox.sender.start()
        try:
            yield
        finally:
            sandbox.sender.stop()

    app = FastAPI(title="JUSTICE sandbox", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def deposer_attestation_remise(request: Request) -> Response:
        failing = sandbox.should_fail()
        if failing is not None:
            transient = failing.status >= 500
            fault = Fault("soap:Server" if transient else "soap:Client",
                          f"JUSTICE sandbox simulating a failure (HTTP {failing.status})",
                          retry_after=(failing.retry_after or 1) if transient else None)
            return Response(build_fault(fault), status_code=failing.status, media_type=CONTENT_TYPE)
        await sandbox.delay_if_slow()
        try:
            body = await read_body(request, max_bytes=MAX_REQUEST_BYTES, media_types=("text/xml",))
            answer = await run_work(sandbox.receive_certificate, body)
        except InputError as error:
            sandbox.count("refused")
            log.warning("certificate refused: %s", error.detail)
            return fault_response(error)
        return Response(wrap_document_bytes(answer), media_type=CONTENT_TYPE)
    add_document_route(app, SERVICE_PATH, deposer_attestation_remise)

    @app.get(SERVICE_PATH)
    async def wsdl(request: Request) -> Response:
        if "wsdl" not in request.query_params:
            return Response("append ?wsdl\n", status_code=404, media_type="text/plain")
        body = await run_in_threadpool(render_wsdl, WSDL, WSDL.parent, endpoint=str(request.url.replace(query=None)),
                                       schemas_url=None)
        return Response(body, media_type="text/xml; charset=utf-8")

    @app.get(SERVICE_PATH.rsplit("/", 1)[0] + "/plis-judiciaires.xsd")
    def schema() -> Response:  # imported by the WSDL, relative to it
        return Response((WSDL.parent / "plis-judiciaires.xsd").read_bytes(), media_type="application/xml")

    @app.post("/_sandbox/send-requests", status_code=202)
    async def send_requests(order: SendRequests) -> JSONResponse:
        try:
            created = await run_in_threadpool(sandbox.send_requests, order)
        except HubError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return JSONResponse({"requests": created}, status_code=202)

    @app.get("/_sandbox/requests")
    def sent_requests() -> list[dict]:
        return sandbox.sent_requests()

    add_control_routes(app, sandbox)
    return app


def add_arguments(parser) -> None:
    add_common_arguments(parser, port=8713, answer_delay=0.0)


def run(args) -> int:
    sandbox = JusticeSandbox(pki_dir=args.pki_dir, data_dir=args.data_dir, hub_url=args.hub_url, mode=args.mode,
                             send_delay=args.answer_delay)
    return run_app(create_app(sandbox), sandbox=sandbox, host=args.host, port=args.port)
