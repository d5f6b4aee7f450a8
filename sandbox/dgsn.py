"""DGSN sandbox: a simulator of the national police's consular services, over SOAP 1.1.

It serves DGSN's WSDL (schemas/partners/dgsn/services-consulaires.wsdl) and format
(services-consulaires.xsd), signs with DGSN's key and verifies the hub's signature:

    POST /dgsn/services-consulaires       one signed document as the single child of soap:Body
                                          -> 200, one document signed by DGSN in the Body
                                          -> 500 soap:Fault soap:Client (not SOAP, malformed, invalid,
                                             badly signed, SOAPAction not matching the document,
                                             unknown DGSN reference) with the problems in detail;
                                             nothing is stored
    GET  /dgsn/services-consulaires?wsdl  the WSDL (its soap:address set to this server)
    GET  /dgsn/services-consulaires.xsd   the schema the WSDL imports
    GET  /healthz, GET /_sandbox/stats, POST /_sandbox/behaviour   (sandbox/common.py)

Decisions (deterministic, from the data, so tests and the demo can predict them):

    VerifierIdentite                      by the LAST DIGIT of Personne/CNIE: 0-6 CONCORDANCE,
                                          7-8 DISCORDANCE (one Ecart on DateNaissance),
                                          9 INCONNU; no CNIE: INCONNU
    NotifierChangementAdresse             AccuseReception
    DeposerDemandePasseport               RecepisseDepotPasseport with DGSN's reference, then status
                                          callbacks, in order, each `--answer-delay` seconds after the
                                          previous one reached the hub: EN_FABRICATION ->
                                          EXPEDIE -> DISPONIBLE_AU_POSTE (passport number and expiry
                                          given from EXPEDIE on); when ReferenceEnrolementBiometrique
                                          ends in 9, one callback REJETE, Motif ENROLEMENT_INCOMPLET
    DeclarerRemisePasseport               AccuseReception; soap:Client fault when ReferenceDgsn is not
                                          an application DGSN accepted, or NumeroPasseport is not the
                                          passport it issued for it
    DemanderAutorisationPassageFrontiere  DecisionPassageFrontiere: REFUSE, Motif SCELLE_NON_CONFORME,
                                          when Transfert/NumeroScelle ends in 9; otherwise AUTORISE

Callbacks (NotificationStatutPasseport, each with its own IdentifiantMessage DGSN-N-<ref>-<n>,
naming the hub's request in ReferenceDemande and the case in ReferenceDossier) are SOAP calls to
{hub_url}/soap/DGSN (schemas/hub/dgsn-callbacks.wsdl, NotifyPassportStatus), sent durably through
sandbox/outbox.py; the hub's signed Receipt it answers with is verified against hub.crt and kept.

Exactly-once effect: requests are deduplicated by (document, IdentifiantMessage) -- the hub sends
one canonical message id to several operations -- and a repeat gets the first answer's bytes and
schedules nothing. Received documents are kept as `<data>/DGSN/received/<Document>-<id>.xml`.

Behaviour: `fail` answers HTTP `status` with a soap:Server fault marked transient (RetryAfter) when
`retry_after` is set, or with a plain-text body (no fault) otherwise; `slow` waits `delay_seconds`
before answering; `refuse` closes the port for `refuse_seconds`.
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from lxml.builder import ElementMaker

from connectors.soap.envelope import (CONTENT_TYPE, Fault, body_document_bytes, build_fault, parse_envelope,
                                      wrap_document_bytes)
from hub.errors import InputError, Problem, SchemaInvalid
from hub.trust.signing import verify
from hub.xml.safe import parse_trusted
from sandbox.common import (MAX_REQUEST_BYTES, PROJECT_ROOT, Behaviour, PartnerSandbox, add_common_arguments,
                            add_document_route, add_journal_only_argument, answer_post, digits, failure_response,
                            partner_app, run_app, tag, text, utc_now)
from sandbox.outbox import CallbackOutbox

log = logging.getLogger(__name__)

PARTNER = "DGSN"
NS = "urn:ma:dgsn:services-consulaires:1"
XSD = "partners/dgsn/services-consulaires.xsd"
WSDL_FILE = PROJECT_ROOT / "schemas" / "partners" / "dgsn" / "services-consulaires.wsdl"
XSD_FILE = PROJECT_ROOT / "schemas" / XSD
PATH = "/dgsn/services-consulaires"
WSDL_ADDRESS = b"http://127.0.0.1:8712/dgsn/services-consulaires"
CALLBACK_ACTION = "urn:ma:gov:consular:hub:dgsn-callbacks:1#NotifyPassportStatus"
ACTION_PREFIX = "urn:ma:dgsn:services-consulaires:1#"
PASSPORT_VALIDITY_YEARS = 5
PASSPORT_STEPS = ("EN_FABRICATION", "EXPEDIE", "DISPONIBLE_AU_POSTE")

D = ElementMaker(namespace=NS, nsmap={None: NS})


def identity_verdict(cnie: str) -> str:
    """CONCORDANCE (last digit 0-6), DISCORDANCE (7-8), INCONNU (9, or no CNIE)."""
    last = cnie.strip()[-1:]
    if not last.isdigit() or last == "9":
        return "INCONNU"
    return "CONCORDANCE" if int(last) <= 6 else "DISCORDANCE"


def passport_rejected(enrolment_reference: str) -> bool:
    """An application is rejected (ENROLEMENT_INCOMPLET) when its enrolment reference ends in 9."""
    return enrolment_reference.strip().endswith("9")


def border_decision(seal_number: str) -> str:
    """REFUSE when the seal number ends in 9 (SCELLE_NON_CONFORME), else AUTORISE."""
    return "REFUSE" if seal_number.strip().endswith("9") else "AUTORISE"


def passport_number_for(reference_dgsn: str) -> str:
    """The passport DGSN issues for an application: "Z" + the reference's last 8 digits."""
    return "Z" + digits(reference_dgsn)[-8:].rjust(8, "0")


class DgsnSandbox(PartnerSandbox):
    """DGSN's decisions and callbacks on top of the shared sandbox state."""

    def __init__(self, *, pki_dir: Path, data_dir: Path, hub_url: str, answer_delay: float, mode: str = "normal",
                 journal_only: bool = False):
        super().__init__(PARTNER, pki_dir=pki_dir, data_dir=data_dir, mode=mode, journal_only=journal_only)
        self.answer_delay = answer_delay
        self._chain: dict[str, tuple[str, int]] = {}  # notification id -> (application key, step)
        self.outbox = CallbackOutbox(self.home, hub_url.rstrip("/") + f"/soap/{PARTNER}",
                                     on_delivered=self._delivered,
                                     soap_action=CALLBACK_ACTION, check_answer=self._check_receipt)
        self.operations = {
            "VerifierIdentite": self._verify_identity,
            "NotifierChangementAdresse": self._acknowledge,
            "DeposerDemandePasseport": self._passport_receipt,
            "DeclarerRemisePasseport": self._handover,
            "DemanderAutorisationPassageFrontiere": self._border_clearance,
        }
        self.roots = {tag(name, NS) for name in self.operations}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Deliver callbacks; resume each application's sequence where a restart left it."""
        for path in sorted(self.acknowledged_dir.glob("DeposerDemandePasseport-*.xml")):
            reference = text(parse_trusted(path.read_bytes()), "ReferenceDgsn", NS)
            for step in range(1, len(self._steps(path.stem)) + 1):
                name = f"{self._notification_id(reference, step)}.xml"
                if (self.outbox.sent_dir / name).exists():
                    continue
                if (self.outbox.outbox_dir / name).exists():  # pending: its delivery continues the sequence
                    self._chain[self._notification_id(reference, step)] = (path.stem, step)
                elif not (self.outbox.rejected_dir / name).exists():
                    self._produce(path.stem, reference, step)
                break
        super().start()

    # -- requests ----------------------------------------------------------------------------------

    def handle(self, envelope: bytes, soap_action: str | None) -> bytes:
        """One SOAP request -> the answer document (signed by DGSN). Raises InputError when refused."""
        document = parse_envelope(envelope, max_bytes=MAX_REQUEST_BYTES, what="SOAP request")
        if document.tag not in self.roots:
            raise SchemaInvalid(f"DGSN has no operation taking {document.tag}",
                                [Problem("unexpected document in soap:Body", line=document.sourceline,
                                         path="/Envelope/Body/*")])
        operation = etree.QName(document).localname
        action = (soap_action or "").strip().strip('"')
        if action and action != ACTION_PREFIX + operation:
            raise SchemaInvalid(f"SOAPAction {action!r} does not match the {operation} document",
                                [Problem(f"expected SOAPAction {ACTION_PREFIX + operation}")])
        body = body_document_bytes(document)
        request = self.check_document(body, xsd=XSD, roots=self.roots, what=operation)
        request_id = text(request, "IdentifiantMessage", NS)
        answer, new = self.answer_once(f"{operation}-{request_id}", body,
                                       lambda: self.operations[operation](request, self._next_reference()))
        if new:  # counted here: the store's lock is not held any more
            answered = parse_trusted(answer)
            outcome = text(answered, "Resultat", NS) or text(answered, "Decision", NS)
            self.count(f"{operation}_{outcome}" if outcome else operation)
            if operation == "DeposerDemandePasseport":
                self._produce(f"{operation}-{request_id}", text(answered, "ReferenceDgsn", NS), 1)
        return answer

    # The operations below run under the store's lock (answer_once): they must not call self.count.

    def _next_reference(self) -> str:
        return f"DGSN-{utc_now().year}-{len(self._answers) + 1:06d}"

    def _answer_head(self, request: etree._Element, reference: str) -> list[etree._Element]:
        return [D.IdentifiantMessage(f"DGSN-R-{digits(reference)}"),
                D.ReferenceDemande(text(request, "IdentifiantMessage", NS)),
                D.ReferenceDossier(text(request, "ReferenceDossier", NS)),
                D.ReferenceDgsn(reference)]

    def _verify_identity(self, request: etree._Element, reference: str) -> bytes:
        verdict = identity_verdict(text(request, "Personne/CNIE", NS))
        answer = D.ResultatVerificationIdentite(*self._answer_head(request, reference),
                                                D.DateVerification(utc_now().isoformat()), D.Resultat(verdict))
        if verdict == "DISCORDANCE":
            answer.append(D.Ecart("La date de naissance ne correspond pas au fichier de la CNIE",
                                  champ="DateNaissance"))
        return self.sign(answer, xsd=XSD, what="ResultatVerificationIdentite")

    def _acknowledge(self, request: etree._Element, reference: str) -> bytes:
        answer = D.AccuseReception(D.ReferenceDemande(text(request, "IdentifiantMessage", NS)),
                                   D.ReferenceDossier(text(request, "ReferenceDossier", NS)),
                                   D.ReferenceDgsn(reference), D.DateReception(utc_now().isoformat()))
        return self.sign(answer, xsd=XSD, what="AccuseReception")

    def _passport_receipt(self, request: etree._Element, reference: str) -> bytes:
        answer = D.RecepisseDepotPasseport(*self._answer_head(request, reference),
                                           D.DateReception(utc_now().isoformat()))
        return self.sign(answer, xsd=XSD, what="RecepisseDepotPasseport")

    def _handover(self, request: etree._Element, reference: str) -> bytes:
        reference_dgsn = text(request, "ReferenceDgsn", NS)
        application = self._application_by_reference(reference_dgsn)
        if application is None:
            raise SchemaInvalid(f"DOSSIER_INCONNU: no passport application with DGSN reference {reference_dgsn!r}",
                                [Problem("unknown ReferenceDgsn", path="/DeclarerRemisePasseport/ReferenceDgsn")])
        number = text(request, "NumeroPasseport", NS)
        if number != passport_number_for(reference_dgsn) or passport_rejected(
                text(application, "ReferenceEnrolementBiometrique", NS)):
            raise SchemaInvalid(f"NUMERO_PASSEPORT_INCORRECT: DGSN issued no passport {number!r} for {reference_dgsn}",
                                [Problem("wrong NumeroPasseport", path="/DeclarerRemisePasseport/NumeroPasseport")])
        return self._acknowledge(request, reference)

    def _border_clearance(self, request: etree._Element, reference: str) -> bytes:
        decision = border_decision(text(request, "Transfert/NumeroScelle", NS))
        answer = D.DecisionPassageFrontiere(*self._answer_head(request, reference),
                                            D.DateDecision(utc_now().isoformat()), D.Decision(decision))
        if decision == "REFUSE":
            answer.append(D.Motif("SCELLE_NON_CONFORME"))
            answer.append(D.LibelleMotif("Le numéro de scellé du cercueil ne correspond pas au procès-verbal "
                                         "de mise en bière"))
        return self.sign(answer, xsd=XSD, what="DecisionPassageFrontiere")

    def _application_by_reference(self, reference_dgsn: str) -> etree._Element | None:
        """The stored DeposerDemandePasseport that DGSN acknowledged under `reference_dgsn`."""
        for path in self.acknowledged_dir.glob("DeposerDemandePasseport-*.xml"):
            if text(parse_trusted(path.read_bytes()), "ReferenceDgsn", NS) == reference_dgsn:
                return parse_trusted((self.received_dir / path.name).read_bytes())
        return None

    # -- passport status callbacks -----------------------------------------------------------------

    @staticmethod
    def _notification_id(reference_dgsn: str, step: int) -> str:
        return f"DGSN-N-{digits(reference_dgsn)}-{step}"

    def _steps(self, key: str) -> tuple[str, ...]:
        request = parse_trusted((self.received_dir / f"{key}.xml").read_bytes())
        return ("REJETE",) if passport_rejected(text(request, "ReferenceEnrolementBiometrique", NS)) else PASSPORT_STEPS

    def _produce(self, key: str, reference: str, step: int) -> None:
        """Send notification `step` of application `key` after the answer delay."""
        self._chain[self._notification_id(reference, step)] = (key, step)
        self.outbox.produce_later(lambda: self.notification(key, step), self.answer_delay)

    def _delivered(self, document_id: str) -> None:
        """A callback reached the hub: the next one of the same application follows, in order."""
        self.count("callbacks_sent")
        key, step = self._chain.pop(document_id, (None, 0))
        if key is not None and step < len(self._steps(key)):
            receipt = parse_trusted((self.acknowledged_dir / f"{key}.xml").read_bytes())
            self._produce(key, text(receipt, "ReferenceDgsn", NS), step + 1)

    def notification(self, key: str, step: int) -> tuple[str, bytes]:
        """The signed NotificationStatutPasseport number `step` for the stored application `key`."""
        request = parse_trusted((self.received_dir / f"{key}.xml").read_bytes())
        receipt = parse_trusted((self.acknowledged_dir / f"{key}.xml").read_bytes())
        reference = text(receipt, "ReferenceDgsn", NS)
        status = self._steps(key)[step - 1]
        document = D.NotificationStatutPasseport(
            D.IdentifiantMessage(self._notification_id(reference, step)),
            D.ReferenceDemande(text(request, "IdentifiantMessage", NS)),
            D.ReferenceDossier(text(request, "ReferenceDossier", NS)),
            D.ReferenceDgsn(reference),
            D.Statut(status),
            D.DateStatut(utc_now().isoformat()),
        )
        if status in ("EXPEDIE", "DISPONIBLE_AU_POSTE"):
            expiry = utc_now().date() + dt.timedelta(days=365 * PASSPORT_VALIDITY_YEARS)
            document.append(D.NumeroPasseport(passport_number_for(reference)))
            document.append(D.DateExpiration(expiry.strftime("%d/%m/%Y")))
            document.append(D.NumeroExpedition(f"EXP-{digits(reference)}"))
        if status == "REJETE":
            document.append(D.Motif("ENROLEMENT_INCOMPLET"))
            document.append(D.LibelleMotif("Les données biométriques de l'enrôlement sont introuvables ou incomplètes "
                                           "à la station de capture"))
        self.count(f"passport_{status}")
        return self._notification_id(reference, step), self.sign(document, xsd=XSD, what="NotificationStatutPasseport")

    def _check_receipt(self, document_id: str, answer: bytes) -> None:
        """The hub's answer to a callback must be its Receipt, signed by the hub."""
        try:
            verify(parse_trusted(answer), self.hub_certificate, signer_name="hub")
        except (InputError, etree.Error, ValueError) as exc:
            self.count("hub_receipts_invalid")
            log.warning("the hub's answer to %s does not verify: %s", document_id, exc)
            return
        self.count("hub_receipts_verified")


# -- HTTP ----------------------------------------------------------------------------------------


def _fault_response(fault: Fault, status: int = 500, headers: dict | None = None) -> Response:
    return Response(build_fault(fault), status_code=status, media_type=CONTENT_TYPE, headers=headers)


def _failure_response(failing: Behaviour) -> Response:
    """A soap:Server fault marked transient when `retry_after` is set, else the plain-text failure."""
    if failing.retry_after is None:
        return failure_response(failing, PARTNER)
    return _fault_response(Fault("soap:Server", "DGSN sandbox simulating a failure", retry_after=failing.retry_after),
                           failing.status, {"Retry-After": str(failing.retry_after)})


def create_app(sandbox: DgsnSandbox) -> FastAPI:
    app = partner_app(sandbox)
    wsdl, xsd = WSDL_FILE.read_bytes(), XSD_FILE.read_bytes()

    @app.get(PATH)
    def get_wsdl(request: Request) -> Response:
        if "wsdl" not in {key.lower() for key in request.query_params}:
            return Response("GET ?wsdl for the WSDL; POST SOAP requests here\n", status_code=405,
                            media_type="text/plain")
        address = f"{request.base_url}".rstrip("/") + PATH
        return Response(wsdl.replace(WSDL_ADDRESS, address.encode()), media_type="text/xml")

    @app.get(PATH + ".xsd")
    def get_xsd() -> Response:
        return Response(xsd, media_type="text/xml")

    async def soap(request: Request) -> Response:
        return await answer_post(
            request, sandbox, lambda envelope: sandbox.handle(envelope, request.headers.get("soapaction")),
            content_type="text/xml", failure=_failure_response,
            refused=lambda error: _fault_response(Fault("soap:Client", error.detail, problems=error.problems)),
            respond=lambda answer: Response(wrap_document_bytes(answer), media_type=CONTENT_TYPE))
    add_document_route(app, PATH, soap)

    return app


def add_arguments(parser) -> None:
    add_common_arguments(parser, port=8712, answer_delay=0.2)
    add_journal_only_argument(parser)


def run(args) -> int:
    sandbox = DgsnSandbox(pki_dir=args.pki_dir, data_dir=args.data_dir, hub_url=args.hub_url,
                          answer_delay=args.answer_delay, mode=args.mode, journal_only=args.journal_only)
    return run_app(create_app(sandbox), sandbox=sandbox, host=args.host, port=args.port)
