"""One contract, every connector: the same suite runs against REST (the SANTE sandbox), SOAP (DGSN)
and SFTP (CDG), each a real sandbox process on loopback.

What the engine relies on from any connector (connectors/base.py): building one does no I/O and its
repr shows no secret; a delivered document is acknowledged, and delivering it again is harmless; a
partner that fails, answers too slowly or refuses connections gives a TransientDeliveryError (the
engine retries); `check()` tells whether the partner is reachable, without raising. Each transport's
own details (SOAP faults, SFTP atomic uploads, Retry-After) have their own test files.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from connectors import connector_class
from connectors.base import Outbound
from conftest import free_port, wait_for
from hub.trust import pki
from hub.errors import TransientDeliveryError
from hub.xml.mapping import MappingSet
from hub.xml.schemas import ENVELOPE_NS
from hub.settings import PROJECT_ROOT, Settings
from hub.trust.signing import Signer, verify
from hub.xml.safe import parse_trusted, to_bytes

_ids = itertools.count(1)


@dataclass(frozen=True)
class Partner:
    code: str
    transport: str
    sandbox: str
    mapping: str              # a canonical sample goes through it, then is signed by the hub
    sample: str               # mappings/<...>/cases/<mapping>/<sample>.input.xml
    operation: str | None
    answers: bool             # a synchronous partner returns a signed answer document

    def connection(self, port: int, pki_dir: Path) -> dict:
        if self.transport == "rest":
            return {"endpoint": f"http://127.0.0.1:{port}/sante/v1"}
        if self.transport == "soap":
            return {"wsdl": "partners/dgsn/services-consulaires.wsdl",
                    "endpoint": f"http://127.0.0.1:{port}/dgsn/services-consulaires"}
        return {"host": "127.0.0.1", "port": port, "username": "hub", "private_key": str(pki_dir / "ssh" / "hub_client"),
                "host_key": str(pki_dir / "ssh" / "CDG_host.pub"), "poll_interval_seconds": 60}


PARTNERS = [
    Partner("SANTE", "rest", "sante", "sante/health-clearance.to-sante.xsl", "cardiac-arrest", "autorisations-sanitaires",
            answers=True),
    Partner("DGSN", "soap", "dgsn", "dgsn/identity-check.to-dgsn.xsl", "new-with-cnie", "VerifierIdentite",
            answers=True),
    Partner("CDG", "sftp", "cdg", "cdg/life-certificate-batch.to-cdg.xsl", "certificates-and-death-notice", None,
            answers=False),
]


@pytest.fixture(params=PARTNERS, ids=lambda p: f"{p.transport}-{p.code}")
def partner(request) -> Partner:
    return request.param


@pytest.fixture
def sandbox(partner, start_sandbox):
    control_port = free_port() if partner.code == "CDG" else None
    extra = ["--control-port", str(control_port)] if control_port else []
    return start_sandbox(partner.sandbox, "http://127.0.0.1:9", extra_args=extra, http_port=control_port)


def build(partner: Partner, pki_dir: Path, port: int, *, timeout: float = 3):
    cls = connector_class(partner.transport)
    settings = Settings.from_env(pki_dir=pki_dir)
    return cls(partner.code, cls.Config.model_validate(partner.connection(port, pki_dir)), timeout_seconds=timeout,
               settings=settings)


def document(partner: Partner, pki_dir: Path) -> Outbound:
    """The partner's own format, as the hub sends it: a canonical sample mapped, then signed by the hub."""
    stem = Path(partner.mapping).with_suffix("").name
    sample = PROJECT_ROOT / "mappings" / Path(partner.mapping).parent / "cases" / stem / f"{partner.sample}.input.xml"
    envelope = etree.parse(str(sample)).getroot()
    message_id = f"CONTRACT-{partner.code}-{next(_ids)}"
    envelope.find(f"{{{ENVELOPE_NS}}}Header/{{{ENVELOPE_NS}}}MessageId").text = message_id
    mapped = MappingSet(PROJECT_ROOT / "mappings").apply(partner.mapping, envelope)
    signer = Signer(pki.load_key(str(pki_dir / "hub.key")), pki.load_certificate(str(pki_dir / "hub.crt")))
    return Outbound(message_id, "contract", to_bytes(signer.sign(mapped)), operation=partner.operation)


def stored_at_partner(sandbox, partner: Partner, message_id: str) -> bool:
    folders = [sandbox.data_dir / partner.code / "received"]
    if partner.code == "CDG":
        folders.append(sandbox.data_dir / "CDG" / "sftp" / "inbox")
    return any(message_id.encode() in p.read_bytes() for folder in folders if folder.is_dir() for p in folder.iterdir()
               if p.is_file())


def test_building_does_no_io_and_shows_no_secret(partner, pki_dir):
    connector = build(partner, pki_dir, free_port())  # nothing listens there: building must not notice
    text = repr(connector)
    assert partner.code in text
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    connector.close()


def test_delivers_then_a_repeat_is_harmless(partner, pki_dir, sandbox):
    connector = build(partner, pki_dir, sandbox.port)
    outbound = document(partner, pki_dir)
    try:
        connector.open()
        first = connector.send(outbound)
        again = connector.send(outbound)
    finally:
        connector.close()
    wait_for(lambda: stored_at_partner(sandbox, partner, outbound.message_id), 10, what="the partner to store it")
    if partner.answers:
        assert first.answer == again.answer, "the repeat is answered with the first answer"
        answer = verify(parse_trusted(first.answer), pki.load_certificate(str(pki_dir / f"{partner.code}.crt")),
                        signer_name=partner.code)
        assert answer is not None
    assert first.detail


def test_a_failing_partner_is_a_transient_fault(partner, pki_dir, sandbox):
    sandbox.behave(mode="fail", status=503)
    connector = build(partner, pki_dir, sandbox.port)
    try:
        with pytest.raises(TransientDeliveryError):
            connector.send(document(partner, pki_dir))
    finally:
        connector.close()


def test_a_slow_partner_times_out_as_a_transient_fault(partner, pki_dir, sandbox):
    sandbox.behave(mode="slow", delay_seconds=4)
    connector = build(partner, pki_dir, sandbox.port, timeout=1)
    try:
        with pytest.raises(TransientDeliveryError):
            connector.send(document(partner, pki_dir))
    finally:
        connector.close()
        sandbox.behave(mode="normal")


def test_refused_connections_are_transient_and_unhealthy(partner, pki_dir):
    connector = build(partner, pki_dir, free_port(), timeout=2)
    try:
        health = connector.check()
        assert not health.ok and health.detail
        with pytest.raises(TransientDeliveryError):
            connector.send(document(partner, pki_dir))
    finally:
        connector.close()


def test_check_is_healthy_when_the_partner_is_up(partner, pki_dir, sandbox):
    connector = build(partner, pki_dir, sandbox.port)
    try:
        health = connector.check()
    finally:
        connector.close()
    assert health.ok, health.detail
