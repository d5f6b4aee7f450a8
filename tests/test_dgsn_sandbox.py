"""The DGSN sandbox process: its WSDL, its deterministic decisions, its refusals, and its status
callbacks, sent over SOAP to a loopback server playing the hub's /soap/DGSN endpoint."""
from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import zeep
from lxml import etree
from lxml.builder import ElementMaker

from conftest import free_port, wait_for
from connectors.soap.envelope import Fault, build_fault, parse_envelope, read_fault, wrap_document_bytes
from hub.trust import pki
from hub.trust.receipts import build_receipt
from hub.trust.signing import Signer, verify
from hub.xml.safe import to_bytes

NS = "urn:ma:dgsn:services-consulaires:1"
D = ElementMaker(namespace=NS, nsmap={None: NS})
ACTION = "urn:ma:dgsn:services-consulaires:1#"
NOW = dt.datetime(2026, 11, 23, 10, tzinfo=dt.timezone.utc).isoformat()


def signer(pki_dir, party="hub") -> Signer:
    return Signer(pki.load_key(str(pki_dir / f"{party}.key")), pki.load_certificate(str(pki_dir / f"{party}.crt")))


def identity(message_id, cnie="BK123453"):
    person = ([D.CNIE(cnie)] if cnie else []) + [D.Nom("Alaoui"), D.Prenom("Khadija"), D.NomArabe("العلوي"),
                                                 D.PrenomArabe("خديجة"), D.DateNaissance("02/03/1979")]
    return D.VerifierIdentite(D.IdentifiantMessage(message_id), D.ReferenceDossier("REG-2026-000001"),
                              D.DateEmission(NOW), D.PosteConsulaire("FR-PARIS"), D.Personne(*person))


def application(message_id, enrolment, case="PAS-2026-000001"):
    return D.DeposerDemandePasseport(
        D.IdentifiantMessage(message_id), D.ReferenceDossier(case), D.DateEmission(NOW), D.PosteConsulaire("FR-PARIS"),
        D.NatureDemande("PREMIERE_DEMANDE"),
        D.Demandeur(D.CNIE("BK123453"), D.Nom("Alaoui"), D.Prenom("Khadija"), D.NomArabe("العلوي"),
                    D.PrenomArabe("خديجة"), D.DateNaissance("02/03/1979"), D.Sexe("F")),
        D.ReferenceEnrolementBiometrique(enrolment), D.PosteRetrait("FR-PARIS"))


def border(message_id, seal):
    return D.DemanderAutorisationPassageFrontiere(
        D.IdentifiantMessage(message_id), D.ReferenceDossier("REP-2026-000001"), D.DateEmission(NOW),
        D.PosteConsulaire("ES-MADRID"),
        D.Defunt(D.Nom("Benali"), D.Prenom("Fatima"), D.NomArabe("بنعلي"), D.PrenomArabe("فاطمة"),
                 D.DateNaissance("03/02/1951"), D.Sexe("F")),
        D.Deces(D.Date("20/11/2026"), D.Pays("ES"), D.Ville("Madrid")),
        D.Transfert(D.PointEntree("CMN"), D.DateArrivee("25/11/2026"), D.Transporteur("RAM"), D.NumeroScelle(seal),
                    D.CommuneInhumation("1410101")))


class Dgsn:
    """Calls the sandbox as the hub does: a hub-signed document in a SOAP body."""

    def __init__(self, box, pki_dir):
        self.box, self.hub = box, signer(pki_dir)
        self.certificate = pki.load_certificate(str(pki_dir / "DGSN.crt"))

    def post(self, document, *, sign=True, action=None, content_type="text/xml; charset=utf-8"):
        body = to_bytes(self.hub.sign(document) if sign else document)
        operation = etree.QName(document).localname
        return httpx.post(f"{self.box.url}/dgsn/services-consulaires", content=wrap_document_bytes(body), timeout=10,
                          headers={"Content-Type": content_type, "SOAPAction": f'"{action or ACTION + operation}"'})

    def call(self, document) -> etree._Element:
        response = self.post(document)
        assert response.status_code == 200, response.text
        answer = parse_envelope(response.content, max_bytes=1 << 20)
        return verify(answer, self.certificate, signer_name="DGSN")

    def fault(self, document, **kwargs) -> Fault:
        response = self.post(document, **kwargs)
        assert response.status_code >= 400
        return read_fault(parse_envelope(response.content, max_bytes=1 << 20))


def text(element, name):
    return element.findtext(f"{{{NS}}}{name}")


class FakeHubEndpoint:
    """A loopback SOAP server in place of the hub's /soap/DGSN: answers each callback with a receipt
    signed by the hub's key; the first `transient_faults` calls get a transient soap:Server fault."""

    def __init__(self, pki_dir, transient_faults=0):
        self.signer, self.transient_faults, self.received = signer(pki_dir), transient_faults, []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if endpoint.transient_faults:
                    endpoint.transient_faults -= 1
                    self._answer(500, build_fault(Fault("soap:Server", "busy", retry_after=1)))
                    return
                document = parse_envelope(data, max_bytes=1 << 20)
                endpoint.received.append((self.headers.get("SOAPAction"), document))
                receipt = build_receipt(endpoint.signer, message_id=text(document, "IdentifiantMessage"),
                                        sender="DGSN", digest="00" * 32, received_at=dt.datetime.now(dt.timezone.utc))
                self._answer(200, wrap_document_bytes(receipt))

            def _answer(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def hub_endpoint(pki_dir):
    endpoint = FakeHubEndpoint(pki_dir, transient_faults=1)
    yield endpoint
    endpoint.close()


@pytest.fixture
def dgsn(start_sandbox, hub_endpoint, pki_dir):
    return Dgsn(start_sandbox("dgsn", hub_endpoint.url, extra_args=["--answer-delay", "0.1"]), pki_dir)


def test_wsdl_is_served_and_loads_in_zeep(dgsn):
    client = zeep.Client(f"{dgsn.box.url}/dgsn/services-consulaires?wsdl")
    [port] = [p for s in client.wsdl.services.values() for p in s.ports.values()]
    assert port.binding_options["address"] == f"{dgsn.box.url}/dgsn/services-consulaires"
    assert set(port.binding._operations) == {"VerifierIdentite", "DeposerDemandePasseport", "NotifierChangementAdresse",
                                             "DemanderAutorisationPassageFrontiere", "DeclarerRemisePasseport"}


@pytest.mark.parametrize("cnie, verdict", [("BK123450", "CONCORDANCE"), ("BK123456", "CONCORDANCE"),
                                           ("BK123457", "DISCORDANCE"), ("BK123458", "DISCORDANCE"),
                                           ("BK123459", "INCONNU"), (None, "INCONNU")])
def test_identity_verdict_by_last_cnie_digit(dgsn, cnie, verdict):
    answer = dgsn.call(identity(f"M-{cnie}", cnie))
    assert text(answer, "Resultat") == verdict
    assert text(answer, "ReferenceDemande") == f"M-{cnie}" and text(answer, "ReferenceDossier") == "REG-2026-000001"
    assert (answer.find(f"{{{NS}}}Ecart") is not None) == (verdict == "DISCORDANCE")


def test_border_clearance_refused_when_the_seal_ends_in_9(dgsn):
    assert text(dgsn.call(border("B-1", "SC-004512")), "Decision") == "AUTORISE"
    refused = dgsn.call(border("B-2", "SC-004519"))
    assert (text(refused, "Decision"), text(refused, "Motif")) == ("REFUSE", "SCELLE_NON_CONFORME")


def test_bad_requests_get_client_faults_and_nothing_is_stored(dgsn, pki_dir):
    assert "not signed" in dgsn.fault(identity("U-1"), sign=False).string
    forged = signer(pki_dir, "REGISTRY").sign(identity("U-2"))
    assert "signature" in dgsn.fault(forged, sign=False).string
    assert dgsn.fault(identity("U-3"), content_type="application/xml").code == "soap:Client"
    assert "SOAPAction" in dgsn.fault(identity("U-4"), action=ACTION + "DeclarerRemisePasseport").string
    invalid = identity("U-5")
    invalid.find(f"{{{NS}}}PosteConsulaire").text = "paris"
    assert dgsn.fault(invalid).code == "soap:Client"
    doctype = httpx.post(f"{dgsn.box.url}/dgsn/services-consulaires", timeout=5,
                         content=b'<!DOCTYPE x [<!ENTITY e "e">]><x/>', headers={"Content-Type": "text/xml"})
    assert read_fault(parse_envelope(doctype.content, max_bytes=1 << 20)).code == "soap:Client"
    assert dgsn.box.received("DGSN") == [] and dgsn.box.stats()["refused"] == 6


def test_same_request_twice_gets_the_same_answer(dgsn):
    first = dgsn.post(identity("D-1")).content
    assert dgsn.post(identity("D-1")).content == first
    assert len(dgsn.box.received("DGSN")) == 1 and dgsn.box.stats()["duplicates"] == 1


def test_passport_status_callbacks_reach_the_hub_over_soap(dgsn, hub_endpoint):
    receipt = dgsn.call(application("REGISTRY-PAS-2026-000001", "ENR-000311"))
    reference = text(receipt, "ReferenceDgsn")
    assert etree.QName(receipt).localname == "RecepisseDepotPasseport" and reference.startswith("DGSN-")
    rejected = dgsn.call(application("REGISTRY-PAS-2026-000002", "ENR-000319", case="PAS-2026-000002"))
    wait_for(lambda: len(hub_endpoint.received) == 4, what="four callbacks")  # one retried after a transient fault
    by_case = {}
    for action, document in hub_endpoint.received:
        assert action == '"urn:ma:gov:consular:hub:dgsn-callbacks:1#NotifyPassportStatus"'
        verify(document, dgsn.certificate, signer_name="DGSN")
        by_case.setdefault(text(document, "ReferenceDossier"), []).append(document)
    produced = by_case["PAS-2026-000001"]
    assert [text(d, "Statut") for d in produced] == ["EN_FABRICATION", "EXPEDIE", "DISPONIBLE_AU_POSTE"]
    assert {text(d, "ReferenceDemande") for d in produced} == {"REGISTRY-PAS-2026-000001"}
    assert len({text(d, "IdentifiantMessage") for d in produced}) == 3
    [rejection] = by_case["PAS-2026-000002"]
    assert (text(rejection, "Statut"), text(rejection, "Motif")) == ("REJETE", "ENROLEMENT_INCOMPLET")
    stats = wait_for(lambda: (s := dgsn.box.stats())["pending_callbacks"] == 0 and s, what="outbox empty")
    assert stats["hub_receipts_verified"] == 4

    # the post hands the passport over: DGSN checks it issued that passport under that reference
    number = text(produced[-1], "NumeroPasseport")

    def handover(message_id, reference_dgsn, passport):
        return D.DeclarerRemisePasseport(D.IdentifiantMessage(message_id), D.ReferenceDossier("PAS-2026-000001"),
                                         D.ReferenceDgsn(reference_dgsn), D.DateEmission(NOW),
                                         D.PosteConsulaire("FR-PARIS"), D.NumeroPasseport(passport),
                                         D.DateRemise("02/12/2026"))
    assert "DOSSIER_INCONNU" in dgsn.fault(handover("H-1", "DGSN-1999-000001", number)).string
    assert "NUMERO_PASSEPORT_INCORRECT" in dgsn.fault(handover("H-2", reference, "ZZ0000000")).string
    assert "NUMERO_PASSEPORT_INCORRECT" in dgsn.fault(
        handover("H-3", text(rejected, "ReferenceDgsn"), number)).string
    assert etree.QName(dgsn.call(handover("H-4", reference, number))).localname == "AccuseReception"


def test_callbacks_survive_a_restart(start_sandbox, hub_endpoint, pki_dir):
    hub_endpoint.transient_faults = 0
    box = start_sandbox("dgsn", hub_endpoint.url, extra_args=["--answer-delay", "2"])
    dgsn = Dgsn(box, pki_dir)
    first = dgsn.post(application("REGISTRY-PAS-2026-000003", "ENR-000313")).content
    box.stop()
    assert hub_endpoint.received == []
    box.extra_args = ["--answer-delay", "0.05"]
    box.start()
    wait_for(lambda: len(hub_endpoint.received) == 3, what="callbacks after the restart")
    assert dgsn.post(application("REGISTRY-PAS-2026-000003", "ENR-000313")).content == first
    assert len(hub_endpoint.received) == 3
