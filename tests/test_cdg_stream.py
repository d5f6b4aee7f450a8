"""Large CDG batches as files (registry/services/cdg_stream.py, hub/intake/files.py, hub/trust/streaming.py):
written and signed without holding the document, taken in by the hub as a message kept in a file, signed
by the hub and uploaded from disk by its delivery workers, verified by the CDG sandbox while it reads, and
CDG's signed acknowledgement taken in as a file, verified while read and applied by the registry as a
stream: every certificate gets its verdict, the signatures verify with xmlsec1 and signxml, the batch
reaches CDG once, and the evidence chain seals the files' digests."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lxml import etree
from signxml import XMLVerifier
from sqlalchemy import select, text

from conftest import free_port, wait_for
from hub.trust import pki
from hub.errors import MalformedXml, SignatureInvalid
from hub.evidence.chains import verify_chains
from hub.store.models import Event, Message
from hub.intake.polling import poll_partner
from hub.trust.signing import DS_NS, Signer, verify
from hub.trust.streaming import CanonicalWriter, verify_stream
from registry.models import Case
from registry.services import cdg_stream
from registry.services import life_certificates as lc

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # bench/ is not an installed package
from bench import cdg as bench_cdg  # noqa: E402

pytestmark = pytest.mark.slow

XMLSEC1 = shutil.which("xmlsec1")
CDG_NS = "urn:ma:cdg:certificats-vie:1"
XSD = Path(__file__).resolve().parent.parent / "schemas" / "partners" / "cdg" / "certificats-vie.xsd"


def xmlsec1_verifies(path: Path, certificate: Path) -> bool:
    if XMLSEC1 is None:
        pytest.skip("xmlsec1 is not installed (make xmlsec1 installs it)")
    result = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(certificate), str(path)],
                            capture_output=True, text=True, timeout=120)
    return result.returncode == 0


def canonical_without_signature(data: bytes) -> bytes:
    root = etree.fromstring(data)
    for signature in root.findall(f"{{{DS_NS}}}Signature"):
        root.remove(signature)
    return etree.tostring(root, method="c14n", exclusive=True, with_comments=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the streamed canonical form and signature, against lxml, signxml and xmlsec1 ------------------


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream-pki")
    pki.ensure_dev_pki(path, ["hub", "CDG"])
    load = lambda party: Signer(pki.load_key(str(path / f"{party}.key")), pki.load_certificate(str(path / f"{party}.crt")))  # noqa: E731
    return {"hub": load("hub"), "CDG": load("CDG"), "dir": path}


DOCUMENTS = [
    b'<a xmlns="urn:x"><b>t&amp;&lt;&gt;"\'\r\n</b><c><d>1</d><d>2</d></c><e></e></a>',
    b'<p:r xmlns:p="urn:p" xmlns:q="urn:q" xmlns:unused="urn:u" a="1" q:b="x&amp;y&#9;">\n  <p:c q:z="2"> t <q:d>v</q:d></p:c>\n'
    b'  <!-- a comment --><e xmlns="urn:e"><f/></e>tail\n</p:r>',
    b'<r xmlns="urn:cdg">\n  <Header>h</Header>\n  <Items>\n    <Item><V>1</V></Item>\n    <Item><V>2</V></Item>\n  </Items>\n</r>',
]


def test_streamed_verification_computes_the_same_canonical_form_as_lxml(signers):
    checked = 0
    for document in DOCUMENTS:
        signed = etree.tostring(signers["hub"].sign(etree.fromstring(document)))
        expected = hashlib.sha256(canonical_without_signature(signed)).hexdigest()
        for apex_depth in (1, 2, 3):
            result = verify_stream(io.BytesIO(signed), certificates=[signers["hub"].certificate], signer_name="hub",
                                   what="document", roots={etree.fromstring(document).tag}, schema=None,
                                   apex_depth=apex_depth)
            assert result.digest == expected, (document, apex_depth)
            checked += 1
        altered = signed.replace(b">1<", b">7<", 1) if b">1<" in signed else signed.replace(b">v<", b">w<", 1)
        with pytest.raises(SignatureInvalid, match="altered"):
            verify_stream(io.BytesIO(altered), certificates=[signers["hub"].certificate], signer_name="hub",
                          what="document", roots={etree.fromstring(document).tag}, schema=None, apex_depth=2)
        with pytest.raises(SignatureInvalid, match="none of"):
            verify_stream(io.BytesIO(signed), certificates=[signers["CDG"].certificate], signer_name="CDG",
                          what="document", roots={etree.fromstring(document).tag}, schema=None, apex_depth=2)
    print(f"{checked} streamed digests equal lxml's exclusive c14n; altered and wrongly-signed copies refused")


def test_hostile_or_misplaced_content_is_refused(signers):
    certificate = [signers["hub"].certificate]
    signed = etree.tostring(signers["hub"].sign(etree.fromstring(DOCUMENTS[0])))
    cases = {
        "processing instruction": signed.replace(b"<c>", b"<c><?evil x?>", 1),
        "DOCTYPE": b'<!DOCTYPE a [<!ENTITY e "x">]>' + signed,
        "two signatures": signed.replace(b"</a>", signed[signed.index(b"<ds:Signature"):signed.index(b"</a>")] + b"</a>"),
        "signature below the root": signed.replace(b"<e/>", b"<e>" + signed[signed.index(b"<ds:Signature"):
                                                                           signed.index(b"</a>")] + b"</e>"),
        "not well-formed": signed[:-5],
    }
    for what, data in cases.items():
        assert data != signed, what
        with pytest.raises((MalformedXml, SignatureInvalid)):
            verify_stream(io.BytesIO(data), certificates=certificate, signer_name="hub", what=what,
                          roots={"{urn:x}a"}, schema=None, apex_depth=1)
    print(f"refused: {', '.join(cases)}")


def test_a_malformed_stream_is_told_as_such_after_another_document_failed_its_schema(signers):
    """lxml's iterparse reports its thread's error log: another document's schema errors, met earlier by the
    same thread, must neither turn a truncated stream into a schema refusal nor appear in its problems."""
    schema = etree.XMLSchema(etree.fromstring(
        b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:other">'
        b'<xs:element name="Known"/></xs:schema>'))
    assert not schema.validate(etree.fromstring(b'<Unknown xmlns="urn:other">another sender\'s data</Unknown>'))
    signed = etree.tostring(signers["hub"].sign(etree.fromstring(DOCUMENTS[0])))
    with pytest.raises(MalformedXml) as caught:
        verify_stream(io.BytesIO(signed[:-5]), certificates=[signers["hub"].certificate], signer_name="hub",
                      what="document", roots={"{urn:x}a"}, schema=None, apex_depth=1)
    assert caught.value.detail.startswith("document is not well-formed XML")
    assert not any("Unknown" in problem.message for problem in caught.value.problems)


def test_canonical_writer_output_is_its_own_canonical_form_and_verifies_everywhere(signers, tmp_path):
    path = tmp_path / "lot.xml"
    with open(path, "wb") as out:
        writer = CanonicalWriter(out, "LotCertificatsVie", CDG_NS)
        for name, value in [("IdentifiantMessage", "REGISTRY-LCB-1"), ("IdentifiantLot", "LCB-1"),
                            ("DateCreation", "2026-11-23T10:00:00+00:00"), ("NombreCertificats", "2"),
                            ("NombreAvisDeces", "0")]:
            writer.leaf(name, value)
        writer.start("Certificats")
        for i, family in enumerate(["O'Brien & <Fils>", "Benaïssa\r"]):
            writer.start("Certificat")
            for name, value in [("Reference", f"CDV-{i}"), ("NomPensionne", family), ("PrenomPensionne", "Ahmed"),
                                ("DateNaissance", "02/03/1950"), ("NumeroPension", "1234567"), ("Caisse", "CNRA"),
                                ("DateEtablissement", "20/11/2026"), ("PosteConsulaire", "FR-PARIS")]:
                writer.leaf(name, value)
            writer.end("Certificat")
        writer.end("Certificats")
        writer.start("AvisDeces")
        writer.end("AvisDeces")
        size, digest = writer.finish(signers["hub"])
    data = path.read_bytes()
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert data.startswith(canonical_without_signature(data)[:-len(b"</LotCertificatsVie>")])
    verify(etree.fromstring(data), signers["hub"].certificate, signer_name="hub")  # the hub's own verifier
    XMLVerifier().verify(data, x509_cert=signers["hub"].certificate)  # signxml, an independent one
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(etree.fromstring(data))
    assert xmlsec1_verifies(path, signers["dir"] / "hub.crt")
    print(f"written {size} bytes: valid against the XSD, verified by the hub, signxml and xmlsec1")


# -- the benchmark, at a small size -----------------------------------------------------------------


def test_benchmark_at_small_size_gives_every_certificate_its_verdict(database_url, tmp_path):
    output = tmp_path / "bench-cdg.json"
    run = subprocess.run([sys.executable, "-m", "bench.cdg", "--certificates", "2000", "--death-notices", "20",
                          "--database-url", database_url, "--work", str(tmp_path / "bench"), "--json", str(output),
                          *(["--xmlsec1"] if XMLSEC1 else [])], cwd=PROJECT, capture_output=True, text=True,
                         timeout=600)
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(output.read_text())
    checks = result["checks"]
    assert checks["still_batched"] == 0 and checks["batch_status"] == "ACKNOWLEDGED"
    assert checks["accepted"] + checks["rejected"] == 2020 and checks["rejected"] == checks["expected_rejected"]
    assert checks["cdg_batches_stored"] == 1 and checks["cdg_duplicates"] == 0 and checks["cdg_batches_streamed"] == 1
    assert checks["cdg_lines"] == 2020
    assert checks["xmlsec1_valid"] is (True if XMLSEC1 else None)


# -- through the running hub: the API, the delivery workers, the scheduler's poll, the evidence ------------


@pytest.fixture
def cdg(running_hub, start_sandbox):
    control = free_port()
    connector = running_hub.hub.connectors["CDG"]  # acknowledgements over 64 KiB come in as file messages
    connector.config = connector.config.model_copy(update={"stream_above_bytes": 65536})
    return start_sandbox("cdg", running_hub.url, http_port=control,
                         extra_args=["--control-port", str(control), "--stream-above-bytes", "65536"])


def acknowledged(running_hub, client, batch: str) -> dict:
    def done():
        poll_partner(running_hub.hub, "CDG")
        found = client.get(f"/api/v1/life-certificates/batches/{batch}").json()
        return found if found["status"] == "ACKNOWLEDGED" else None
    return wait_for(done, 60, interval=0.3, what=f"CDG's acknowledgement of {batch}")


def sealed(hub, message_id: str, sender: str) -> dict[str, str | None]:
    """kind -> digest of a message's timeline entries (the last of each kind)."""
    with hub.sessions() as session:
        message = session.scalars(select(Message).where(Message.message_id == message_id,
                                                        Message.sender == sender)).one()
        return {event.kind: event.digest for event in session.scalars(
            select(Event).where(Event.message_pk == message.id).order_by(Event.id))}


def test_a_large_batch_goes_as_a_file_message_through_the_running_hub(running_hub, cdg, client, pki_dir):
    hub, registry = running_hub.hub, running_hub.apps["registry"]
    bench_cdg.fill(hub, 1500, 5)
    cdg.behave(drop_after_bytes=200_000)  # the first upload is cut: retried, CDG never sees half a file
    sent = client.post("/api/v1/life-certificates/batches")
    assert sent.status_code == 200, sent.text
    batch = sent.json()["batch"]
    found = client.get(f"/api/v1/life-certificates/batches/{batch}").json()
    assert (found["status"], found["certificates"], found["death_notices"]) == ("SUBMITTED", 1500, 5)
    kept = cdg_stream.batch_path(hub, batch)  # the registry's file, signed with the registry's key
    digest = sha256(kept)
    assert digest in found["detail"]
    verify(etree.fromstring(kept.read_bytes()), pki.load_certificate(str(pki_dir / "REGISTRY.crt")),
           signer_name="REGISTRY")

    # the hub's message keeps the batch in a file; the delivery workers send it, signed by the hub, with the
    # retry policy (the cut upload is a RETRY_SCHEDULED, the next attempt a SENT)
    message = wait_for(lambda: (m := client.get(f"/api/v1/messages/REGISTRY-{batch}").json())["state"] == "DELIVERED"
                       and m, 90, interval=0.5, what="the batch's delivery to CDG")
    assert message["digest_sha256"] == digest
    timeline = {event["event"]: event["detail"] for event in message["timeline"]}
    assert "read as a stream and kept as a file" in timeline["RECEIVED"] and "REGISTRY" in timeline["VERIFIED"]
    assert "connection" in timeline["RETRY_SCHEDULED"] and "(attempt 2)" in timeline["SENT"]  # lost or closed
    assert cdg.stats()["uploads_dropped"] == 1
    files = hub.message_files(f"REGISTRY-{batch}", sender="REGISTRY")
    assert files["received"].read_bytes() == kept.read_bytes() and files["received"] != kept
    streamed = files["sent"]["CDG"].read_bytes()
    digests = sealed(hub, f"REGISTRY-{batch}", "REGISTRY")
    assert digests["RECEIVED"] == digest and digests["SENT"] == hashlib.sha256(streamed).hexdigest()

    found = acknowledged(running_hub, client, batch)
    assert (found["accepted"], found["rejected"]) == (1355, 150)  # pension numbers ending in 9 are unknown
    with hub.sessions() as session:
        cases = session.query(Case).filter(Case.request_message_id == f"REGISTRY-{batch}").order_by(Case.id).all()
        assert len(cases) == 1505 and {c.status for c in cases} == {"ACCEPTED", "REJECTED"}
        for case in cases[:3] + cases[-3:]:
            expected = "REJECTED" if case.details["pension_number"].endswith("9") else "ACCEPTED"
            assert case.status == expected and case.details["batch"] == batch
            assert [e.status for e in case.history] == ["ISSUED", "BATCHED", expected]
            assert case.outcome["acknowledgement"] == case.partner_reference == f"CDG-AR-{batch}"
        # what the hub sent is what the XSLT mapping would have given, signed by the hub
        mapped = hub.mappings.apply("cdg/life-certificate-batch.to-cdg.xsl", etree.fromstring(lc.batch_message(
            registry, session.query(lc.PensionBatch).filter_by(reference=batch).one(), cases)))
    assert canonical_without_signature(streamed) == etree.tostring(mapped, method="c14n", exclusive=True)
    verify(etree.fromstring(streamed), pki.load_certificate(str(pki_dir / "hub.crt")), signer_name="hub")
    assert xmlsec1_verifies(files["sent"]["CDG"], pki_dir / "hub.crt")

    # CDG got it once, byte for byte; its acknowledgement was taken in as a file message, delivered to the
    # registry as that file, its digest sealed
    received = cdg.received("CDG")
    assert [p.name for p in received] == [f"{batch}.xml"] and received[0].read_bytes() == streamed
    answer = hub.message_files(f"CDG-AR-{batch}", sender="CDG")
    assert xmlsec1_verifies(answer["received"], pki_dir / "CDG.crt")
    assert (cdg.data_dir / "CDG" / "sftp" / "done" / f"AR_{batch}.xml").read_bytes() == \
        answer["received"].read_bytes()
    ack = client.get(f"/api/v1/messages/CDG-AR-{batch}").json()
    assert ack["in_reply_to"] == f"REGISTRY-{batch}" and ack["correlation_id"] == batch
    assert ack["state"] == "DELIVERED" and ack["digest_sha256"] == sha256(answer["received"])
    assert sealed(hub, f"CDG-AR-{batch}", "CDG")["RECEIVED"] == sha256(answer["received"])
    assert answer["sha256"] in found["detail"]

    # submitted again after a crash before it was recorded as SUBMITTED: the same file, the hub's first
    # receipt again (deduplicated by message id), nothing sent twice
    with hub.sessions.begin() as session:
        session.query(lc.PensionBatch).filter_by(reference=batch).one().status = "PREPARED"
    lc._submit(registry, batch)
    assert sha256(kept) == digest
    assert client.get(f"/api/v1/life-certificates/batches/{batch}").json()["status"] == "SUBMITTED"
    assert "DUPLICATE" in {e["event"] for e in client.get(f"/api/v1/messages/REGISTRY-{batch}").json()["timeline"]}
    stats = cdg.stats()
    assert stats["stored"] == 1 and stats["batches_streamed"] == 1 and stats["folders"]["outbox"] == 0
    assert poll_partner(hub, "CDG") == {"accepted": 0, "refused": 0, "seen": 0, "failed": 0,
                                       "streamed": 0}
    report = verify_chains(hub)  # the file messages' events are sealed like any other, their files checked
    assert report.ok, str(report)
    print(report)
    print(f"batch {batch}: 1505 lines, {len(streamed)} bytes sha256 {digest[:16]}…; acknowledgement "
          f"{answer['size']} bytes; CDG stored {stats['stored']}, duplicates {stats.get('duplicates', 0)}")


def test_an_altered_acknowledgement_is_refused_and_nothing_applied(running_hub, cdg, client, monkeypatch):
    monkeypatch.setattr(lc, "MAX_ITEMS", 5)  # a small batch takes the streamed path too
    connector = running_hub.hub.connectors["CDG"]  # its acknowledgement too comes in as a file
    connector.config = connector.config.model_copy(update={"stream_above_bytes": 1024})
    hub = running_hub.hub
    bench_cdg.fill(hub, 12, 0)
    batch = client.post("/api/v1/life-certificates/batches").json()["batch"]
    outbox = cdg.data_dir / "CDG" / "sftp" / "outbox"
    name = f"AR_{batch}.xml"
    wait_for(lambda: (outbox / name).exists(), 60, what="CDG's acknowledgement")
    original = (outbox / name).read_bytes()
    assert len(original) > 1024
    forged = original.replace(b"<Statut>REJETE</Statut>", b"<Statut>ACCEPTE</Statut>", 1)
    assert forged != original
    (outbox / f".{name}.tmp").write_bytes(forged)
    os.replace(outbox / f".{name}.tmp", outbox / name)
    poll_partner(hub, "CDG")
    failed = cdg.data_dir / "CDG" / "sftp" / "failed"
    assert (failed / name).exists() and "altered" in (failed / f"{name}.reason.txt").read_text()
    found = client.get(f"/api/v1/life-certificates/batches/{batch}").json()
    assert found["status"] == "SUBMITTED" and {c["status"] for c in found["cases"]} == {"BATCHED"}
    assert client.get(f"/api/v1/messages/CDG-AR-{batch}").status_code == 404
    assert not list((hub.settings.var_dir / "files" / "incoming").glob("*"))  # nothing of it kept
    print(f"forged acknowledgement of {batch} refused: {(failed / f'{name}.reason.txt').read_text().strip()}")


def test_streamed_verification_trusts_a_party_through_its_ca_as_the_trust_store_does(signers):
    """verify_stream with the TrustStore: a certificate the party's CA issued, with the party's code as its
    CN, verifies; the same signature checked against pinned certificates only does not, nor one whose CN
    names another party."""
    from hub.config import HubConfig, Party
    from hub.trust.certificates import TrustStore
    ca = signers["dir"] / "ca.crt"
    trust = TrustStore(HubConfig(parties={"CDG": Party(name="CDG", transport="sftp", ca=ca),
                                          "NARSA": Party(name="NARSA", transport="rest", ca=ca)}, routes=[]))
    signed = etree.tostring(signers["CDG"].sign(etree.fromstring(DOCUMENTS[2])))
    result = verify_stream(io.BytesIO(signed), trust=trust, signer_name="CDG", what="document", roots=None,
                           schema=None, apex_depth=2)
    assert "CDG" in result.signed_by
    with pytest.raises(SignatureInvalid, match="none of"):
        verify_stream(io.BytesIO(signed), certificates=[], signer_name="CDG", what="document", roots=None,
                      schema=None, apex_depth=2)
    with pytest.raises(SignatureInvalid, match="signed by CDG, not by"):
        verify_stream(io.BytesIO(signed), trust=trust, signer_name="NARSA", what="document", roots=None,
                      schema=None, apex_depth=2)


# -- the engine's file intake and delivery, without a partner ------------------------------------------


def test_connectors_declare_whether_they_send_files():
    from connectors import connector_class
    from connectors.base import FileSender
    assert issubclass(connector_class("sftp"), FileSender) and issubclass(connector_class("local"), FileSender)
    assert not issubclass(connector_class("rest"), FileSender) and not issubclass(connector_class("soap"), FileSender)


def _recorded_batch(hub, monkeypatch):
    """(registry, reference): a batch of eight life certificates recorded in the registry on `hub`, not yet written."""
    from registry.app import Registry
    monkeypatch.setattr(lc, "MAX_ITEMS", 5)
    registry = Registry(hub)
    registry.load_reference_data()
    bench_cdg.fill(hub, 8, 0)
    with hub.sessions() as session:
        ids = list(session.scalars(select(Case.id).order_by(Case.id)))
    return registry, cdg_stream.prepare(registry, ids)


def test_a_file_is_refused_like_any_message_and_the_refusal_recorded(hub, tmp_path, monkeypatch):
    from hub.errors import DuplicateConflict, NotAllowed, NotRoutable
    from hub.intake.door import Arrival, FileHeader
    from hub.store.models import Refusal
    from hub.trust.signing import Signer
    registry, reference = _recorded_batch(hub, monkeypatch)
    path, _size, digest = cdg_stream.write_batch(registry, reference)
    header = FileHeader(message_id=f"REGISTRY-{reference}", type=lc.BATCH_TYPE, correlation_id=reference,
                        sender="REGISTRY", recipient="CDG")

    # signed by another party than the sender it names: refused, recorded once, nothing kept
    forged = tmp_path / "forged.xml"
    cdg_key = Signer(pki.load_key(str(hub.settings.pki_dir / "CDG.key")),
                     pki.load_certificate(str(hub.settings.pki_dir / "CDG.crt")))
    data = etree.fromstring(path.read_bytes())
    data.remove(data.find(f"{{{DS_NS}}}Signature"))
    forged.write_bytes(etree.tostring(cdg_key.sign(data)))
    with pytest.raises(SignatureInvalid, match="signed by CDG"):
        hub.receive(Arrival("registry", path=forged, header=header, caller="REGISTRY"))
    with pytest.raises(NotAllowed):  # the caller speaks for another party
        hub.receive(Arrival("registry", path=path, header=header, caller="CDG"))
    with pytest.raises(NotRoutable, match="cannot send a file"):  # NARSA's transport (REST) cannot take a file
        hub.receive(Arrival("registry", path=path, caller="REGISTRY", header=FileHeader(
            message_id="REGISTRY-X", type="LicenceAuthenticationRequest", correlation_id="X", sender="REGISTRY",
            recipient="NARSA")))
    with hub.sessions() as session:
        refusals = session.scalars(select(Refusal).order_by(Refusal.id)).all()
        assert [(r.channel, r.partner, r.status) for r in refusals] == [
            ("registry", "REGISTRY", 400), ("registry", "CDG", 403), ("registry", "REGISTRY", 400)]
        assert all(r.size == path.stat().st_size or r.size == forged.stat().st_size for r in refusals)
    assert not list((hub.settings.var_dir / "files" / "incoming").glob("*"))

    # accepted once; the same file again gets the first receipt; other bytes under the same id a 409
    first = hub.receive(Arrival("registry", path=path, header=header, caller="REGISTRY"))
    again = hub.receive(Arrival("registry", path=path, header=header, caller="REGISTRY"))
    assert (first.duplicate, again.duplicate) == (False, True) and again.body == first.body
    assert digest.encode() in first.body
    with pytest.raises(DuplicateConflict):
        hub.receive(Arrival("registry", path=_other_bytes(registry, path, tmp_path), header=header, caller="REGISTRY"))
    files = hub.message_files(header.message_id, sender="REGISTRY")
    assert files["sha256"] == digest and files["received"].read_bytes() == path.read_bytes()
    with hub.sessions() as session:
        message = session.scalars(select(Message).where(Message.message_id == header.message_id)).one()
        assert (message.received_bytes, message.canonical_bytes, message.state) == (None, None, "ACCEPTED")
        kinds = [(e.kind, e.digest) for e in message.events]
    assert kinds[0] == ("RECEIVED", digest) and [k for k, _ in kinds][:5] == \
        ["RECEIVED", "VALIDATED", "VERIFIED", "ACCEPTED", "QUEUED"] and kinds[-1][0] == "DUPLICATE"


def _other_bytes(registry, path: Path, tmp_path: Path) -> Path:
    """The same batch signed again by the registry, with a space added inside one certificate's name."""
    root = etree.fromstring(path.read_bytes())
    root.remove(root.find(f"{{{DS_NS}}}Signature"))
    root.find(f".//{{{CDG_NS}}}NomPensionne").text += " "
    other = tmp_path / "other.xml"
    other.write_bytes(etree.tostring(registry.signer.sign(root)))
    return other


def test_a_batch_file_is_written_from_a_read_that_lets_others_write(hub, monkeypatch):
    """The batch's cases are streamed from a read, not a writing transaction: on SQLite a large batch's file would
    otherwise hold the write lock while it is written, and intake and deliveries would wait for it."""
    registry, reference = _recorded_batch(hub, monkeypatch)
    certificate, written_meanwhile = cdg_stream._certificate, []

    def certificate_while_another_writes(*args):
        if not written_meanwhile:  # the first certificate: the file is being written
            done = threading.Event()

            def write():
                with hub.sessions.begin() as session:
                    session.execute(text("DELETE FROM refusals WHERE id < 0"))
                done.set()
            threading.Thread(target=write, daemon=True).start()
            written_meanwhile.append(done.wait(5))
        return certificate(*args)

    monkeypatch.setattr(cdg_stream, "_certificate", certificate_while_another_writes)
    path, _size, _digest = cdg_stream.write_batch(registry, reference)
    assert written_meanwhile == [True]
    assert etree.parse(str(path)).getroot().find(f"{{{CDG_NS}}}Certificats") is not None
