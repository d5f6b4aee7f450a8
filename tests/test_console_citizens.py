"""The citizens in the console (registry/citizens_console.py): the search, a citizen's page (record, history,
cases, the link to the registration certificate) and its forms (contacts, civil data, death, transfer), each
action CSRF-checked and audited; another post's citizen is refused and never listed. Over HTTP against a
running hub as a person signed in, and the citizen's page in Chromium in French and Arabic."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from browser_support import LAPTOP, screenshot
from console_support import ConsoleClient, make_user
from hub.store.models import AuditEntry
from support import register_citizen

pytestmark = pytest.mark.shared_hub

PARIS, MADRID = "FR-PARIS", "ES-MADRID"
_PEOPLE: dict[tuple, ConsoleClient] = {}  # one signed-in person per role, post and hub (an argon2 hash each costs)


def person(running_hub, role: str, post: str | None = None) -> ConsoleClient:
    key = (running_hub.url, role, post)
    if key not in _PEOPLE:
        username, password = make_user(running_hub.hub.sessions, role, post=post)
        _PEOPLE[key] = ConsoleClient(running_hub.url, username, password)
    return _PEOPLE[key]


def listed(page) -> list[str]:
    return re.findall(r'data-registration-id="([^"]+)"', page.text)


def audited(running_hub, action: str, subject: str) -> list[str]:
    with running_hub.hub.sessions() as session:
        return list(session.scalars(select(AuditEntry.detail).where(AuditEntry.action == action,
                                                                    AuditEntry.subject == subject)))


@pytest.fixture
def two_citizens(client):
    ours = register_citizen(client, post_code=PARIS, cnie="CQ123456", given_name_latin="Ilyas",
                            family_name_latin="Zerhouni", given_name_arabic="إلياس", family_name_arabic="الزرهوني",
                            address_lines="2 rue du Temple")
    theirs = register_citizen(client, post_code=MADRID, cnie="CQ654321", given_name_latin="Ilham",
                              family_name_latin="Zerhouni", given_name_arabic="إلهام", family_name_arabic="الزرهوني",
                              country="ES", city="Madrid")
    return ours["registration_id"], theirs["registration_id"]


def test_an_agent_finds_only_their_posts_citizens_and_reads_one_audited(running_hub, two_citizens):
    ours, theirs = two_citizens
    agent, supervisor = person(running_hub, "consular_agent", PARIS), person(running_hub, "supervisor")
    found = agent.get("/monitor/citizens", params={"q": "Zerhouni"})
    assert found.status_code == 200 and listed(found) == [ours]
    assert "Ilyas" not in found.text and "I. Zerhouni" in found.text and "CQ123456" not in found.text  # masked
    assert {ours, theirs} <= set(listed(supervisor.get("/monitor/citizens", params={"q": "Zerhouni"})))
    assert agent.get("/monitor/citizens", params={"q": "Zerhouni", "post": MADRID}).status_code == 403

    page = agent.get(f"/monitor/citizens/{ours}")
    assert page.status_code == 200
    for shown in ("Ilyas", "الزرهوني", "2 rue du Temple", "CQ123456", f"/monitor/citizens/{ours}/certificate.pdf?lang=fr",
                  f"/monitor/citizens/{ours}/certificate.pdf?lang=ar", 'action="/monitor/citizens/'):
        assert shown in page.text, shown
    assert audited(running_hub, "CITIZEN_VIEWED", ours) == ["console"]
    assert agent.get(f"/monitor/citizens/{theirs}").status_code == 403
    assert audited(running_hub, "CITIZEN_VIEWED", theirs) == []
    assert 'action="/monitor/citizens/' not in supervisor.get(f"/monitor/citizens/{ours}").text  # reads, acts not
    assert agent.get("/monitor/citizens/MRE-99999999999").status_code in (404, 422)


def test_the_forms_correct_record_a_death_and_transfer_each_audited_and_refusals_change_nothing(running_hub, client):
    rid = register_citizen(client, post_code=PARIS, cnie="CF123456", given_name_latin="Zineb",
                           address_lines="1 rue Ancienne")["registration_id"]
    agent = person(running_hub, "consular_agent", PARIS)
    base = f"/monitor/citizens/{rid}"

    saved = agent.post_form(f"{base}/contacts", {"country": "FR", "city": "Lyon", "address_lines": "9 quai Neuf",
                                                 "phone": "+33698765432", "email": ""})
    assert saved.status_code == 303 and saved.headers["location"] == f"{base}?done=contacts"
    page = agent.get(base)
    assert "9 quai Neuf" in page.text and 'data-field="city"' in page.text and "1 rue Ancienne" in page.text
    assert audited(running_hub, "CITIZEN_CORRECTED", rid) == ["city, address_lines, phone (console)"]

    before = agent.get(base).text
    assert agent.post(f"{base}/contacts", data={"city": "Paris", "address_lines": "x", "country": "FR"}
                      ).status_code == 403  # no CSRF token
    assert agent.post_form(f"{base}/civil", {"family_name_latin": "El Amrany", "reason": ""}).status_code == 400
    assert agent.post_form(f"{base}/contacts", {"country": "FR", "city": "Lyon", "address_lines": "1\n2\n3\n4"}
                           ).status_code in (400, 422)
    assert agent.post_form(f"{base}/transfer", {"post_code": "XX-NONE", "reason": "moved"}).status_code == 400
    assert agent.post_form(f"{base}/death", {"died_on": "2999-01-01", "reason": "x"}).status_code == 400
    assert re.sub(r'value="[^"]{20,}"', "", agent.get(base).text) == re.sub(r'value="[^"]{20,}"', "", before)

    civil = agent.post_form(f"{base}/civil", {"given_name_latin": "Zineb", "family_name_latin": "El Amrany",
                                              "given_name_arabic": "زينب", "family_name_arabic": "العمراني",
                                              "birth_date": "1988-04-12", "sex": "F", "cnie": "CF123456",
                                              "passport_number": "", "birth_place": "", "reason": "acte de naissance"})
    assert civil.status_code == 303, civil.text
    page = agent.get(base).text
    assert "El Amrany" in page and "acte de naissance" in page

    assert agent.post_form(f"{base}/death", {"died_on": "2026-11-02", "reason": "acte de décès"}).status_code == 303
    page = agent.get(base).text
    assert re.search(r'citizen-status state-bad"\s+title="DECEASED"', page) and 'id="transfer"' not in page

    other = register_citizen(client, post_code=PARIS, cnie="CF654321", given_name_latin="Anas")["registration_id"]
    moved = agent.post_form(f"/monitor/citizens/{other}/transfer", {"post_code": MADRID, "reason": "installé à Madrid"})
    assert moved.status_code == 303 and moved.headers["location"] == "/monitor/citizens?done=transfer"
    assert agent.get(f"/monitor/citizens/{other}").status_code == 403
    assert person(running_hub, "consular_agent", MADRID).get(f"/monitor/citizens/{other}").status_code == 200
    assert audited(running_hub, "CITIZEN_TRANSFERRED", other) == [f"from {PARIS} to {MADRID} (console)"]


def test_the_citizen_page_reads_well_in_french_and_in_arabic(running_hub, client, browser_context):
    rid = register_citizen(client, post_code=PARIS, cnie="CB123456", given_name_latin="Meryem",
                           family_name_latin="Bensouda", given_name_arabic="مريم", family_name_arabic="بنسودة",
                           address_lines="14 avenue de la République\nAppartement 3",
                           phone="+33611223344")["registration_id"]
    assert client.post(f"/api/v1/citizens/{rid}/corrections", json={"city": "Lyon", "address_lines": "3 rue Mercière"}
                       ).status_code == 200
    signed = person(running_hub, "consular_agent", PARIS)  # their session, in the browser too
    host = running_hub.url.split("//")[1].split(":")[0]
    for locale, lang in (("fr-FR", "fr"), ("ar", "ar")):
        context = browser_context.another(locale=locale, viewport=LAPTOP)
        context.add_cookies([{"name": "hub_session", "value": signed.cookies["hub_session"], "domain": host,
                              "path": "/", "httpOnly": True, "sameSite": "Strict"}])
        page = context.new_page()
        context.problems.watch(page)
        page.goto(f"{running_hub.url}/monitor/citizens?q=Bensouda")
        page.click(f'a[href="/monitor/citizens/{rid}"]')
        page.wait_for_url(f"**/monitor/citizens/{rid}")
        assert page.evaluate("() => document.documentElement.dir") == ("rtl" if lang == "ar" else "ltr")
        assert page.locator("table.history tbody tr").count() == 2
        assert page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
        title = page.locator("h1").inner_text()
        assert ("المواطن" if lang == "ar" else "Ressortissant") in title, title
        screenshot(page, f"citizen-{lang}")
