"""The CDG sandbox as a real process: batches uploaded over SFTP with the hub's connector, CDG's
acknowledgements polled back and checked against CDG's XSD and certificate."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree

from connectors.base import Outbound
from connectors.sftp.connector import SftpConnector
from hub.trust import pki
from hub.xml.schemas import SchemaSet
from hub.trust.signing import verify
from sandbox.cdg import acknowledgement_name, decision_for
from test_sftp_connector import CDG_NS, CdgProcess, signed_batch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
XSD = "partners/cdg/certificats-vie.xsd"


def tag(name: str) -> str:
    return f"{{{CDG_NS}}}{name}"


def wait_until(predicate, timeout: float = 10, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def cdg_pki(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cdg-pki")
    pki.ensure_dev_pki(path, ["hub", "REGISTRY", "CDG", "NARSA"])
    pki.ensure_dev_ssh_keys(path)
    return path


@pytest.fixture
def cdg(cdg_pki, tmp_path):
    box = CdgProcess(cdg_pki, tmp_path / "data").start()
    yield box
    box.stop()


@pytest.fixture
def connector(cdg):
    conn = SftpConnector("CDG", cdg.config(), timeout_seconds=5)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def schemas():
    return SchemaSet(ROOT / "schemas")


def upload(connector, batch: bytes, batch_id: str) -> None:
    connector.send(Outbound(f"REGISTRY-{batch_id}", "LifeCertificateBatch", batch))


def acknowledgement(connector, cdg, batch_id: str) -> etree._Element:
    wait_until(lambda: acknowledgement_name(batch_id) in cdg.folder("outbox"), what=f"the acknowledgement of {batch_id}")
    [item] = [i for i in connector.poll() if i.name == acknowledgement_name(batch_id)]
    item.ack()
    return etree.fromstring(item.body)


def test_decision_rule():
    assert decision_for("20230419") == ("REJETE", "PENSION_INCONNUE", "Numéro de pension inconnu de la caisse")
    assert decision_for("20230410")[0] == decision_for("7000108")[0] == "ACCEPTE"


def test_batch_is_acknowledged_line_by_line_signed_by_cdg(cdg, connector, cdg_pki, schemas):
    numbers = ["20230410", "20230419", "88001235", "88001239"]
    batch = signed_batch(cdg_pki, "LCB-2026-000001", pension_numbers=numbers)
    upload(connector, batch, "LCB-2026-000001")
    ack = acknowledgement(connector, cdg, "LCB-2026-000001")
    schemas.validate(ack, XSD, what="AccuseLot")
    signed = verify(ack, pki.load_certificate(str(cdg_pki / "CDG.crt")), signer_name="CDG")
    assert signed.findtext(tag("IdentifiantLot")) == "LCB-2026-000001"
    assert signed.findtext(tag("ReferenceMessage")) == "REGISTRY-LCB-2026-000001"
    assert signed.findtext(tag("IdentifiantAccuse")) == "CDG-AR-LCB-2026-000001"
    lines = [(line.findtext(tag("Reference")), line.findtext(tag("Statut")), line.findtext(tag("CodeMotif")))
             for line in signed.iterfind(tag("Ligne"))]
    assert lines == [("CDV-2026-000001", "ACCEPTE", None), ("CDV-2026-000002", "REJETE", "PENSION_INCONNUE"),
                     ("CDV-2026-000003", "ACCEPTE", None), ("CDV-2026-000004", "REJETE", "PENSION_INCONNUE")]
    assert (signed.findtext(tag("NombreAcceptes")), signed.findtext(tag("NombreRejetes"))) == ("2", "2")
    # CDG kept the batch exactly as received, and the batch verifies as the hub's
    kept = (cdg.data_dir / "CDG" / "received" / "LCB-2026-000001.xml").read_bytes()
    assert kept == batch
    verify(etree.fromstring(kept), pki.load_certificate(str(cdg_pki / "hub.crt")), signer_name="hub")
    assert cdg.folder("inbox") == [] and cdg.folder("done") == [acknowledgement_name("LCB-2026-000001")]
    stats = cdg.stats()
    assert (stats["stored"], stats["lines_accepted"], stats["lines_rejected"]) == (1, 2, 2)


def test_a_batch_sent_again_is_acknowledged_once(cdg, connector, cdg_pki):
    batch = signed_batch(cdg_pki, "LCB-2026-000002")
    upload(connector, batch, "LCB-2026-000002")
    acknowledgement(connector, cdg, "LCB-2026-000002")
    upload(connector, batch, "LCB-2026-000002")  # CDG consumed the first copy: this is a real second upload
    wait_until(lambda: cdg.stats().get("duplicates") == 1, what="the duplicate to be seen")
    assert cdg.folder("inbox") == [] and cdg.folder("outbox") == []
    assert cdg.stats()["stored"] == 1


def test_batch_not_signed_by_the_hub_goes_to_rejected_without_acknowledgement(cdg, connector, cdg_pki):
    forged = signed_batch(cdg_pki, "LCB-2026-000003", signer="NARSA")
    upload(connector, forged, "LCB-2026-000003")
    name = "REGISTRY-LCB-2026-000003.xml"
    wait_until(lambda: name in cdg.folder("rejected"), what="the forged batch to be rejected")
    assert cdg.folder("rejected") == [name, f"{name}.reason.txt"]
    assert "signature" in (cdg.root / "rejected" / f"{name}.reason.txt").read_text()
    time.sleep(0.6)
    assert cdg.folder("outbox") == [] and cdg.stats()["stored"] == 0
    altered = signed_batch(cdg_pki, "LCB-2026-000004").replace(b"Alaoui", b"Alaoul", 1)
    upload(connector, altered, "LCB-2026-000004")
    wait_until(lambda: "REGISTRY-LCB-2026-000004.xml" in cdg.folder("rejected"), what="the altered batch")
    assert cdg.stats()["batches_rejected"] == 2


def test_an_acknowledgement_lost_in_a_crash_is_written_again_on_restart(cdg, connector, cdg_pki):
    upload(connector, signed_batch(cdg_pki, "LCB-2026-000005"), "LCB-2026-000005")
    name = acknowledgement_name("LCB-2026-000005")
    wait_until(lambda: name in cdg.folder("outbox"), what="the acknowledgement")
    first = (cdg.root / "outbox" / name).read_bytes()
    cdg.stop()
    (cdg.root / "outbox" / name).unlink()  # as if CDG died before writing it
    restarted = CdgProcess(cdg.pki_dir, cdg.data_dir, sftp_port=cdg.sftp_port).start()
    try:
        assert restarted.folder("outbox") == [name]
        assert (restarted.root / "outbox" / name).read_bytes() == first
    finally:
        restarted.stop()


def test_unknown_client_key_cannot_log_in(cdg, tmp_path):
    stranger = pki.ensure_dev_ssh_key(tmp_path, "stranger")
    conn = SftpConnector("CDG", cdg.config(private_key=stranger), timeout_seconds=5)
    assert not conn.check().ok
    assert cdg.stats()["logins_refused"] >= 1 and cdg.stats()["logins"] == 0


def test_control_port_reports_and_changes_behaviour(cdg):
    changed = cdg.behave(mode="slow", delay_seconds=0.2, paused=True)
    assert (changed["mode"], changed["delay_seconds"], changed["paused"]) == ("slow", 0.2, True)
    stats = cdg.stats()
    assert stats["partner"] == "CDG" and stats["behaviour"] == "slow" and stats["paused"] is True
    assert set(stats["folders"]) == {"inbox", "outbox", "done", "failed", "rejected"}
