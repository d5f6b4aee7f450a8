"""A citizen's record over its life, through the API of a running hub: registration PENDING until DGSN's
identity check (DGSN's sandbox), one live record per CNIE and near-duplicates named, corrections kept with the
value they replaced, a death that blocks all but the cases about it (set by an agent, a repatriation, a death
transcribed by ETAT_CIVIL's sandbox; a judicial document for the dead is certified back to JUSTICE's sandbox),
and transfers seen by both posts. Another post's agent changes nothing and reads nothing."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import func, select

from conftest import wait_for
from hub.store.models import AuditEntry
from registry import citizens
from registry.models import Citizen, Post
from support import CITIZEN, register_citizen

pytestmark = pytest.mark.shared_hub

PARIS, MADRID, MILANO = "FR-PARIS", "ES-MADRID", "IT-MILANO"
LICENCE = {"number": "12/345673", "categories": ["B"], "issue_date": "2010-05-03"}
REPATRIATION = {"death": {"date": "2026-11-18", "country": "FR", "city": "Paris", "cause_code": "I21.9",
                          "cause_text": "Cause médicale"},
                "burial": {"commune": "1411011", "commune_name": "Agadir"},
                "transport": {"entry_point": "CMN", "arrival_date": "2026-11-25", "carrier": "RAM", "seal_number": "S-1"}}


def count_citizens(running_hub) -> int:
    with running_hub.hub.sessions() as session:
        return session.scalar(select(func.count()).select_from(Citizen))


def audited(running_hub, action: str, subject: str) -> list[str]:
    with running_hub.hub.sessions() as session:
        return list(session.scalars(select(AuditEntry.actor).where(AuditEntry.action == action,
                                                                   AuditEntry.subject == subject)))


def history(http, registration_id: str) -> list[dict]:
    response = http.get(f"/api/v1/citizens/{registration_id}/history")
    assert response.status_code == 200, response.text
    return response.json()["changes"]


def refused(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    problem = response.json()
    if field is not None:
        assert field in response.text, problem
    return problem


# -- pure logic ---------------------------------------------------------------------------------------------

def test_names_are_compared_without_case_accents_diacritics_or_alef_forms():
    assert citizens.folded("  Ÿoussef   EL AMRANI ") == citizens.folded("youssef el amrani")
    assert citizens.folded("Hélène") == citizens.folded("HELENE")
    assert citizens.folded("أحمد") == citizens.folded("احمد") == citizens.folded("إحمد") == citizens.folded("أَحْمَد")
    assert citizens.folded("محـمد") == citizens.folded("محمد")  # tatweel
    assert citizens.folded("Youssef") != citizens.folded("Youness")


# -- registration -------------------------------------------------------------------------------------------

def test_a_registered_citizen_is_active_only_once_dgsn_has_checked_the_identity(running_hub, start_sandbox, client):
    start_sandbox("dgsn", running_hub.url, extra_args=["--answer-delay", "0.1"])
    opened = {}
    for cnie in ("RG123453", "RG123457"):  # DGSN: last digit 0-6 MATCH, 7-8 MISMATCH
        response = client.post("/api/v1/citizens", json={**CITIZEN, "cnie": cnie, "given_name_latin": "Rania"})
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["registration_case"]["reference"].startswith("REG-")
        assert "DGSN" in answer["registration_case"]["detail"]
        opened[cnie] = answer
    for cnie, status in (("RG123453", "ACTIVE"), ("RG123457", "REJECTED")):
        registration_id = opened[cnie]["registration_id"]
        citizen = wait_for(lambda: (c := client.get(f"/api/v1/citizens/{registration_id}").json())["status"] != "PENDING"
                           and c, 30, what=f"DGSN's answer for {registration_id}")
        assert citizen["status"] == status
        case = client.get(f"/api/v1/cases/{opened[cnie]['registration_case']['reference']}").json()
        assert case["status"] == status and case["service"] == "CONSULAR_REGISTRATION"
        assert case["details"]["kind"] == "NEW" and case["registration_id"] == registration_id
        changes = history(client, registration_id)
        assert [(c["kind"], c["old"], c["new"], c["actor"]) for c in changes][1:] == [
            ("IDENTITY_CHECK", "PENDING", status, "DGSN")]
        assert changes[0]["kind"] == "REGISTERED" and changes[0]["new"] == "PENDING"


def test_a_pending_citizen_has_no_case_and_a_cnie_is_held_by_one_live_record(running_hub, client_as):
    agent = client_as("consular_agent", post=PARIS)
    person = {**CITIZEN, "cnie": "PD123456", "given_name_latin": "Nour", "family_name_latin": "Haddad",
              "given_name_arabic": "نور", "family_name_arabic": "حداد", "birth_date": "1991-07-08"}
    first = agent.post("/api/v1/citizens", json=person)
    assert first.status_code == 202, first.text
    pending = first.json()
    assert pending["status"] == "PENDING" and pending["warnings"] == []  # DGSN's sandbox is not running here
    registration_id = pending["registration_id"]
    assert audited(running_hub, "CITIZEN_REGISTERED", registration_id)

    case = agent.post("/api/v1/cases/licence-authentication", json={"registration_id": registration_id,
                                                                      "licence": LICENCE})
    assert "PENDING" in refused(case, 409)["detail"]
    assert [c["service"] for c in agent.get("/api/v1/cases").json()
            if c["registration_id"] == registration_id] == ["CONSULAR_REGISTRATION"]

    before = count_citizens(running_hub)
    again = agent.post("/api/v1/citizens", json={**person, "given_name_latin": "Other"})
    assert registration_id in refused(again, 409, "cnie")["detail"]
    assert count_citizens(running_hub) == before

    # the same names (another alef, another case) and birth date: registered, with a warning naming the other
    twin = agent.post("/api/v1/citizens", json={**person, "cnie": "PD654321", "given_name_latin": "NOUR",
                                                  "family_name_arabic": "حدّاد"})
    assert twin.status_code == 202, twin.text
    assert [(w["kind"], w["registration_id"]) for w in twin.json()["warnings"]] == [("NEAR_DUPLICATE", registration_id)]

    # another post's agent learns that a record holds the CNIE or shares the names, never which one or where
    madrid = client_as("consular_agent", post="ES-MADRID")
    elsewhere = madrid.post("/api/v1/citizens", json={**person, "post_code": "ES-MADRID"})
    detail = refused(elsewhere, 409, "cnie")["detail"]
    assert "another post" in detail and registration_id not in detail and PARIS not in detail
    lookalike = madrid.post("/api/v1/citizens", json={**person, "post_code": "ES-MADRID", "cnie": "PD777777"})
    assert lookalike.status_code == 202, lookalike.text
    assert {w["kind"] for w in lookalike.json()["warnings"]} == {"NEAR_DUPLICATE"}
    assert registration_id not in lookalike.text and twin.json()["registration_id"] not in lookalike.text
    before += 1

    for field, value in (("family_name_latin", "Had\u202edad"), ("given_name_arabic", "نور\u0000"),
                         ("address_lines", ""), ("address_lines", "1\n2\n3\n4")):
        response = agent.post("/api/v1/citizens", json={**person, "cnie": "PD111111", field: value})
        assert response.status_code in (400, 422) and field in response.text, (field, response.text)
    assert count_citizens(running_hub) == before + 1


# -- corrections --------------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_corrections_keep_the_value_they_replace_and_refuse_what_would_break_the_record(running_hub, client_as):
    agent = client_as("consular_agent", post=PARIS)
    citizen = register_citizen(agent, cnie="CR123456", given_name_latin="Samir", family_name_latin="El Fassi",
                               address_lines="1 rue Ancienne")
    other = register_citizen(agent, cnie="CR654321", given_name_latin="Salma")
    rid = citizen["registration_id"]
    url = f"/api/v1/citizens/{rid}/corrections"

    contacts = agent.post(url, json={"address_lines": "5 rue Neuve\nBâtiment B", "phone": "+33612345678"})
    assert contacts.status_code == 200, contacts.text
    assert contacts.json()["address_lines"] == "5 rue Neuve\nBâtiment B" and contacts.json()["phone"] == "+33612345678"
    assert {c["field"] for c in contacts.json()["changed"]} == {"address_lines", "phone"}

    before = agent.get(f"/api/v1/citizens/{rid}").json()
    for body, status, field in (({"family_name_latin": "El Fasssi"}, 400, "reason"),  # civil data: say why
                                ({"cnie": "CR654321", "reason": "typo"}, 409, other["registration_id"]),
                                ({"given_name_arabic": "سمير\u202e", "reason": "x"}, 400, "given_name_arabic"),
                                ({"given_name_latin": None, "reason": "x"}, 400, "given_name_latin"),
                                ({"birth_date": "2999-01-01", "reason": "x"}, 400, "birth_date"),
                                ({"birth_place": "F\u0000s", "reason": "x"}, 400, "birth_place"),
                                ({"nickname": "Sam"}, 422, "nickname")):
        refused(agent.post(url, json=body), status, field)
    assert agent.get(f"/api/v1/citizens/{rid}").json() == before  # nothing half-done

    civil = agent.post(url, json={"family_name_latin": "El Fassy", "birth_place": "Fès",
                                  "reason": "copie intégrale de l'acte de naissance"})
    assert civil.status_code == 200, civil.text
    unchanged = agent.post(url, json={"family_name_latin": "El Fassy", "reason": "again"})
    assert unchanged.json()["changed"] == []

    changes = history(agent, rid)[1:] if history(agent, rid)[0]["kind"] == "REGISTERED" else history(agent, rid)
    assert [(c["kind"], c["field"], c["old"], c["new"]) for c in changes] == [
        ("CONTACT", "address_lines", "1 rue Ancienne", "5 rue Neuve\nBâtiment B"),
        ("CONTACT", "phone", None, "+33612345678"),
        ("CORRECTION", "family_name_latin", "El Fassi", "El Fassy"),
        ("CORRECTION", "birth_place", "", "Fès")]
    assert changes[2]["reason"] == "copie intégrale de l'acte de naissance" and changes[2]["post_code"] == PARIS
    token_id = agent.token.split("_")[1]
    assert all(f"token {token_id} " in c["actor"] for c in changes)
    assert len(audited(running_hub, "CITIZEN_CORRECTED", rid)) == 2


# -- death ----------------------------------------------------------------------------------------------------

def test_a_deceased_citizen_has_no_new_case_but_those_about_the_death(running_hub, client_as):
    agent = client_as("consular_agent", post=PARIS)
    rid = register_citizen(agent, cnie="DC123456", given_name_latin="Driss", birth_date="1940-05-06")["registration_id"]
    death = f"/api/v1/citizens/{rid}/death"
    refused(agent.post(death, json={"died_on": (dt.date.today() + dt.timedelta(days=1)).isoformat(),
                                    "reason": "acte de décès"}), 400, "died_on")
    refused(agent.post(death, json={"died_on": "1930-01-01", "reason": "acte de décès"}), 400, "died_on")
    assert agent.get(f"/api/v1/citizens/{rid}").json()["status"] == "ACTIVE"

    recorded = agent.post(death, json={"died_on": "2026-11-10", "reason": "acte de décès n° 1520"})
    assert recorded.status_code == 200, recorded.text
    assert (recorded.json()["status"], recorded.json()["died_on"]) == ("DECEASED", "2026-11-10")
    assert agent.post(death, json={"died_on": "2026-11-10", "reason": "again"}).status_code == 200
    refused(agent.post(death, json={"died_on": "2026-11-11", "reason": "other"}), 409, "2026-11-10")
    assert [c["kind"] for c in history(agent, rid)] == ["DECEASED"]
    assert audited(running_hub, "CITIZEN_DECEASED", rid)

    licence = agent.post("/api/v1/cases/licence-authentication", json={"registration_id": rid, "licence": LICENCE})
    assert "deceased" in refused(licence, 409)["detail"]
    renewal = agent.post("/api/v1/cases/consular-registration", json={"kind": "RENEWAL", "registration_id": rid})
    refused(renewal, 409, "deceased")
    repatriation = agent.post("/api/v1/cases/repatriation", json={"registration_id": rid, **REPATRIATION})
    assert repatriation.status_code == 201, repatriation.text
    assert agent.get(f"/api/v1/citizens/{rid}").json()["died_on"] == "2026-11-10"  # the first record kept


def test_a_repatriation_records_the_death_of_a_registered_citizen(client_as):
    agent = client_as("consular_agent", post=PARIS)
    rid = register_citizen(agent, cnie="RP123456", given_name_latin="Rachid", birth_date="1951-02-03")["registration_id"]
    response = agent.post("/api/v1/cases/repatriation", json={"registration_id": rid, **REPATRIATION})
    assert response.status_code == 201, response.text
    citizen = agent.get(f"/api/v1/citizens/{rid}").json()
    assert (citizen["status"], citizen["died_on"]) == ("DECEASED", "2026-11-18")
    [change] = history(agent, rid)
    assert change["kind"] == "DECEASED" and change["actor"] == f"case {response.json()['reference']}"


def test_a_death_transcribed_by_etat_civil_records_the_citizen_deceased(running_hub, start_sandbox, client):
    start_sandbox("etat_civil", running_hub.url, extra_args=["--answer-delay", "0.1"])
    applicant = register_citizen(client, cnie="TD123456", given_name_latin="Amine")["registration_id"]
    deceased = register_citizen(client, cnie="TD654321", given_name_latin="Hassan", birth_date="1950-03-04")
    names = {k: deceased[k] for k in ("given_name_latin", "family_name_latin", "given_name_arabic", "family_name_arabic")}
    response = client.post("/api/v1/cases/transcription", json={
        "registration_id": applicant, "event": "DEATH", "event_date": "2026-10-02",
        "deceased_registration_id": deceased["registration_id"], "event_place": {"country": "FR", "city": "Paris"},
        "foreign_act": {"country": "FR", "authority": "Mairie de Paris", "number": "2026/1520", "date": "2026-10-04"},
        "person": {**names, "sex": "M", "birth_date": "1950-03-04"}})
    assert response.status_code == 201, response.text
    reference = response.json()["reference"]
    case = wait_for(lambda: (c := client.get(f"/api/v1/cases/{reference}").json())["status"] in
                    ("TRANSCRIBED", "REJECTED", "FAILED") and c, 30, what=f"{reference} decided")
    assert case["status"] == "TRANSCRIBED", case["history"]
    citizen = client.get(f"/api/v1/citizens/{deceased['registration_id']}").json()
    assert (citizen["status"], citizen["died_on"]) == ("DECEASED", "2026-10-02")
    assert client.get(f"/api/v1/citizens/{applicant}").json()["status"] == "ACTIVE"


def test_a_judicial_document_for_a_deceased_addressee_is_certified_back_not_served(running_hub, start_sandbox,
                                                                                    client):
    rid = register_citizen(client, cnie="JD123456", given_name_latin="Latifa")["registration_id"]
    assert client.post(f"/api/v1/citizens/{rid}/death", json={"died_on": "2026-09-01",
                                                                "reason": "acte"}).status_code == 200
    justice = start_sandbox("justice", running_hub.url)
    sent = httpx.post(f"{justice.url}/_sandbox/send-requests",
                      json={"addressees": [{"cnie": "JD123456", "name": "Latifa El Amrani"}]}, timeout=10)
    assert sent.status_code == 202, sent.text

    def certified():
        found = [c for c in client.get("/api/v1/cases", params={"service": "JUDICIAL_DOCUMENT"}).json()
                 if c["registration_id"] == rid]
        return found and found[0]["status"] == "NOT_FOUND" and found[0]
    case = client.get(f"/api/v1/cases/{wait_for(certified, 30, what='the certificate')['reference']}").json()
    assert case["post_code"] == PARIS and case["outcome"]["note"] == "addressee deceased on 2026-09-01 (consular register)"
    assert [h["status"] for h in case["history"]] == ["RECEIVED", "CERTIFYING", "NOT_FOUND"]
    wait_for(lambda: any(p.name.startswith("CertificatRemise") or "CERT" in p.name
                         for p in justice.received("JUSTICE")), 30, what="JUSTICE to receive the certificate")


# -- transfer -------------------------------------------------------------------------------------------------

def test_a_transfer_moves_the_citizen_and_both_posts_see_it(running_hub, client_as):
    paris, madrid, milano = (client_as("consular_agent", post=p) for p in (PARIS, MADRID, MILANO))
    rid = register_citizen(paris, cnie="TR123456", given_name_latin="Yassine")["registration_id"]
    assert paris.post(f"/api/v1/citizens/{rid}/corrections", json={"phone": "+33611111111"}).status_code == 200
    with running_hub.hub.sessions.begin() as session:
        if session.get(Post, "XX-SHUT") is None:
            session.add(Post(code="XX-SHUT", name="A closed post", kind="CONSULATE", country="XX", city="Nowhere",
                             jurisdiction="", active=False))
    url = f"/api/v1/citizens/{rid}/transfer"
    for post in ("XX-SHUT", "XX-NONE", PARIS):
        refused(paris.post(url, json={"post_code": post, "reason": "moved"}), 400, "post_code")
    refused(madrid.post(url, json={"post_code": MADRID, "reason": "moved"}), 403)  # not theirs to take
    assert paris.get(f"/api/v1/citizens/{rid}").json()["post_code"] == PARIS

    moved = paris.post(url, json={"post_code": MADRID, "reason": "moved to Madrid"})
    assert moved.status_code == 200 and moved.json()["post_code"] == MADRID, moved.text
    assert audited(running_hub, "CITIZEN_TRANSFERRED", rid)

    assert paris.get(f"/api/v1/citizens/{rid}").status_code == 403  # no longer theirs
    assert madrid.get(f"/api/v1/citizens/{rid}").status_code == 200
    seen_by_paris, seen_by_madrid = history(paris, rid), history(madrid, rid)
    assert [c["kind"] for c in seen_by_paris] == ["CONTACT", "TRANSFER"] == [c["kind"] for c in seen_by_madrid]
    assert (seen_by_paris[-1]["old"], seen_by_paris[-1]["new"]) == (PARIS, MADRID)
    assert madrid.post(f"/api/v1/citizens/{rid}/corrections", json={"phone": "+34611111111"}).status_code == 200
    assert [c["kind"] for c in history(madrid, rid)] == ["CONTACT", "TRANSFER", "CONTACT"]
    assert [c["kind"] for c in history(paris, rid)] == ["CONTACT", "TRANSFER"]  # Madrid's own changes are Madrid's
    refused(milano.get(f"/api/v1/citizens/{rid}/history"), 403)
    refused(paris.post(f"/api/v1/citizens/{rid}/corrections", json={"phone": "+33622222222"}), 403)
