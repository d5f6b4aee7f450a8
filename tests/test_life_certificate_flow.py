"""Life certificates end to end on real processes: posts issue certificates through the hub's API, the
registry sends one signed batch, the hub uploads it to the CDG sandbox over SFTP, polls CDG's signed
acknowledgement back, and every case reaches CDG's verdict."""
from __future__ import annotations

import datetime as dt
import hashlib
import re

import httpx
import pytest
from lxml import etree

from conftest import free_port, wait_for
from support import register_citizen
from hub.trust import pki
from hub.intake.polling import poll_partner
from hub.trust.signing import verify
from registry import service
from registry.services.life_certificates import record_death_notice

pytestmark = pytest.mark.slow

CDG_NS = "urn:ma:cdg:certificats-vie:1"
FINAL = {"ACCEPTED", "REJECTED", "FAILED"}


@pytest.fixture
def cdg(running_hub, start_sandbox):
    control = free_port()
    return start_sandbox("cdg", running_hub.url, extra_args=["--control-port", str(control)], http_port=control)


def register(client, given: str = "Ahmed", family: str = "Bennani") -> str:
    return register_citizen(client, given_name_latin=given, family_name_latin=family, given_name_arabic="أحمد",
                            family_name_arabic="بناني", birth_date="1950-06-14", cnie="BE123456")["registration_id"]


def issue(client, registration_id: str, pension_number: str, fund: str = "CNRA") -> dict:
    case = client.post("/api/v1/cases/life-certificate", json={
        "registration_id": registration_id, "pension_number": pension_number, "fund": fund,
        "issue_date": "2026-11-20"})
    assert case.status_code == 201, case.text
    return case.json()


def death_notice(running_hub, registration_id: str, pension_number: str) -> str:
    """What the repatriation service does when its case names a pension: queue a death notice."""
    with running_hub.hub.sessions.begin() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        repatriation = service.open_case(session, service="REPATRIATION", citizen=citizen, actor="test",
                                         details={"pension": {"pension_number": pension_number, "fund": "RCAR"}})
        notice = record_death_notice(session, repatriation_case=repatriation, pension_number=pension_number,
                                     fund="RCAR", date_of_death=dt.date(2026, 11, 18))
        again = record_death_notice(session, repatriation_case=repatriation, pension_number=pension_number,
                                    fund="RCAR", date_of_death=dt.date(2026, 11, 18))
        assert again.reference == notice.reference  # once per repatriation case
        return notice.reference


def poll_until_acknowledged(running_hub, client, batch: str) -> dict:
    def acknowledged():
        poll_partner(running_hub.hub, "CDG")
        found = client.get(f"/api/v1/life-certificates/batches/{batch}").json()
        return found if found["status"] == "ACKNOWLEDGED" else None
    return wait_for(acknowledged, 30, interval=0.3, what=f"CDG's acknowledgement of {batch}")


def test_certificates_and_death_notice_reach_cdgs_verdict(running_hub, cdg, client, pki_dir):
    citizen = register(client)
    numbers = [f"2023041{d}" for d in range(10)]  # the one ending in 9 is unknown to CDG
    certificates = {issue(client, citizen, n, "CNRA" if i % 2 else "RCAR")["reference"]: n
                    for i, n in enumerate(numbers)}
    first = client.get(f"/api/v1/cases/{next(iter(certificates))}").json()
    assert first["status"] == "ISSUED" and [h["status"] for h in first["history"]] == ["ISSUED"]
    notice = death_notice(running_hub, citizen, "7000108")

    sent = client.post("/api/v1/life-certificates/batches")
    assert sent.status_code == 200, sent.text
    batch = sent.json()["batch"]
    assert batch.startswith("LCB-")
    assert client.post("/api/v1/life-certificates/batches").json()["batch"] is None  # nothing left to send
    assert client.get(f"/api/v1/cases/{notice}").json()["status"] == "BATCHED"

    found = poll_until_acknowledged(running_hub, client, batch)
    assert (found["certificates"], found["death_notices"], found["accepted"], found["rejected"]) == (10, 1, 10, 1)
    for reference, number in certificates.items():
        case = client.get(f"/api/v1/cases/{reference}").json()
        expected = "REJECTED" if number.endswith("9") else "ACCEPTED"
        assert case["status"] == expected, reference
        assert [h["status"] for h in case["history"]] == ["ISSUED", "BATCHED", expected]
        assert case["outcome"]["batch"] == batch and case["partner_reference"] == f"CDG-AR-{batch}"
        if expected == "REJECTED":
            assert case["outcome"]["reason"] == "PENSION_INCONNUE"
    assert client.get(f"/api/v1/cases/{notice}").json()["status"] == "ACCEPTED"

    # CDG received exactly one batch, signed by the hub, with what CDG needs and nothing more
    received = cdg.received("CDG")
    assert [p.name for p in received] == [f"{batch}.xml"]
    lot = verify(etree.fromstring(received[0].read_bytes()), pki.load_certificate(str(pki_dir / "hub.crt")),
                 signer_name="hub")
    assert lot.findtext(f"{{{CDG_NS}}}IdentifiantMessage") == f"REGISTRY-{batch}"
    assert lot.findtext(f"{{{CDG_NS}}}NombreCertificats") == "10"
    assert b"MRE-" not in received[0].read_bytes()  # no registration id: minimisation
    # the acknowledgement was taken in: moved to done/, correlated to the batch message on its timeline
    assert (cdg.data_dir / "CDG" / "sftp" / "done" / f"AR_{batch}.xml").exists()
    ack = client.get("/api/v1/messages", params={"type": "LifeCertificateBatchAcknowledgement"}).json()["items"]
    assert [(m["id"], m["in_reply_to"], m["correlation_id"]) for m in ack] == [(f"CDG-AR-{batch}", f"REGISTRY-{batch}", batch)]
    events = [e["event"] for e in client.get(f"/api/v1/messages/{ack[0]['id']}").json()["timeline"]]
    assert "MAPPED_IN" in events and "CORRELATED" in events
    # the registry kept CDG's own signed acknowledgement, and it still verifies as CDG's
    with running_hub.hub.sessions() as session:
        from registry.models import PensionBatch
        kept = session.query(PensionBatch).filter_by(reference=batch).one().acknowledgement
    verify(etree.fromstring(kept), pki.load_certificate(str(pki_dir / "CDG.crt")), signer_name="CDG")
    # polling again finds nothing new
    assert poll_partner(running_hub.hub, "CDG") == {"accepted": 0, "refused": 0, "seen": 0, "failed": 0,
                                                    "streamed": 0}


def test_partner_refusing_writes_is_retried_until_it_recovers(running_hub, cdg, client):
    citizen = register(client)
    reference = issue(client, citizen, "20230410")["reference"]
    cdg.behave(mode="fail")
    batch = client.post("/api/v1/life-certificates/batches").json()["batch"]
    wait_for(lambda: client.get(f"/api/v1/messages/REGISTRY-{batch}").json()["deliveries"][0]["attempts"] >= 2,
             what="two refused attempts")
    assert "the server refused" in client.get(f"/api/v1/messages/REGISTRY-{batch}").json()["deliveries"][0]["last_error"]
    cdg.behave(mode="normal")
    poll_until_acknowledged(running_hub, client, batch)
    assert client.get(f"/api/v1/cases/{reference}").json()["status"] == "ACCEPTED"


def polls_counted(running_hub, outcome: str) -> float:
    text = httpx.get(f"{running_hub.url}/metrics", timeout=10).text
    found = re.search(rf'^hub_polls_total{{outcome="{outcome}",partner="CDG"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_file_the_hub_cannot_set_aside_stops_neither_the_poll_nor_is_refused_twice(running_hub, cdg, client):
    from hub.store.models import Refusal
    citizen = register(client)
    reference = issue(client, citizen, "20230412")["reference"]
    batch = client.post("/api/v1/life-certificates/batches").json()["batch"]
    sftp = cdg.data_dir / "CDG" / "sftp"
    wait_for(lambda: (sftp / "outbox" / f"AR_{batch}.xml").exists(), 30, what="CDG's acknowledgement")
    bad, junk = "AR_0" + "x" * 236 + ".xml", b"<junk>not an acknowledgement</junk>"  # listed before CDG's own
    assert len(bad) == 244
    (sftp / "outbox" / bad).write_bytes(junk)
    errors_before = polls_counted(running_hub, "error")

    cdg.behave(mode="fail")  # CDG's server refuses writes: the junk's reason cannot be written beside it
    try:
        answers = [client.post("/api/v1/partners/CDG/poll") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
        assert answers[0].json() == {"partner": "CDG", "accepted": 1, "refused": 0, "seen": 0, "failed": 1,
                                      "streamed": 0}
        assert answers[2].json() == {"partner": "CDG", "accepted": 0, "refused": 0, "seen": 0, "failed": 1,
                                      "streamed": 0}
        # the file after the junk was read and its batch acknowledged; the junk was refused once, not per poll
        assert client.get(f"/api/v1/life-certificates/batches/{batch}").json()["status"] == "ACKNOWLEDGED"
        assert client.get(f"/api/v1/cases/{reference}").json()["status"] == "ACCEPTED"
        with running_hub.hub.sessions() as session:
            refusals = session.query(Refusal).filter_by(digest=hashlib.sha256(junk).hexdigest()).all()
        assert [(r.channel, r.partner) for r in refusals] == [("sftp", "CDG")]
        assert polls_counted(running_hub, "error") == errors_before + 3
        assert running_hub._poll("CDG") is False  # the scheduled poll's run counts as an error too
        ready = httpx.get(f"{running_hub.url}/readyz", timeout=10)
        polling = ready.json()["checks"]["polling"]
        assert not polling["ok"]
        assert "1 file(s) could not be handled" in polling["detail"] and "the server refused" in polling["detail"]
        assert (sftp / "outbox" / bad).exists()
    finally:
        cdg.behave(mode="normal")

    # writes work again: the junk is set aside with a reason whose names fit in 255 bytes; still one refusal
    assert client.post("/api/v1/partners/CDG/poll").json() == {"partner": "CDG", "accepted": 0, "refused": 0,
                                                                "seen": 1, "failed": 0, "streamed": 0}
    failed = sorted(p.name for p in (sftp / "failed").iterdir())
    [reason] = [name for name in failed if name.endswith(".reason.txt")]
    assert bad in failed and len(reason.encode()) <= 249 and reason.startswith("AR_0xxx")
    text = (sftp / "failed" / reason).read_text()
    assert "refused by the hub" in text and f"file: {bad}" in text
    with running_hub.hub.sessions() as session:
        assert session.query(Refusal).filter_by(digest=hashlib.sha256(junk).hexdigest()).count() == 1
    assert httpx.get(f"{running_hub.url}/readyz", timeout=10).json()["checks"]["polling"]["ok"]


def test_batch_that_cannot_be_delivered_fails_with_its_cases(running_hub, client, pki_dir):
    # no CDG sandbox: connections are refused until the retry policy gives up (dead letter)
    citizen = register(client)
    references = [issue(client, citizen, f"4000000{d}")["reference"] for d in range(3)]
    batch = client.post("/api/v1/life-certificates/batches").json()["batch"]
    found = wait_for(lambda: (b := client.get(f"/api/v1/life-certificates/batches/{batch}").json())["status"] == "FAILED"
                     and b, 40, what="the batch to fail")
    assert "connection refused" in found["detail"]
    for reference in references:
        case = client.get(f"/api/v1/cases/{reference}").json()
        assert case["status"] == "FAILED" and "connection refused" in case["history"][-1]["note"]


def test_issuing_needs_a_registered_citizen_and_valid_fields(running_hub, client):
    assert client.post("/api/v1/cases/life-certificate", json={
        "registration_id": "MRE-9999999", "pension_number": "20230410", "fund": "CNRA"}).status_code == 404
    citizen = register(client)
    for body in ({"pension_number": "12AB", "fund": "CNRA"}, {"pension_number": "20230410", "fund": "CMR"},
                 {"pension_number": "20230410", "fund": "CNRA", "iban": "x"}):
        answer = client.post("/api/v1/cases/life-certificate", json={"registration_id": citizen, **body})
        assert answer.status_code == 422, body
