"""The cases in the console (registry/console.py): the list (filters, overdue first, paging), the case page (one
conversation across partners, the status history with its seal, the documents, each read audited), the
deadlines page, the service tiles and overdue items of the overview and alerts, and who may see what. Over
HTTP against a running hub, as a person signed in."""
from __future__ import annotations

import datetime as dt
import html
import re

import httpx
import pytest
from sqlalchemy import select, update

from conftest import bearer
from console_support import ConsoleClient, make_user
from hub.access.tokens import Identity
from hub.store.db import utcnow
from hub.store.models import AuditEntry
from registry import service
from registry.models import Case, CaseDocument, CaseEvent
from support import register_citizen

pytestmark = pytest.mark.shared_hub

PARIS, MADRID = "FR-PARIS", "ES-MADRID"
LICENCE = {"number": "12/345673", "categories": ["B"], "issue_date": "2010-05-03"}


def opened(hub, service_name: str, status: str, *, post: str = PARIS, days_ago: float = 0, note: str = "",
           details: dict | None = None) -> str:
    """A case made in the registry's tables, opened `days_ago` (no message: the list and tiles need none)."""
    with hub.sessions.begin() as session:
        case = service.open_case(session, service=service_name, citizen=None, details=details or {}, actor="test",
                                 post_code=post)
        for step in {"LICENCE_AUTHENTICATION": ["AWAITING_PARTNER", "AUTHENTIC"],
                     "CIVIL_STATUS_EXTRACT": ["AWAITING_PARTNER", "ISSUED"]}.get(service_name, []):
            if step == status or case.status == status:
                break
            service.move_case(session, case=case, status=step, actor="test", note=note)
        if case.status != status:
            service.move_case(session, case=case, status=status, actor="test", note=note)
        moment = utcnow() - dt.timedelta(days=days_ago)
        case.created_at = moment
        session.execute(update(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.status == "SUBMITTED")
                        .values(at=moment))
        return case.reference


_PEOPLE: dict[tuple, ConsoleClient] = {}  # one signed-in person per role and hub (an argon2 hash each costs)


class _Kept:
    """A module's signed-in person, reused by the tests (`with` does not close it)."""

    def __init__(self, client: ConsoleClient):
        self.client = client

    def __enter__(self) -> ConsoleClient:
        self.client.cookies.delete("hub_lang")
        return self.client

    def __exit__(self, *exc) -> None:
        return None


def person(running_hub, role: str, post: str | None = None) -> _Kept:
    key = (running_hub.url, role, post)
    if key not in _PEOPLE:
        username, password = make_user(running_hub.hub.sessions, role, post=post)
        _PEOPLE[key] = ConsoleClient(running_hub.url, username, password)
    return _Kept(_PEOPLE[key])


def references(page: httpx.Response) -> list[str]:
    return re.findall(r'data-reference="([^"]+)"', page.text)


def test_the_list_puts_overdue_cases_first_filters_and_pages(running_hub, client):
    hub = running_hub.hub
    late = opened(hub, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER", days_ago=3)  # 2 days allowed
    fresh = opened(hub, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER")
    done = opened(hub, "LICENCE_AUTHENTICATION", "AUTHENTIC", days_ago=5)
    madrid = opened(hub, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER", post=MADRID, days_ago=4)
    with person(running_hub, "supervisor") as supervisor:
        page = supervisor.get("/monitor/cases", params={"service": "LICENCE_AUTHENTICATION"})
        assert page.status_code == 200, page.text
        listed = references(page)
        overdue_rows = re.findall(r'class="case-row overdue" data-reference="([^"]+)"', page.text)
        assert {late, madrid} <= set(overdue_rows) and fresh not in overdue_rows and done not in overdue_rows
        assert listed.index(late) < listed.index(fresh) and listed.index(madrid) < listed.index(done)
        assert listed[:len(overdue_rows)] == overdue_rows  # every overdue case before any other
        only_late = references(supervisor.get("/monitor/cases", params={"service": "LICENCE_AUTHENTICATION",
                                                                         "overdue": "1", "post": MADRID}))
        assert only_late == [madrid]
        by_status = references(supervisor.get("/monitor/cases", params={"status": "AUTHENTIC"}))
        assert done in by_status and late not in by_status
        today = dt.date.today().isoformat()
        recent = references(supervisor.get("/monitor/cases", params={"service": "LICENCE_AUTHENTICATION",
                                                                      "opened_from": today}))
        assert fresh in recent and late not in recent
        # the same search as JSON (bearer token): the API's list, with the deadline of each case
        api = client.get("/api/v1/cases", params={"service": "LICENCE_AUTHENTICATION", "sort": "overdue",
                                                  "limit": 1000}).json()
        assert [c["reference"] for c in api][:len(overdue_rows)] == overdue_rows
        assert {c["reference"]: c["overdue"] for c in api}[late] is True
        assert client.get("/api/v1/cases", params={"overdue": "true", "post_code": MADRID}).json()[0]["reference"] == madrid
        # paging: 50 a page, the next page picks up where the first ended
        for _ in range(51):
            opened(hub, "TRANSCRIPTION", "AWAITING_PARTNER", post="FR-LYON")
        first = supervisor.get("/monitor/cases", params={"post": "FR-LYON"})
        assert len(references(first)) == 50 and 'rel="first"' not in first.text
        [following] = re.findall(r'rel="next" href="([^"]+)"', first.text)
        assert "post=FR-LYON" in following and "cursor=" in following
        second = supervisor.get(html.unescape(following))
        assert len(references(second)) == 1 and not set(references(second)) & set(references(first))
        assert 'rel="next"' not in second.text and 'rel="first"' in second.text


def test_a_consular_agent_sees_only_their_posts_cases(running_hub):
    hub = running_hub.hub
    ours = opened(hub, "CIVIL_STATUS_EXTRACT", "AWAITING_PARTNER", days_ago=1)  # 1 h allowed: overdue
    theirs = opened(hub, "CIVIL_STATUS_EXTRACT", "AWAITING_PARTNER", post=MADRID, days_ago=1)
    with person(running_hub, "consular_agent", post=PARIS) as agent:
        listed = agent.get("/monitor/cases")
        assert ours in references(listed) and theirs not in references(listed)
        assert all(post == PARIS for post in re.findall(r"<td><bdi dir=\"ltr\">([A-Z]{2}-[A-Z]+)</bdi></td>",
                                                         listed.text))
        assert agent.get("/monitor/cases", params={"post": MADRID}).status_code == 403
        assert agent.get(f"/monitor/cases/{theirs}").status_code == 403
        assert agent.get(f"/monitor/cases/{ours}").status_code == 200
        assert agent.get("/monitor/cases/deadlines").status_code == 200
    registry = running_hub.apps["registry"]
    tiles = {t["service"]: t for t in registry.console().tiles(hub, Identity("x", "agent", "consular_agent", PARIS))}
    everyone = {t["service"]: t for t in registry.console().tiles(hub, Identity("x", "boss", "supervisor"))}
    assert tiles["CIVIL_STATUS_EXTRACT"]["overdue"] >= 1
    assert everyone["CIVIL_STATUS_EXTRACT"]["overdue"] >= tiles["CIVIL_STATUS_EXTRACT"]["overdue"] + 1
    assert registry.console().tiles(hub, Identity("x", "staff", "integration")) == []
    overdue = {item["reference"]: item for item in registry.console().overdue(hub)}
    assert {ours, theirs} <= set(overdue)
    assert overdue[ours]["url"] == f"/monitor/cases/{ours}" and overdue[ours]["deadline_at"] < utcnow()


def test_integration_staff_have_no_cases(running_hub):
    case = opened(running_hub.hub, "TRANSCRIPTION", "AWAITING_PARTNER")
    with person(running_hub, "integration") as staff:
        assert 'href="/monitor/cases"' not in staff.get("/monitor/").text
        for path in ("/monitor/cases", f"/monitor/cases/{case}", "/monitor/cases/deadlines"):
            assert staff.get(path).status_code == 403, path
    with httpx.Client(base_url=running_hub.url) as nobody:  # not signed in: to the sign-in page
        answer = nobody.get(f"/monitor/cases/{case}")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/monitor/login")


def test_the_case_page_shows_one_conversation_history_and_documents_each_read_audited(running_hub, client):
    hub = running_hub.hub
    citizen = register_citizen(client, post_code=PARIS, cnie="BK765432")
    answer = client.post("/api/v1/cases/licence-authentication",
                         json={"registration_id": citizen["registration_id"], "licence": LICENCE})
    assert answer.status_code == 201, answer.text
    reference = answer.json()["reference"]
    with hub.sessions.begin() as session:  # a document as a partner's answer leaves one
        case = session.scalars(select(Case).where(Case.reference == reference)).one()
        service.attach_document(session, case=case, kind="NARSA_ATTESTATION",
                                content=b"<a:Attestation xmlns:a='urn:x'><a:N>12/345673</a:N></a:Attestation>",
                                source_message_id="NARSA-R-1")
    with person(running_hub, "supervisor") as supervisor:
        page = supervisor.get(f"/monitor/cases/{reference}")
        assert page.status_code == 200, page.text
        text = page.text
        assert f"REGISTRY-{reference}" in text and 'data-partner="NARSA"' in text  # the request's leg to NARSA
        assert 'data-kind="ACCEPTED"' in text and 'data-kind="QUEUED"' in text  # its timeline's events
        assert 'data-status="SUBMITTED"' in text and 'data-status="AWAITING_PARTNER"' in text
        assert ("Scellé" in text) or ("Pas encore scellé" in text)
        link = re.search(rf'href="(/monitor/cases/{reference}/documents/\d+)"', text).group(1)
        document = supervisor.get(link)
        assert document.status_code == 200 and "12/345673" in document.text
    with person(running_hub, "consular_agent", post=PARIS) as agent:  # no messages:read: messages, not events
        text = agent.get(f"/monitor/cases/{reference}").text
        assert f"REGISTRY-{reference}" in text and 'data-kind="QUEUED"' not in text and "/monitor/messages/" not in text
    with hub.sessions() as session:
        actions = set(session.scalars(select(AuditEntry.action).where(AuditEntry.subject == reference)))
    assert {"CASE_VIEWED", "DOCUMENT_VIEWED"} <= actions
    # the same conversation as JSON
    talk = client.get(f"/api/v1/cases/{reference}/conversation").json()
    assert talk["legs"][0]["partner"] == "NARSA" and talk["legs"][0]["sent"][0]["message_id"] == f"REGISTRY-{reference}"
    assert [e["at"] for e in talk["entries"]] == sorted(e["at"] for e in talk["entries"])


def test_a_repatriation_shows_its_three_clearances_side_by_side_and_withholds_health_data(running_hub, client):
    reference = opened(running_hub.hub, "REPATRIATION", "AWAITING_CLEARANCES", details={"deadline_at": (
        utcnow() + dt.timedelta(hours=6)).isoformat()})
    with running_hub.hub.sessions.begin() as session:
        case = session.scalars(select(Case).where(Case.reference == reference)).one()
        case.outcome = {"clearances": {"SANTE": {"decision": "REFUSED", "reason": "MALADIE_CONTAGIEUSE",
                                                 "reason_text": "x", "partner_reference": "SANTE-9"}}}
        service.attach_document(session, case=case, kind="CLEARANCE_SANTE", content=b"<x/>", source_message_id="S-1")
    with person(running_hub, "supervisor") as supervisor:
        page = supervisor.get(f"/monitor/cases/{reference}").text
        authorities = re.findall(r'class="card clearance" data-authority="([A-Z_]+)"', page)
        assert authorities == ["SANTE", "ETAT_CIVIL", "DGSN"]
        assert "MALADIE_CONTAGIEUSE" not in page and "SANTE-9" in page  # the decision, not its health reason
        assert "/documents/" not in page  # the health clearance's content is withheld from a supervisor
        with running_hub.hub.sessions() as session:
            document = session.scalars(select(CaseDocument.id).join(Case).where(Case.reference == reference)).one()
        assert supervisor.get(f"/monitor/cases/{reference}/documents/{document}").status_code == 403
    with person(running_hub, "administrator") as admin:
        assert "MALADIE_CONTAGIEUSE" in admin.get(f"/monitor/cases/{reference}").text


def test_hostile_requests_are_clear_refusals(running_hub):
    reference = opened(running_hub.hub, "TRANSCRIPTION", "AWAITING_PARTNER")
    with person(running_hub, "supervisor") as supervisor:
        for params in ({"service": "A\x00B"}, {"status": "X" * 500}, {"post": "FR-PARIS\x00"}, {"cursor": "!!"},
                       {"cursor": "bmV3ZXN0LjEuMQ"}, {"cursor": "A" * 500}, {"opened_from": "2026-13-45"},
                       {"citizen": "MRE-1\x00"}):
            assert supervisor.get("/monitor/cases", params=params).status_code in (400, 422), params
        for path in (f"/monitor/cases/{reference}%00", "/monitor/cases/LIC-2026-999999", "/monitor/cases/..%2F..",
                     f"/monitor/cases/{reference}/documents/999999"):
            assert supervisor.get(path).status_code in (400, 404), path
        assert supervisor.get(f"/monitor/cases/{reference}/documents/99999999999999999999").status_code == 422
        assert supervisor.get(f"/monitor/cases/{'X' * 5000}").status_code in (404, 422)
        # the calendar's edges: from its first day, to its last, in a zone east of UTC: every case, no error
        supervisor.cookies.set("hub_tz", "Asia/Tokyo")
        edges = supervisor.get("/monitor/cases", params={"opened_from": "0001-01-01", "opened_to": "9999-12-31"})
        assert edges.status_code == 200 and reference in edges.text
    with httpx.Client(base_url=running_hub.url, headers=bearer(running_hub.mint_token("supervisor"))) as api:
        assert api.get("/api/v1/cases", params={"opened_to": "9999-12-31"}).status_code == 200


def test_the_pages_speak_arabic_right_to_left_and_the_deadlines_page_shows_percentiles(running_hub):
    hub = running_hub.hub
    opened(hub, "CONSULAR_REGISTRATION", "IDENTITY_CHECK", days_ago=2)
    with person(running_hub, "administrator") as admin:
        admin.cookies.set("hub_lang", "ar")
        page = admin.get("/monitor/cases")
        assert '<html lang="ar" dir="rtl">' in page.text and "الملفات" in page.text
        deadlines = admin.get("/monitor/cases/deadlines")
        assert deadlines.status_code == 200
        assert 'data-service="REPATRIATION" data-partner="SANTE"' in deadlines.text
        admin.cookies.set("hub_lang", "en")
        assert "Answer deadlines" in admin.get("/monitor/cases/deadlines").text
