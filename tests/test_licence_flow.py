"""The whole flow on real processes: registry -> hub -> NARSA sandbox over REST -> callback -> case final."""
from __future__ import annotations

import datetime as dt

from lxml import etree

from conftest import wait_for
from hub.trust import pki
from hub.trust.signing import verify
from support import register_citizen, signer_for

FINAL = {"AUTHENTIC", "NOT_AUTHENTIC", "DISCREPANCY", "FAILED"}
NARSA_NS = "urn:ma:narsa:authentification-permis:1"


def open_case(client, number: str, post: str = "FR-PARIS") -> str:
    citizen = register_citizen(client, post_code=post, given_name_latin="Khadija", family_name_latin="Alaoui",
                               given_name_arabic="خديجة", family_name_arabic="العلوي", birth_date="1979-03-02",
                               sex="F", cnie="J123456")
    case = client.post("/api/v1/cases/licence-authentication", json={"registration_id": citizen["registration_id"],
                                              "licence": {"number": number, "categories": ["B"],
                                                          "issue_date": "2005-09-01"}})
    assert case.status_code == 201, case.text
    return case.json()["reference"]


def wait_final(client, reference: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (c := client.get(f"/api/v1/cases/{reference}").json())["status"] in FINAL and c,
                    timeout, what=f"case {reference} to reach a final state")


def test_cases_reach_narsa_verdicts_with_signed_attestation(running_hub, sandbox_factory, client, pki_dir):
    sandbox = sandbox_factory(running_hub.url)
    refs = {open_case(client, "12/345673"): "AUTHENTIC", open_case(client, "12/345678"): "DISCREPANCY",
            open_case(client, "12/345679"): "NOT_AUTHENTIC"}
    for reference, expected in refs.items():
        case = wait_final(client, reference)
        assert case["status"] == expected
        assert [h["status"] for h in case["history"]] == ["SUBMITTED", "AWAITING_PARTNER", expected]
        assert case["partner_reference"].startswith("NARSA-")
    authentic = client.get(f"/api/v1/cases/{next(iter(refs))}").json()
    [document] = authentic["documents"]
    assert document["kind"] == "NARSA_ATTESTATION"
    attestation = verify(etree.fromstring(document["xml"].encode()),
                         pki.load_certificate(str(pki_dir / "NARSA.crt")), signer_name="NARSA")
    assert attestation.findtext(f"{{{NARSA_NS}}}NumeroPermis") == "12/345673"
    # every message the partner received verifies against the hub's certificate
    hub_cert = pki.load_certificate(str(pki_dir / "hub.crt"))
    received = sandbox.received()
    assert len(received) == 3
    for path in received:
        verify(etree.fromstring(path.read_bytes()), hub_cert, signer_name="hub")
    # the answer is correlated to the request on its timeline
    answer = client.get("/api/v1/messages", params={"type": "LicenceAuthenticationResult"}).json()["items"][0]
    events = [e["event"] for e in client.get(f"/api/v1/messages/{answer['id']}").json()["timeline"]]
    assert "MAPPED_IN" in events and "CORRELATED" in events and events[-1] == "SENT"


def test_transient_partner_failure_is_retried_until_delivered(running_hub, sandbox_factory, client):
    sandbox = sandbox_factory(running_hub.url)
    sandbox.behave(mode="fail", status=503, retry_after=1)
    reference = open_case(client, "12/345672")
    message_id = f"REGISTRY-{reference}"
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["attempts"] >= 2,
             what="two failed attempts")
    detail = client.get(f"/api/v1/messages/{message_id}").json()
    assert "partner answered 503" in detail["deliveries"][0]["last_error"]
    assert any(e["event"] == "RETRY_SCHEDULED" and "will retry" in e["detail"] for e in detail["timeline"])
    sandbox.behave(mode="normal")
    assert wait_final(client, reference)["status"] == "AUTHENTIC"
    assert sandbox.stats()["received"] == 1


def test_permanent_refusal_dead_letters_and_fails_the_case(running_hub, sandbox_factory, client):
    sandbox = sandbox_factory(running_hub.url)
    sandbox.behave(mode="fail", status=422)
    reference = open_case(client, "12/345671")
    case = wait_final(client, reference)
    assert case["status"] == "FAILED"
    assert "partner answered 422" in case["history"][-1]["note"]
    message = client.get(f"/api/v1/messages/REGISTRY-{reference}").json()
    assert message["state"] == "DEAD" and message["deliveries"][0]["attempts"] == 1
    assert client.get("/api/v1/messages", params={"state": "DEAD"}).json()["total"] == 1


def _narsa_result(pki_dir, *, in_reply_to: str, case: str, verdict: str = "AUTHENTIQUE") -> etree._Element:
    n = lambda tag: f"{{{NARSA_NS}}}{tag}"  # noqa: E731
    root = etree.Element(n("ResultatAuthentification"), nsmap={None: NARSA_NS})
    for tag, text in (("IdentifiantMessage", "NARSA-R-999001"), ("ReferenceDemande", in_reply_to),
                      ("ReferenceDossier", case), ("ReferenceNarsa", "NARSA-2026-999001"),
                      ("DateDecision", dt.datetime.now(dt.timezone.utc).isoformat()), ("Verdict", verdict)):
        etree.SubElement(root, n(tag)).text = text
    return signer_for(pki_dir, "NARSA").sign(root)


def test_partner_answers_are_verified_and_correlated(running_hub, client, pki_dir):
    url = "/api/v1/partners/NARSA/messages"
    headers = {"Content-Type": "application/xml"}
    unknown = etree.tostring(_narsa_result(pki_dir, in_reply_to="REGISTRY-LIC-2026-424242", case="LIC-2026-424242"))
    response = client.post(url, content=unknown, headers=headers)
    assert response.status_code == 400 and response.json()["title"] == "Unknown correlation"
    altered = unknown.replace(b"AUTHENTIQUE", b"NON_AUTHENTIQUE")
    response = client.post(url, content=altered, headers=headers)
    assert response.status_code == 400 and "altered" in response.json()["detail"]
    forged = etree.tostring(signer_for(pki_dir, "REGISTRY").sign(etree.fromstring(strip(unknown))))
    assert client.post(url, content=forged, headers=headers).status_code == 400
    assert client.get("/api/v1/messages").json()["total"] == 0


def strip(data: bytes) -> bytes:
    root = etree.fromstring(data)
    for sig in root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        root.remove(sig)
    return etree.tostring(root)
