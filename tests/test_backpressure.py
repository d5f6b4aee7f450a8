"""Back-pressure on real processes: past HUB_MAX_OUTBOX_DEPTH pending deliveries for a partner, intake of
messages for that partner answers 429 with Retry-After and a problem+json body naming the partner and the
depth, and stores nothing; once the partner is back and its outbox drains, the same messages are accepted.
Every door says so: the canonical REST door, the partner REST door, and the SOAP door (a transient
soap:Server fault with RetryAfter)."""
from __future__ import annotations

import time

import pytest
from lxml import etree

from conftest import wait_for
from support import licence_request, signer_for
from test_licence_flow import FINAL, _narsa_result, open_case
from test_partner_isolation import metric
from test_soap_inbound import Caller, demande, fault_of

LIMIT = 4
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def settings(settings):
    """A small outbox limit; a breaker that retries a recovered partner within a second."""
    return settings.replace(max_outbox_depth=LIMIT, breaker_seconds=1)


def submit_until_refused(client, url: str, documents: list[bytes], *, refused_wanted: int = 3) -> tuple[list, list]:
    """POST each document in turn (0.2 s apart) until `refused_wanted` were answered 429; returns
    (indexes accepted, (index, response) refused)."""
    accepted, refused = [], []
    for i, data in enumerate(documents):
        response = client.post(url, content=data, headers=XML)
        if response.status_code == 202:
            accepted.append(i)
        else:
            assert response.status_code == 429, response.text
            refused.append((i, response))
            if len(refused) == refused_wanted:
                break
        time.sleep(0.2)
    assert len(refused) == refused_wanted, f"never refused: {len(accepted)} accepted"
    return accepted, refused


def check_refusal(response, partner: str) -> dict:
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["status"] == 429 and body["title"] == "Partner outbox full"
    assert body["partner"] == partner and body["depth"] >= LIMIT and body["limit"] == LIMIT
    assert partner in body["detail"] and str(body["depth"]) in body["detail"]
    return body


def test_canonical_intake_answers_429_while_the_partner_is_down_then_accepts(running_hub, sandbox_factory, client,
                                                                               pki_dir):
    narsa = sandbox_factory(running_hub.url)
    narsa.behave(mode="fail", status=503)   # NARSA refuses every delivery: its outbox grows
    throttled_before = metric(running_hub.url, "hub_intake_throttled_total", "NARSA")  # counts per process
    documents = [licence_request(pki_dir, reference=f"LIC-2026-{500 + i:06d}") for i in range(30)]
    accepted, refused = submit_until_refused(client, "/api/v1/messages", documents)
    body = check_refusal(refused[0][1], "NARSA")
    refused_ids = [f"REGISTRY-LIC-2026-{500 + i:06d}" for i, _ in refused]
    stored = client.get("/api/v1/messages", params={"type": "LicenceAuthenticationRequest"}).json()["total"]
    assert stored == len(accepted)                                        # nothing stored for the refused
    assert all(client.get(f"/api/v1/messages/{m}").status_code == 404 for m in refused_ids)
    throttled = metric(running_hub.url, "hub_intake_throttled_total", "NARSA") - throttled_before

    narsa.behave(mode="normal")
    started = time.monotonic()
    wait_for(lambda: waiting(client, "LicenceAuthenticationRequest") == 0, 30, interval=0.2,
             what="NARSA's outbox to drain")
    drained = time.monotonic() - started

    def accepted_again():
        return client.post("/api/v1/messages", content=documents[refused[0][0]], headers=XML).status_code == 202
    wait_for(accepted_again, 5, interval=0.3, what="intake for NARSA to accept again")
    for i, _ in refused[1:]:
        assert client.post("/api/v1/messages", content=documents[i], headers=XML).status_code == 202
    total = len(accepted) + len(refused)
    wait_for(lambda: narsa.stats()["received"] == total, 30, what="every accepted message delivered")
    messages = client.get("/api/v1/messages", params={"type": "LicenceAuthenticationRequest", "limit": 100}).json()
    print(f"\nback-pressure: limit {LIMIT}; {len(accepted)} accepted while NARSA failed, then {len(refused)} "
          f"answered 429 (first at depth {body['depth']}, Retry-After {refused[0][1].headers['Retry-After']} s, "
          f"hub_intake_throttled_total {throttled:g}), none stored; outbox drained {drained:.1f} s after NARSA "
          f"was back; the {len(refused)} refused accepted when sent again; {narsa.stats()['received']} distinct "
          f"at NARSA, {narsa.stats()['duplicates']} duplicates")
    assert LIMIT <= len(accepted) <= LIMIT + 8   # the depth, cached for 1 s, lets ~1 s of intake (0.2 s apart) by
    assert throttled >= len(refused)
    assert messages["total"] == total and len(narsa.received()) == total


def test_partner_door_answers_429_when_the_answers_recipient_is_backed_up(running_hub, client, pki_dir):
    """Answers go to the registry (REGISTRY); with the delivery workers paused its outbox fills, and the partner
    door (POST /api/v1/partners/NARSA/messages) answers 429 in turn, until the workers drain it."""
    running_hub.workers.stop()
    references = [open_case(client, f"12/34567{i}") for i in range(LIMIT)]   # NARSA's outbox: exactly at the limit
    answers = [narsa_answer(pki_dir, references[i % LIMIT], i) for i in range(LIMIT + 12)]  # later: 2nd answers
    accepted, refused = submit_until_refused(client, "/api/v1/partners/NARSA/messages", answers, refused_wanted=2)
    body = check_refusal(refused[0][1], "REGISTRY")
    results = client.get("/api/v1/messages", params={"type": "LicenceAuthenticationResult"}).json()["total"]
    assert results == len(accepted) and len(accepted) >= LIMIT

    # a request to NARSA is refused too: its outbox is at the limit (nothing drains it while paused)
    request = licence_request(pki_dir, reference="LIC-2026-000999")
    refused_request = client.post("/api/v1/messages", content=request, headers=XML)
    check_refusal(refused_request, "NARSA")

    # and the SOAP door: a transient soap:Server fault with RetryAfter, HTTP 429 and Retry-After
    soap = Caller(running_hub.url).call(demande(pki_dir, message_id="MJ-DS-BP-000001", reference="MJ-2026-BP001"))
    fault = fault_of(soap)
    assert soap.status_code == 429 and int(soap.headers["Retry-After"]) >= 1
    assert fault.code.endswith("Server") and fault.transient and "REGISTRY" in fault.string

    running_hub.workers.start()
    wait_for(lambda: waiting(client, "LicenceAuthenticationResult") == 0, 30, interval=0.2,
             what="the registry's outbox to drain")
    wait_for(lambda: client.post("/api/v1/partners/NARSA/messages", content=answers[refused[0][0]],
                                 headers=XML).status_code == 202, 5, interval=0.3, what="the partner door to accept")
    statuses = [client.get(f"/api/v1/cases/{r}").json()["status"] for r in references]
    print(f"\npartner door: limit {LIMIT}; {len(accepted)} answers accepted, then {len(refused)} answered 429 "
          f"(REGISTRY depth {body['depth']}); a request for NARSA refused as well, and JUSTICE over SOAP "
          f"({soap.status_code}, {fault.code} RetryAfter {fault.retry_after:g}); after the workers drained the "
          f"registry's outbox the refused answer was accepted; cases {statuses}")
    assert all(s in FINAL for s in statuses)


def waiting(client, type_: str) -> int:
    """Messages of `type_` accepted and not yet delivered."""
    return client.get("/api/v1/messages", params={"type": type_, "state": "ACCEPTED"}).json()["total"]


def narsa_answer(pki_dir, reference: str, n: int) -> bytes:
    """NARSA's signed verdict on case `reference`, its own message id NARSA-R-<n>."""
    root = _narsa_result(pki_dir, in_reply_to=f"REGISTRY-{reference}", case=reference)
    root.find("{urn:ma:narsa:authentification-permis:1}IdentifiantMessage").text = f"NARSA-R-{900000 + n}"
    for signature in root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        root.remove(signature)
    return etree.tostring(signer_for(pki_dir, "NARSA").sign(root))
