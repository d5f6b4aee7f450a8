"""Contract tests of SoapConnector against the real DGSN sandbox process on loopback.

What the engine relies on: a signed document arrives byte for byte and its answer comes back as the
partner's own signed document; faults, failures, slowness and refused connections are translated
into Permanent/TransientDeliveryError with reasons a person can read.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest
from lxml import etree
from lxml.builder import ElementMaker

from connectors.base import Outbound
from connectors.soap.connector import SoapConnector
from connectors.soap.envelope import wrap_document_bytes
from hub.trust import pki
from hub.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from hub.settings import Settings
from hub.trust.signing import Signer, verify
from hub.xml.safe import to_bytes
from conftest import free_port

NS = "urn:ma:dgsn:services-consulaires:1"
D = ElementMaker(namespace=NS, nsmap={None: NS})
WSDL = "partners/dgsn/services-consulaires.wsdl"


def signer(pki_dir, party: str = "hub") -> Signer:
    return Signer(pki.load_key(str(pki_dir / f"{party}.key")), pki.load_certificate(str(pki_dir / f"{party}.crt")))


def identity_request(pki_dir, *, message_id: str, cnie: str = "BK123453", signed_by: str = "hub") -> bytes:
    document = D.VerifierIdentite(
        D.IdentifiantMessage(message_id), D.ReferenceDossier("REG-2026-000001"),
        D.DateEmission(dt.datetime(2026, 11, 23, 10, tzinfo=dt.timezone.utc).isoformat()),
        D.PosteConsulaire("FR-PARIS"),
        D.Personne(D.CNIE(cnie), D.Nom("El Amrani"), D.Prenom("Youssef"), D.NomArabe("العمراني"),
                   D.PrenomArabe("يوسف"), D.DateNaissance("12/04/1988")))
    return to_bytes(signer(pki_dir, signed_by).sign(document))


def connector(url: str, *, timeout: float = 3.0) -> SoapConnector:
    config = SoapConnector.Config(wsdl=WSDL, endpoint=f"{url}/dgsn/services-consulaires")
    return SoapConnector("DGSN", config, timeout_seconds=timeout, settings=Settings.from_env())


@pytest.fixture
def dgsn(start_sandbox):
    return start_sandbox("dgsn", "http://127.0.0.1:9", extra_args=["--answer-delay", "0.05"])


@pytest.fixture
def soap(dgsn):
    c = connector(dgsn.url)
    c.open()
    yield c
    c.close()


def send(c: SoapConnector, body: bytes, operation: str = "VerifierIdentite", message_id: str = "M-1"):
    return c.send(Outbound(message_id, "ConsularRegistrationRequest", body, operation=operation))


def test_success_returns_the_partners_signed_answer(soap, dgsn, pki_dir):
    body = identity_request(pki_dir, message_id="REGISTRY-REG-2026-000001", cnie="BK123453")
    result = send(soap, body)
    answer = etree.fromstring(result.answer)
    assert answer.tag == f"{{{NS}}}ResultatVerificationIdentite"
    signed = verify(answer, pki.load_certificate(str(pki_dir / "DGSN.crt")), signer_name="DGSN")
    assert signed.findtext(f"{{{NS}}}Resultat") == "CONCORDANCE"
    assert signed.findtext(f"{{{NS}}}ReferenceDemande") == "REGISTRY-REG-2026-000001"
    assert "VerifierIdentite" in result.detail
    # the same message again: the partner deduplicates and answers the same bytes
    assert send(soap, body).answer == result.answer
    assert len(dgsn.received("DGSN")) == 1


def test_document_travels_byte_for_byte():
    body = b"<?xml version='1.0' encoding='UTF-8'?>\n<d:Doc xmlns:d='urn:x'  a = \"1\">\xc3\xa9 <e/></d:Doc>"
    envelope = wrap_document_bytes(body)
    assert body.split(b"?>\n", 1)[1] in envelope
    assert etree.fromstring(envelope)[0][0].tag == "{urn:x}Doc"
    with pytest.raises(ValueError):
        wrap_document_bytes(b"<?xml version='1.0' encoding='ISO-8859-1'?><a/>")


def test_client_fault_is_permanent(soap, pki_dir):
    body = identity_request(pki_dir, message_id="M-bad-signer", signed_by="REGISTRY")  # not the hub's key
    with pytest.raises(PermanentDeliveryError, match=r"^SOAP fault soap:Client: .*signature"):
        send(soap, body)


def test_fault_marked_transient_is_retried_after_its_delay(soap, dgsn, pki_dir):
    dgsn.behave(mode="fail", status=503, retry_after=7)
    with pytest.raises(TransientDeliveryError, match=r"SOAP fault soap:Server") as caught:
        send(soap, identity_request(pki_dir, message_id="M-transient"))
    assert caught.value.retry_after == 7
    dgsn.behave(mode="normal")
    assert send(soap, identity_request(pki_dir, message_id="M-transient")).answer


def test_5xx_without_fault_is_transient(soap, dgsn, pki_dir):
    dgsn.behave(mode="fail", status=502, retry_after=None)
    with pytest.raises(TransientDeliveryError, match=r"^partner answered 502"):
        send(soap, identity_request(pki_dir, message_id="M-502"))


def test_slow_partner_times_out_as_transient(dgsn, pki_dir):
    c = connector(dgsn.url, timeout=0.5)
    dgsn.behave(mode="slow", delay_seconds=3)
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError, match=r"no answer within 0.5 s"):
        send(c, identity_request(pki_dir, message_id="M-slow"))
    assert time.monotonic() - started < 2.5
    c.close()


def test_refused_connection_is_transient(dgsn, pki_dir):
    c = connector(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientDeliveryError, match="connection refused"):
        send(c, identity_request(pki_dir, message_id="M-refused"))
    assert not c.check().ok


def test_partner_going_away_is_transient(soap, dgsn, pki_dir):
    dgsn.behave(mode="refuse", refuse_seconds=3)
    time.sleep(0.3)
    with pytest.raises(TransientDeliveryError, match="connection refused|reset"):
        send(soap, identity_request(pki_dir, message_id="M-away"))


def test_unknown_operation_is_permanent_and_lists_the_wsdls(soap, pki_dir):
    with pytest.raises(PermanentDeliveryError) as caught:
        send(soap, identity_request(pki_dir, message_id="M-op"), operation="VerifyIdentity")
    assert "'VerifyIdentity' is not in partners/dgsn/services-consulaires.wsdl" in caught.value.reason
    assert "DeposerDemandePasseport" in caught.value.reason and "VerifierIdentite" in caught.value.reason


def test_soap_action_comes_from_the_wsdl(soap, pki_dir):
    # the sandbox refuses a SOAPAction that does not match the document: sending a VerifierIdentite
    # as DeposerDemandePasseport shows the header is the WSDL's for the operation named
    with pytest.raises(PermanentDeliveryError, match="SOAPAction"):
        send(soap, identity_request(pki_dir, message_id="M-action"), operation="DeposerDemandePasseport")


def test_check_and_repr(dgsn):
    c = SoapConnector("DGSN", SoapConnector.Config(wsdl=WSDL, endpoint=f"http://user:s3cret@127.0.0.1:"
                                                   f"{dgsn.port}/dgsn/services-consulaires"),
                      timeout_seconds=2, settings=Settings.from_env())
    assert c.check().ok
    assert "s3cret" not in repr(c) and "DGSN" in repr(c)


def test_config_is_strict_and_a_missing_wsdl_names_the_key():
    with pytest.raises(ValueError):
        SoapConnector.Config(wsdl=WSDL, endpont="http://x")
    with pytest.raises(ValueError):
        SoapConnector.Config(wsdl="../etc/passwd")
    c = SoapConnector("DGSN", SoapConnector.Config(wsdl="partners/dgsn/missing.wsdl"), timeout_seconds=1,
                      settings=Settings.from_env())
    with pytest.raises(ConfigError, match="connection.wsdl"):
        c.open()


def test_wsdl_address_is_used_without_endpoint(pki_dir):
    c = SoapConnector("DGSN", SoapConnector.Config(wsdl=WSDL), timeout_seconds=1, settings=Settings.from_env())
    c.open()
    assert "127.0.0.1:8712/dgsn/services-consulaires" in repr(c)
    c.close()
