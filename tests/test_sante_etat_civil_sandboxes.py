"""The SANTE and ETAT_CIVIL sandboxes as real processes on loopback, with a real HTTP server playing
the hub's callback endpoint.

Requests are the project's own mappings applied to the canonical sample cases (mappings/*/cases),
signed with the hub's key; answers and callbacks are validated against the partner's XSD and
verified against the partner's certificate.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import threading
from pathlib import Path

import httpx
import pytest
from lxml import etree

from conftest import wait_for
from hub.xml.mapping import MappingSet
from hub.trust.pki import load_certificate
from hub.trust.receipts import build_receipt
from hub.xml.schemas import SchemaSet
from hub.settings import PROJECT_ROOT
from hub.trust.signing import verify
from hub.xml.safe import to_bytes
from sandbox.etat_civil import burial_decision, extract_found, transcription_decision
from sandbox.sante import health_decision
from support import signer_for

pytestmark = pytest.mark.slow

EC = "urn:ma:interieur:etat-civil:1"
SA = "urn:ma:sante:autorisation-sanitaire:1"
EC_BASE = "/etat-civil/v1"
SANTE_PATH = "/sante/v1/autorisations-sanitaires"
CASES = PROJECT_ROOT / "mappings"
EXTRACT_CASE = CASES / "etat-civil/cases/civil-status-extract.to-etat-civil/birth-act.input.xml"
TRANSCRIPTION_CASE = CASES / "etat-civil/cases/transcription.to-etat-civil/birth-with-parents.input.xml"
BURIAL_CASE = CASES / "etat-civil/cases/burial-notice.to-etat-civil/with-cnie-and-province.input.xml"
HEALTH_CASE = CASES / "sante/cases/health-clearance.to-sante/cardiac-arrest.input.xml"


def ec(tag: str) -> str:
    return f"{{{EC}}}{tag}"


def sa(tag: str) -> str:
    return f"{{{SA}}}{tag}"


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return MappingSet(PROJECT_ROOT / "mappings")


@pytest.fixture(scope="module")
def schemas() -> SchemaSet:
    return SchemaSet(PROJECT_ROOT / "schemas")


@pytest.fixture
def partner_request(pki_dir, mappings):
    """partner_request(case, mapping, message_id, **text replacements) -> the partner document, signed by the hub."""
    hub = signer_for(pki_dir, "hub")

    def build(case: Path, mapping: str, message_id: str, replace: dict[str, str] | None = None,
              signed_by=None) -> bytes:
        text = case.read_text(encoding="utf-8")
        old_id = etree.fromstring(case.read_bytes()).findtext("{*}Header/{*}MessageId")
        text = text.replace(old_id, message_id)
        for old, new in (replace or {}).items():
            assert old in text, f"{old!r} not in {case.name}"
            text = text.replace(old, new)
        document = mappings.apply(mapping, etree.fromstring(text.encode()))
        return to_bytes((signed_by or hub).sign(document))
    return build


# -- the hub's callback endpoint, played by a tiny real HTTP server --------------------------------


class HubReceiver:
    """Records every callback; answers 202 with a receipt signed by the hub, or 503 while `failing`."""

    def __init__(self, hub_signer):
        self.bodies: list[bytes] = []
        self.attempts = 0
        self.failing = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.attempts += 1
                    failing = receiver.failing
                    if not failing:
                        receiver.bodies.append(body)
                if failing:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                message_id = etree.fromstring(body).findtext(ec("IdentifiantMessage"))
                receipt = build_receipt(hub_signer, message_id=message_id, sender="ETAT_CIVIL",
                                        digest=hashlib.sha256(body).hexdigest(),
                                        received_at=dt.datetime.now(dt.timezone.utc))
                self.send_response(202)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(receipt)))
                self.end_headers()
                self.wfile.write(receipt)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def callbacks(self) -> list[etree._Element]:
        with self.lock:
            return [etree.fromstring(body) for body in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(pki_dir):
    hub = HubReceiver(signer_for(pki_dir, "hub"))
    yield hub
    hub.close()


@pytest.fixture
def sante(start_sandbox, receiver):
    return start_sandbox("sante", receiver.url)


@pytest.fixture
def etat_civil(start_sandbox, receiver):
    return start_sandbox("etat_civil", receiver.url, extra_args=["--answer-delay", "0.1"])


def post(url: str, body: bytes, content_type: str = "application/xml", timeout: float = 10) -> httpx.Response:
    return httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=timeout)


def partner_answer(response: httpx.Response, schemas, xsd: str, certificate) -> etree._Element:
    """The answer, valid in the partner's format and signed by the partner."""
    document = etree.fromstring(response.content)
    schemas.validate(document, xsd, what="answer")
    return verify(document, certificate, signer_name="partner")


# -- the rules ------------------------------------------------------------------------------------


def test_documented_rules():
    assert health_decision("A15.0") == health_decision("b20") == "DEFAVORABLE"
    assert health_decision("I21.9") == health_decision("C34") == "FAVORABLE"
    assert not extract_found("889") and extract_found("1234")
    assert transcription_decision("2026/1529") == "REJETE" and transcription_decision("D-7781") == "TRANSCRIT"
    assert burial_decision("1511019") == "REFUSEE" and burial_decision("1441011") == "ACCORDEE"


# -- SANTE ----------------------------------------------------------------------------------------


def test_sante_answers_signed_opinions_decided_by_the_icd10_code(sante, partner_request, schemas, pki_dir):
    certificate = load_certificate(str(pki_dir / "SANTE.crt"))
    mapping = "sante/health-clearance.to-sante.xsl"
    favourable = post(sante.url + SANTE_PATH, partner_request(HEALTH_CASE, mapping, "REGISTRY-REP-2026-000101"))
    assert favourable.status_code == 200, favourable.text
    opinion = partner_answer(favourable, schemas, "partners/sante/autorisation-sanitaire.xsd", certificate)
    assert opinion.findtext(sa("Avis")) == "FAVORABLE" and opinion.find(sa("Motif")) is None
    assert opinion.findtext(sa("ReferenceDemande")) == "REGISTRY-REP-2026-000101"
    assert opinion.findtext(sa("ReferenceDossier")) == "REP-2026-000005"

    contagious = partner_request(HEALTH_CASE, mapping, "REGISTRY-REP-2026-000102", {"I21.9": "A15.0"})
    refused = partner_answer(post(sante.url + SANTE_PATH, contagious), schemas,
                             "partners/sante/autorisation-sanitaire.xsd", certificate)
    assert refused.findtext(sa("Avis")) == "DEFAVORABLE"
    assert refused.findtext(f"{sa('Motif')}/{sa('Code')}") == "RISQUE_CONTAGION"
    assert refused.findtext(sa("IdentifiantMessage")) != opinion.findtext(sa("IdentifiantMessage"))

    # a repeat of the same message id gets the same answer bytes, and is not stored twice
    again = post(sante.url + SANTE_PATH, contagious)
    assert again.content == post(sante.url + SANTE_PATH, contagious).content
    stats = sante.stats()
    assert stats["stored"] == 2 and stats["duplicates"] == 2 and stats["opinion_DEFAVORABLE"] == 1
    stored = sorted(p.name for p in (sante.data_dir / "SANTE" / "received").glob("*.xml"))
    assert stored == ["REGISTRY-REP-2026-000101.xml", "REGISTRY-REP-2026-000102.xml"]
    assert (sante.data_dir / "SANTE" / "received" / stored[1]).read_bytes() == contagious


def test_sante_refuses_what_the_hub_did_not_sign(sante, partner_request, pki_dir):
    mapping = "sante/health-clearance.to-sante.xsl"
    forged = partner_request(HEALTH_CASE, mapping, "REGISTRY-REP-2026-000201",
                             signed_by=signer_for(pki_dir, "REGISTRY"))
    response = post(sante.url + SANTE_PATH, forged)
    assert response.status_code == 400
    assert etree.fromstring(response.content).findtext(sa("Code")) == "SIGNATURE_INVALIDE"
    genuine = partner_request(HEALTH_CASE, mapping, "REGISTRY-REP-2026-000202")
    altered = genuine.replace(b"I21.9", b"I21.0")
    assert etree.fromstring(post(sante.url + SANTE_PATH, altered).content).findtext(sa("Code")) == "SIGNATURE_INVALIDE"
    assert post(sante.url + SANTE_PATH, genuine, content_type="text/plain").status_code == 415
    wrong = post(sante.url + SANTE_PATH, partner_request(BURIAL_CASE, "etat-civil/burial-notice.to-etat-civil.xsl",
                                                         "REGISTRY-REP-2026-000203"))
    assert wrong.status_code == 400 and b"SCHEMA_INVALIDE" in wrong.content
    assert post(sante.url + SANTE_PATH, b"<DemandeAutorisationSanitaire").status_code == 400
    assert sante.stats()["stored"] == 0 and sante.stats()["refused"] == 5
    assert not list((sante.data_dir / "SANTE" / "received").glob("*.xml"))


def test_failure_modes_and_recovery(sante, partner_request):
    body = partner_request(HEALTH_CASE, "sante/health-clearance.to-sante.xsl", "REGISTRY-REP-2026-000301")
    sante.behave(mode="fail", status=503, retry_after=7)
    failed = post(sante.url + SANTE_PATH, body)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "7"
    sante.behave(mode="fail", status=429, retry_after=None, fail_every=2)
    assert [post(sante.url + SANTE_PATH, body).status_code for _ in range(4)] == [200, 429, 200, 429]
    sante.behave(mode="slow", delay_seconds=0.6)
    with pytest.raises(httpx.ReadTimeout):
        post(sante.url + SANTE_PATH, body, timeout=0.3)
    sante.behave(mode="refuse", refuse_seconds=1.0)
    with pytest.raises(httpx.ConnectError):
        post(sante.url + SANTE_PATH, body)
    assert wait_for(lambda: _answers(sante.url + SANTE_PATH, body), 10, what="SANTE listening again") == 200
    assert sante.stats()["behaviour"] == "normal" and sante.stats()["stored"] == 1


def _answers(url: str, body: bytes) -> int | None:
    try:
        return post(url, body, timeout=2).status_code
    except httpx.TransportError:
        return None


# -- ETAT_CIVIL -----------------------------------------------------------------------------------


def test_extract_is_issued_signed_on_its_own_or_not_found(etat_civil, partner_request, schemas, pki_dir):
    certificate = load_certificate(str(pki_dir / "ETAT_CIVIL.crt"))
    mapping = "etat-civil/civil-status-extract.to-etat-civil.xsl"
    issued = post(etat_civil.url + EC_BASE + "/extraits", partner_request(EXTRACT_CASE, mapping, "REGISTRY-EXT-1"))
    assert issued.status_code == 200, issued.text
    extract = partner_answer(issued, schemas, "partners/etat-civil/extraits.xsd", certificate)
    assert etree.QName(extract).localname == "Extrait"
    assert extract.findtext(f"{ec('Acte')}/{ec('NumeroActe')}") == "1234"
    assert extract.findtext(f"{ec('Titulaire')}/{ec('NomArabe')}") == "العمراني"
    assert extract.findtext(ec("ReferenceDemande")) == "REGISTRY-EXT-1"

    missing = partner_request(EXTRACT_CASE, mapping, "REGISTRY-EXT-2", {"<cs:Number>1234<": "<cs:Number>889<"})
    not_found = partner_answer(post(etat_civil.url + EC_BASE + "/extraits", missing), schemas,
                               "partners/etat-civil/extraits.xsd", certificate)
    assert etree.QName(not_found).localname == "ActeIntrouvable"
    assert not_found.findtext(f"{ec('Motif')}/{ec('Code')}") == "ACTE_INTROUVABLE"
    assert etat_civil.stats()["extracts_issued"] == 1 and etat_civil.stats()["extracts_not_found"] == 1


def test_burial_notice_decision(etat_civil, partner_request, schemas, pki_dir):
    certificate = load_certificate(str(pki_dir / "ETAT_CIVIL.crt"))
    mapping = "etat-civil/burial-notice.to-etat-civil.xsl"
    url = etat_civil.url + EC_BASE + "/avis-inhumation"
    granted = partner_answer(post(url, partner_request(BURIAL_CASE, mapping, "REGISTRY-REP-1")), schemas,
                             "partners/etat-civil/avis-inhumation.xsd", certificate)
    assert granted.findtext(ec("Decision")) == "ACCORDEE" and granted.find(ec("Motif")) is None
    unknown = partner_request(BURIAL_CASE, mapping, "REGISTRY-REP-2", {"1441011": "1441019"})
    refused = partner_answer(post(url, unknown), schemas, "partners/etat-civil/avis-inhumation.xsd", certificate)
    assert refused.findtext(ec("Decision")) == "REFUSEE"
    assert refused.findtext(f"{ec('Motif')}/{ec('Code')}") == "COMMUNE_INCONNUE"
    # an operation takes only its own document
    wrong = post(etat_civil.url + EC_BASE + "/extraits", partner_request(BURIAL_CASE, mapping, "REGISTRY-REP-3"))
    assert wrong.status_code == 400 and b"SCHEMA_INVALIDE" in wrong.content


def test_transcriptions_are_acknowledged_then_decided_by_callback(etat_civil, receiver, partner_request, schemas,
                                                                   pki_dir):
    certificate = load_certificate(str(pki_dir / "ETAT_CIVIL.crt"))
    mapping = "etat-civil/transcription.to-etat-civil.xsl"
    url = etat_civil.url + EC_BASE + "/transcriptions"
    accepted = partner_request(TRANSCRIPTION_CASE, mapping, "REGISTRY-TRN-1")
    missing_documents = partner_request(TRANSCRIPTION_CASE, mapping, "REGISTRY-TRN-2", {"2026/1520": "2026/1529"})
    first = post(url, accepted)
    assert first.status_code == 202, first.text
    ack = partner_answer(first, schemas, "partners/etat-civil/transcriptions.xsd", certificate)
    assert etree.QName(ack).localname == "AccuseReceptionTranscription"
    assert post(url, accepted).content == first.content  # a repeat: same acknowledgement, no second decision
    assert post(url, missing_documents).status_code == 202

    results = wait_for(lambda: len(receiver.callbacks()) >= 2 and receiver.callbacks(), 10, what="two callbacks")
    by_request = {}
    for result in results:
        schemas.validate(result, "partners/etat-civil/transcriptions.xsd", what="callback")
        verified = verify(result, certificate, signer_name="ETAT_CIVIL")
        by_request[verified.findtext(ec("ReferenceDemande"))] = verified
    transcribed, rejected = by_request["REGISTRY-TRN-1"], by_request["REGISTRY-TRN-2"]
    assert transcribed.findtext(ec("Decision")) == "TRANSCRIT"
    assert transcribed.findtext(ec("ReferenceEtatCivil")) == ack.findtext(ec("ReferenceEtatCivil"))
    assert transcribed.findtext(f"{ec('ActeMarocain')}/{ec('Nature')}") == "NAISSANCE"
    assert transcribed.findtext(f"{ec('ActeMarocain')}/{ec('Bureau')}") == "CONS-FR-PARIS"
    assert rejected.findtext(ec("Decision")) == "REJETE"
    assert rejected.findtext(f"{ec('Motif')}/{ec('Code')}") == "PIECES_MANQUANTES"
    wait_for(lambda: etat_civil.stats()["pending_callbacks"] == 0, 5, what="the outbox to empty")
    assert len(receiver.callbacks()) == 2 and etat_civil.stats()["callbacks_sent"] == 2


def test_transcription_callback_survives_hub_outage_and_sandbox_restart(start_sandbox, receiver, partner_request,
                                                                       pki_dir):
    etat_civil = start_sandbox("etat_civil", receiver.url, extra_args=["--answer-delay", "0.1"])
    receiver.failing = True
    body = partner_request(TRANSCRIPTION_CASE, "etat-civil/transcription.to-etat-civil.xsl", "REGISTRY-TRN-9")
    assert post(etat_civil.url + EC_BASE + "/transcriptions", body).status_code == 202
    wait_for(lambda: receiver.attempts >= 2, 10, what="callback attempts while the hub fails")
    etat_civil.stop()
    assert len(list((etat_civil.data_dir / "ETAT_CIVIL" / "outbox").glob("*.xml"))) == 1
    receiver.failing = False
    restarted = start_sandbox("etat_civil", receiver.url, extra_args=["--answer-delay", "0.1"])
    [result] = wait_for(receiver.callbacks, 15, what="the callback after the restart")
    verify(result, load_certificate(str(pki_dir / "ETAT_CIVIL.crt")), signer_name="ETAT_CIVIL")
    assert result.findtext(ec("ReferenceDemande")) == "REGISTRY-TRN-9"
    # the restarted sandbox still knows the request: a repeat gets the first acknowledgement
    assert post(restarted.url + EC_BASE + "/transcriptions", body).status_code == 202
    assert restarted.stats()["duplicates"] == 1 and restarted.stats()["stored"] == 1


def test_unknown_operation_is_not_found(etat_civil):
    assert post(etat_civil.url + EC_BASE + "/divorces", b"<x/>").status_code == 404
