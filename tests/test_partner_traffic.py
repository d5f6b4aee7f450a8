"""A partner system reads its own traffic (GET /api/v1/partner/..., hub/partner_view.py), with two partners on
real processes: NARSA (REST, result by callback) and DGSN (SOAP, synchronous answer). Each sees the messages it
sent and those sent to it, their state, its deliveries and why one failed, and what the hub refused from it;
another partner's message is a 404 in the same words as an unknown one, and is never listed."""
from __future__ import annotations

import pytest

from conftest import wait_for
from support import register_citizen

pytestmark = pytest.mark.shared_hub

XML = {"Content-Type": "application/xml"}
PERSON = {"given_name_latin": "Youssef", "family_name_latin": "El Amrani", "given_name_arabic": "يوسف",
          "family_name_arabic": "العمراني", "birth_date": "1988-04-12", "birth_place": "Casablanca", "sex": "M",
          "cnie": "BK123453"}
ADDRESS = {"country": "FR", "city": "Paris", "lines": ["3 rue de Rivoli"], "postal_code": "75004"}


def licence_case(client, registration_id: str, number: str) -> str:
    response = client.post("/api/v1/cases/licence-authentication", json={
        "registration_id": registration_id, "licence": {"number": number, "categories": ["B"],
                                                        "issue_date": "2010-05-03"}})
    assert response.status_code == 201, response.text
    return response.json()["reference"]


def final(client, reference: str, statuses: set[str]) -> dict:
    return wait_for(lambda: (c := client.get(f"/api/v1/cases/{reference}").json())["status"] in statuses and c,
                    30, what=f"case {reference} in {sorted(statuses)}")


def every_page(http, **params) -> list[dict]:
    items, before = [], None
    while True:
        page = http.get("/api/v1/partner/messages", params={**params, "limit": 2,
                                                            **({"before": before} if before else {})}).json()
        items += page["items"]
        before = page["next_before"]
        if before is None:
            return items


def test_each_partner_reads_its_own_traffic_and_nothing_of_the_others(running_hub, client, client_as,
                                                                      start_sandbox):
    boxes = start_sandbox(["narsa", "dgsn"], running_hub.url)
    citizen = register_citizen(client, cnie="BK223453")
    licence = final(client, licence_case(client, citizen["registration_id"], "12/345673"), {"AUTHENTIC"})
    opened = client.post("/api/v1/cases/consular-registration",
                         json={"kind": "NEW", "post_code": "FR-PARIS", "person": PERSON, "address": ADDRESS})
    assert opened.status_code == 201, opened.text
    registration = final(client, opened.json()["reference"], {"ACTIVE"})
    narsa, dgsn = client_as("partner", partner="NARSA"), client_as("partner", partner="DGSN")

    # NARSA: the request the hub sent it and the result it sent back, as the hub's own search lists them
    seen = every_page(narsa)
    expected = {m["id"] for m in client.get("/api/v1/messages", params={"partner": "NARSA"}).json()["items"]}
    assert {m["id"] for m in seen} == expected and len(seen) == len(expected) == 2
    by_direction = {m["direction"]: m for m in seen}
    request, result = by_direction["received"], by_direction["sent"]
    assert request["id"] == licence["request_message_id"] and request["recipient"] == "NARSA"
    assert (request["state"], [d["partner"] for d in request["deliveries"]]) == ("DELIVERED", ["NARSA"])
    assert result["sender"] == "NARSA" and result["correlation_id"] == licence["reference"]
    assert [d["partner"] for d in result["deliveries"]] == ["REGISTRY"] and result["state"] == "DELIVERED"
    # DGSN: its own, none of NARSA's
    dgsn_seen = every_page(dgsn)
    assert {m["correlation_id"] for m in dgsn_seen} == {registration["reference"]}
    assert {m["direction"] for m in dgsn_seen} == {"sent", "received"}
    assert not {m["id"] for m in dgsn_seen} & expected

    # one message with its timeline: of the hub's request, only NARSA's delivery; of its own, the whole journey
    detail = narsa.get(f"/api/v1/partner/messages/{request['id']}").json()
    events = [e["event"] for e in detail["timeline"]]
    assert "SENT" in events and "RECEIVED" not in events, events
    own = narsa.get(f"/api/v1/partner/messages/{result['id']}").json()
    assert {"RECEIVED", "VERIFIED", "ACCEPTED", "SENT"} <= {e["event"] for e in own["timeline"]}
    # another partner's message: 404 in the words of an unknown one, whoever asks
    foreign = dgsn.get(f"/api/v1/partner/messages/{request['id']}")
    unknown = dgsn.get("/api/v1/partner/messages/NO-SUCH-MESSAGE")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["detail"].replace(request["id"], "X") == unknown.json()["detail"].replace(
        "NO-SUCH-MESSAGE", "X")
    assert dgsn.get(f"/api/v1/partner/messages/{request['id']}", params={"sender": "REGISTRY"}).status_code == 404
    assert narsa.get("/api/v1/partner/messages", params={"partner": "DGSN"}).status_code == 403
    # an administrator sees exactly what a partner sees, by naming it
    assert client.get("/api/v1/partner/messages").status_code == 400
    assert client.get("/api/v1/partner/messages", params={"partner": "NARSA"}).json()["items"] == \
        narsa.get("/api/v1/partner/messages").json()["items"]

    # NARSA refuses a request (422): the hub's delivery to it is dead, with NARSA's own answer as the reason
    boxes["narsa"].behave(mode="fail", status=422)
    refused = client.get(f"/api/v1/cases/{licence_case(client, citizen['registration_id'], '12/345674')}").json()
    dead = wait_for(lambda: narsa.get("/api/v1/partner/messages", params={"state": "DEAD"}).json()["items"],
                    30, what="NARSA's dead delivery")
    assert [m["correlation_id"] for m in dead] == [refused["reference"]]
    assert "422" in dead[0]["deliveries"][0]["last_error"], dead[0]
    assert narsa.get("/api/v1/partner/messages", params={"direction": "sent", "state": "DEAD"}).json()["items"] == []
    assert dgsn.get("/api/v1/partner/messages", params={"state": "DEAD"}).json()["items"] == []

    # what the hub refused from NARSA, with the reason; not DGSN's to see
    assert narsa.post("/api/v1/messages", content=b"<not-xml", headers=XML).status_code == 400
    refusals = narsa.get("/api/v1/partner/refusals").json()["items"]
    assert refusals[0]["status"] == 400 and refusals[0]["door"] == "rest" and refusals[0]["reason"], refusals
    assert refusals[0]["digest_sha256"] not in {r["digest_sha256"] for r in
                                                 dgsn.get("/api/v1/partner/refusals").json()["items"]}


# -- the pages, from the storage: two index branches merged, newest first ---------------------------------

import datetime as dt  # noqa: E402

from hub.partner_view import TrafficFilters, list_traffic  # noqa: E402
from hub.store.db import make_engine, make_sessionmaker  # noqa: E402
from hub.store.models import Delivery, Message  # noqa: E402


@pytest.mark.private_hub
@pytest.mark.both_databases
def test_pages_merge_what_a_partner_sent_and_what_it_was_sent_newest_first(database_url):
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    # (sender, recipient, [(delivery partner, state)]): NARSA's own, the hub's to NARSA, a fan-out it is part of,
    # and traffic that is none of NARSA's (another partner's, a fan-out without it)
    shapes = [("NARSA", "REGISTRY", [("REGISTRY", "DELIVERED")]), ("REGISTRY", "NARSA", [("NARSA", "DEAD")]),
              ("REGISTRY", "SANTE", [("SANTE", "DELIVERED"), ("NARSA", "PENDING")]),
              ("DGSN", "REGISTRY", [("REGISTRY", "DELIVERED")]),
              ("REGISTRY", "SANTE", [("SANTE", "DELIVERED"), ("DGSN", "DEAD")])]
    with sessions.begin() as session:
        for n in range(15):
            sender, recipient, deliveries = shapes[n % len(shapes)]
            message = Message(message_id=f"M-{n}", sender=sender, recipient=recipient, type="T",
                              correlation_id=f"C-{n}", digest="0" * 64, receipt=b"<r/>", received_at=now,
                              updated_at=now, state="DEAD" if any(s == "DEAD" for _, s in deliveries) else "ACCEPTED")
            session.add(message)
            session.flush()
            for partner, state in deliveries:
                session.add(Delivery(message_pk=message.id, partner=partner, state=state, attempts=1,
                                     next_attempt_at=now))
    expected = [f"M-{n}" for n in reversed(range(15)) if n % len(shapes) in (0, 1, 2)]

    def pages(filters: TrafficFilters, limit: int) -> list[dict]:
        items, before = [], None
        with sessions() as session:
            while True:
                page, before = list_traffic(session, "NARSA", filters, before=before, limit=limit)
                assert len(page) <= limit
                items += page
                if before is None:
                    return items
    for limit in (1, 2, 4, 50):
        assert [m["id"] for m in pages(TrafficFilters(), limit)] == expected, limit
    received = pages(TrafficFilters(direction="received"), 2)
    assert [m["id"] for m in received] == [i for i in expected if int(i[2:]) % len(shapes) != 0]
    assert all([d["partner"] for d in m["deliveries"]] == ["NARSA"] for m in received)  # never SANTE's
    dead = pages(TrafficFilters(state="DEAD"), 2)
    assert [m["id"] for m in dead] == [i for i in expected if int(i[2:]) % len(shapes) == 1]
    assert [m["state"] for m in pages(TrafficFilters(state="PENDING"), 3)] == ["PENDING"] * 3  # its delivery's
    engine.dispose()
