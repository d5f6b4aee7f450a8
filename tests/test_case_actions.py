"""The case list paged by cursor and filtered (service, status, post, citizen, opened between, overdue), and what
people do to a case: cancel, retry, reassign, match a judicial document to its addressee. Over HTTP against the
running hub; the retry and the match with the partners' sandboxes as real processes (NARSA, JUSTICE).

Each action is refused as a whole (4xx naming the field or the status, nothing changed), audited with its actor,
kept in the case's sealed history, and open to a consular agent only for their post's cases."""
from __future__ import annotations

import base64
import re

import httpx
import pytest
from sqlalchemy import select

from browser_support import screenshot
from conftest import wait_for
from console_support import ConsoleClient, make_user
from hub.store.models import AuditEntry
from registry import service
from registry.history import problems
from support import register_citizen

pytestmark = pytest.mark.shared_hub

PARIS, MADRID = "FR-PARIS", "ES-MADRID"
LICENCE = {"number": "12/345673", "categories": ["B"], "issue_date": "2010-05-03"}


def made(hub, service_name: str, status: str, *, post: str = PARIS, citizen=None) -> str:
    """A case in the registry's tables (no message: the list and the actions on it need none)."""
    with hub.sessions.begin() as session:
        who = service.get_citizen(session, registration_id=citizen) if citizen else None
        start = "RECEIVED" if service_name == "JUDICIAL_DOCUMENT" else "SUBMITTED"  # Justice opens those
        case = service.open_case(session, service=service_name, citizen=who, details={}, actor="test",
                                 post_code=post, status=start)
        if status != start:
            service.move_case(session, case=case, status=status, actor="test")
        return case.reference


_ACCOUNTS: dict[tuple, tuple[str, str]] = {}  # one console account per role and hub (an argon2 hash each costs)


def account(running_hub, role: str, post: str | None = None) -> tuple[str, str]:
    key = (running_hub.url, role, post)
    if key not in _ACCOUNTS:
        _ACCOUNTS[key] = make_user(running_hub.hub.sessions, role, post=post)
    return _ACCOUNTS[key]


def audited(hub, action: str, subject: str) -> list[AuditEntry]:
    with hub.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.subject == subject)))


@pytest.mark.both_databases  # the keyset conditions and the overdue rank are SQL of each database
def test_the_list_pages_by_cursor_and_filters_by_citizen(running_hub, client, client_as):
    hub = running_hub.hub
    citizen = register_citizen(client, post_code="FR-LYON", cnie="LY123456")["registration_id"]
    mine = [made(hub, "TRANSCRIPTION", "AWAITING_PARTNER", post="FR-LYON", citizen=citizen) for _ in range(5)]
    others = [made(hub, "TRANSCRIPTION", "AWAITING_PARTNER", post="FR-LYON") for _ in range(3)]

    seen, cursor, pages = [], None, 0
    while True:
        page = client.get("/api/v1/cases", params={"post_code": "FR-LYON", "limit": 3,
                                                   **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        seen += [c["reference"] for c in page.json()]
        pages += 1
        cursor = page.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "link" not in page.headers
            break
        assert page.headers["link"].endswith('; rel="next"') and f"cursor={cursor}" in page.headers["link"]
        made(hub, "TRANSCRIPTION", "AWAITING_PARTNER", post="FR-LYON") if pages == 1 else None  # newer: not in
    assert pages == 3 and seen == sorted(mine + others, reverse=True)  # each once, newest first

    by_citizen = client.get("/api/v1/cases", params={"registration_id": citizen}).json()
    assert sorted(c["reference"] for c in by_citizen) == sorted(mine)
    assert client.get("/api/v1/cases", params={"registration_id": "MRE-9999999"}).json() == []
    # the overdue sort pages too: the cursor keeps the sort it was made for
    first = client.get("/api/v1/cases", params={"sort": "overdue", "limit": 2, "post_code": "FR-LYON"})
    following = first.headers["X-Next-Cursor"]
    rest = client.get("/api/v1/cases", params={"sort": "overdue", "limit": 100, "post_code": "FR-LYON",
                                               "cursor": following}).json()
    assert len(first.json()) + len(rest) == 9
    assert not {c["reference"] for c in first.json()} & {c["reference"] for c in rest}
    wrong_sort = client.get("/api/v1/cases", params={"cursor": following})
    assert wrong_sort.status_code == 400 and wrong_sort.json()["detail"].startswith("cursor:")

    # a consular agent of another post: none of Lyon's, and the citizen filter does not reach them
    agent = client_as("consular_agent", post=PARIS)
    assert not {c["reference"] for c in agent.get("/api/v1/cases", params={"registration_id": citizen}).json()} \
        & set(mine)
    assert agent.get("/api/v1/cases", params={"post_code": "FR-LYON"}).status_code == 403


@pytest.mark.parametrize("params", [
    {"cursor": "!!"}, {"cursor": "A" * 200}, {"cursor": base64.urlsafe_b64encode(b"newest.1.0").decode()},
    {"cursor": base64.urlsafe_b64encode(b"newest.7.12").decode()},
    {"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, {"cursor": "bmV3ZXN0LjEuMQ", "offset": "5"},
    {"registration_id": "MRE-1\x00"}, {"registration_id": "X" * 300}, {"opened_from": "2026-02-30"},
])
def test_a_bad_page_or_filter_is_a_4xx_naming_it(client, params):
    response = client.get("/api/v1/cases", params=params)
    assert response.status_code in (400, 422), (params, response.text)
    named = next(iter(k for k in params if k != "offset"))
    assert named in response.text


def test_cancel_is_final_audited_and_refused_on_a_final_case(running_hub, client, client_as):
    hub = running_hub.hub
    waiting, done = made(hub, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER"), made(hub, "LICENCE_AUTHENTICATION",
                                                                                     "AWAITING_PARTNER")
    with hub.sessions.begin() as session:
        service.move_case(session, case=service.get_case(session, reference=done), status="AUTHENTIC", actor="NARSA")
    assert client.post(f"/api/v1/cases/{waiting}/cancel", json={}).status_code == 422  # the reason is required
    unfit = client.post(f"/api/v1/cases/{waiting}/cancel", json={"reason": "bad\u202etext"})
    assert unfit.status_code == 400 and "reason" in unfit.text, unfit.text
    agent = client_as("consular_agent", post=PARIS)
    cancelled = agent.post(f"/api/v1/cases/{waiting}/cancel", json={"reason": "the citizen withdrew the request"})
    assert cancelled.status_code == 200, cancelled.text
    case = cancelled.json()
    assert case["status"] == "CANCELLED" and case["history"][-1]["note"] == "cancelled: the citizen withdrew the request"
    assert case["history"][-1]["actor"].startswith("consular_agent")
    [entry] = audited(hub, "CASE_CANCELLED", waiting)
    assert "consular_agent, FR-PARIS" in entry.actor and entry.detail == "the citizen withdrew the request"

    for final in (waiting, done):  # a final case: 409 naming its status, nothing changed
        again = client.post(f"/api/v1/cases/{final}/cancel", json={"reason": "again"})
        assert again.status_code == 409 and "final" in again.json()["detail"], again.text
    assert client.get(f"/api/v1/cases/{done}").json()["status"] == "AUTHENTIC"
    # an answer the partner sends after the cancel finds the case final: nothing moves it
    with hub.sessions.begin() as session:
        assert not service.move_case(session, case=service.get_case(session, reference=waiting), status="AUTHENTIC",
                                     actor="NARSA")
    theirs = made(hub, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER", post=MADRID)
    assert agent.post(f"/api/v1/cases/{theirs}/cancel", json={"reason": "not ours"}).status_code == 403
    assert client.get(f"/api/v1/cases/{theirs}").json()["status"] == "AWAITING_PARTNER"
    assert client.post("/api/v1/cases/LIC-2026-999999/cancel", json={"reason": "none"}).status_code == 404


def test_reassign_hands_an_open_case_to_an_open_post(running_hub, client, client_as):
    hub = running_hub.hub
    reference = made(hub, "TRANSCRIPTION", "AWAITING_PARTNER")
    agent = client_as("consular_agent", post=PARIS)
    for body, status in (({"post_code": "XX-NOWHERE", "reason": "moved"}, 400),
                         ({"post_code": PARIS, "reason": "same"}, 400),
                         ({"post_code": "fr-lyon", "reason": "moved"}, 422), ({"post_code": MADRID}, 422)):
        refused = agent.post(f"/api/v1/cases/{reference}/reassign", json=body)
        assert refused.status_code == status, (body, refused.text)
        assert ("post_code" if "reason" in body else "reason") in refused.text
    with hub.sessions.begin() as session:  # a closed post takes nothing
        session.get(service.Post, "FR-LYON").active = False
    try:
        closed = agent.post(f"/api/v1/cases/{reference}/reassign", json={"post_code": "FR-LYON", "reason": "moved"})
        assert closed.status_code == 400 and "closed" in closed.json()["detail"]
    finally:
        with hub.sessions.begin() as session:
            session.get(service.Post, "FR-LYON").active = True
    moved = agent.post(f"/api/v1/cases/{reference}/reassign",
                       json={"post_code": MADRID, "reason": "the family lives in Madrid now"})
    assert moved.status_code == 200 and moved.json()["post_code"] == MADRID, moved.text
    assert moved.json()["status"] == "AWAITING_PARTNER"
    assert moved.json()["history"][-1]["note"] == "reassigned from FR-PARIS to ES-MADRID: the family lives in Madrid now"
    assert agent.get(f"/api/v1/cases/{reference}").status_code == 403  # Paris's agent handed it over
    assert client_as("consular_agent", post=MADRID).get(f"/api/v1/cases/{reference}").status_code == 200
    assert audited(hub, "CASE_REASSIGNED", reference)
    # another post's case: neither handed on nor retried by Paris's agent, nothing changed
    theirs, failed_there = made(hub, "TRANSCRIPTION", "AWAITING_PARTNER", post=MADRID), made(
        hub, "LICENCE_AUTHENTICATION", "FAILED", post=MADRID)
    assert agent.post(f"/api/v1/cases/{theirs}/reassign",
                      json={"post_code": PARIS, "reason": "taking it"}).status_code == 403
    assert agent.post(f"/api/v1/cases/{failed_there}/retry").status_code == 403
    assert client.get(f"/api/v1/cases/{theirs}").json()["post_code"] == MADRID
    assert client.get(f"/api/v1/cases/{failed_there}").json()["status"] == "FAILED"


def test_retry_sends_a_failed_case_again_under_a_new_message_id(running_hub, client, start_sandbox):
    citizen = register_citizen(client, cnie="RT123456")["registration_id"]
    failing = client.post("/api/v1/cases/licence-authentication", json={"registration_id": citizen,
                                                                        "licence": LICENCE}).json()["reference"]
    # NARSA is down: the request is dead-lettered after the retry policy's attempts, the case FAILED
    wait_for(lambda: client.get(f"/api/v1/cases/{failing}").json()["status"] == "FAILED", 40, what="the failure")
    start_sandbox("narsa", running_hub.url)
    retried = client.post(f"/api/v1/cases/{failing}/retry")
    assert retried.status_code == 200, retried.text
    case = wait_for(lambda: (c := client.get(f"/api/v1/cases/{failing}").json())["status"] == "AUTHENTIC" and c, 30,
                    what="NARSA's answer to the retry")
    assert case["request_message_id"] == f"REGISTRY-{failing}-R2"
    assert [h["status"] for h in case["history"]] == ["SUBMITTED", "AWAITING_PARTNER", "FAILED", "SUBMITTED",
                                                      "AWAITING_PARTNER", "AUTHENTIC"]
    assert case["history"][3]["note"] == "retried: attempt 2"
    assert [d["kind"] for d in case["documents"]] == ["NARSA_ATTESTATION"]
    assert client.get(f"/api/v1/messages/REGISTRY-{failing}-R2").json()["state"] == "DELIVERED"
    assert client.get(f"/api/v1/messages/REGISTRY-{failing}").json()["state"] == "DEAD"  # the first try, as it was
    assert audited(running_hub.hub, "CASE_RETRIED", failing)[0].detail == "attempt 2"
    again = client.post(f"/api/v1/cases/{failing}/retry")  # not FAILED any more
    assert again.status_code == 409 and "AUTHENTIC" in again.json()["detail"]
    # a judicial document is Justice's to send again: its FAILED case is not retried by the post
    judicial = made(running_hub.hub, "JUDICIAL_DOCUMENT", "FAILED", post=PARIS)
    assert client.post(f"/api/v1/cases/{judicial}/retry").status_code == 409


def test_an_unknown_addressee_is_matched_by_hand_and_justice_gets_the_real_outcome(running_hub, client, client_as,
                                                                                   start_sandbox):
    justice = start_sandbox("justice", running_hub.url)
    [request] = httpx.post(f"{justice.url}/_sandbox/send-requests", timeout=10, json={
        "addressees": [{"cnie": "ZM998877", "name": "Zineb Mansouri"}]}).json()["requests"]

    def unknown():
        found = client.get("/api/v1/cases", params={"service": "JUDICIAL_DOCUMENT",
                                                    "status": "ADDRESSEE_UNKNOWN"}).json()
        return found and found[0]
    reference = wait_for(unknown, 30, what="the ADDRESSEE_UNKNOWN case")["reference"]
    sent_requests = lambda: {r["message_id"]: r for r in httpx.get(f"{justice.url}/_sandbox/requests",  # noqa: E731
                                                                   timeout=5).json()}
    wait_for(lambda: sent_requests()[request["message_id"]]["outcome"] == "DESTINATAIRE_INCONNU", 30,
             what="the first certificate at JUSTICE")

    addressee = register_citizen(client, post_code=PARIS, cnie="ZM998877", given_name_latin="Zineb",
                                 family_name_latin="Mansouri")["registration_id"]
    madrid = register_citizen(client, post_code=MADRID, cnie="ZM998866", country="ES", city="Madrid")
    agent = client_as("consular_agent", post=PARIS)
    # refused, nothing changed: another post's citizen, an unknown one, a case that is no unmatched document
    assert agent.post(f"/api/v1/cases/{reference}/match",
                      json={"registration_id": madrid["registration_id"]}).status_code == 403
    assert agent.post(f"/api/v1/cases/{reference}/match", json={"registration_id": "MRE-9999999"}).status_code == 400
    # an agent does not take the court's document for a citizen of theirs who is someone else (an administrator may)
    stranger = register_citizen(client, post_code=PARIS, cnie="ZM998855")["registration_id"]
    taken = agent.post(f"/api/v1/cases/{reference}/match", json={"registration_id": stranger})
    assert taken.status_code == 403 and "addressee's name" in taken.json()["detail"], taken.text
    other = made(running_hub.hub, "TRANSCRIPTION", "AWAITING_PARTNER")
    assert agent.post(f"/api/v1/cases/{other}/match", json={"registration_id": addressee}).status_code == 409
    elsewhere = made(running_hub.hub, "TRANSCRIPTION", "AWAITING_PARTNER", post=MADRID)  # nothing said of it
    refused = agent.post(f"/api/v1/cases/{elsewhere}/match", json={"registration_id": addressee})
    assert refused.status_code == 403 and "TRANSCRIPTION" not in refused.text
    assert client.get(f"/api/v1/cases/{reference}").json()["status"] == "ADDRESSEE_UNKNOWN"

    matched = agent.post(f"/api/v1/cases/{reference}/match",
                         json={"registration_id": addressee, "note": "she brought the summons to the post"})
    assert matched.status_code == 200, matched.text
    case = matched.json()
    assert (case["status"], case["post_code"], case["registration_id"]) == ("AT_POST", PARIS, addressee)
    assert agent.post(f"/api/v1/cases/{reference}/match", json={"registration_id": addressee}).status_code == 409
    [entry] = audited(running_hub.hub, "ADDRESSEE_MATCHED", reference)
    assert "FR-PARIS" in entry.actor and addressee in entry.detail

    served = agent.post(f"/api/v1/cases/{reference}/outcome", json={"outcome": "SERVED"})
    assert served.json()["status"] == "SERVED", served.text
    second = f"REGISTRY-{reference}-CERT-R2"
    wait_for(lambda: client.get(f"/api/v1/messages/{second}").json().get("state") == "DELIVERED", 30,
             what="the second certificate")
    wait_for(lambda: sent_requests()[request["message_id"]]["outcome"] == "REMIS", 10, what="JUSTICE's record")
    history = [h["status"] for h in client.get(f"/api/v1/cases/{reference}").json()["history"]]
    assert history == ["RECEIVED", "CERTIFYING", "ADDRESSEE_UNKNOWN", "AT_POST", "CERTIFYING", "SERVED"]
    with running_hub.hub.sessions() as session:  # what `hub evidence verify` checks of the case history
        assert list(problems(session)) == []


def test_the_case_page_buttons_act_behind_a_confirmation_and_the_csrf_token(running_hub, client):
    hub = running_hub.hub
    waiting = made(hub, "TRANSCRIPTION", "AWAITING_PARTNER")
    failed = made(hub, "CIVIL_STATUS_EXTRACT", "FAILED")
    theirs = made(hub, "TRANSCRIPTION", "AWAITING_PARTNER", post=MADRID)
    with ConsoleClient(running_hub.url, *account(running_hub, "consular_agent", PARIS)) as agent:
        page = agent.get(f"/monitor/cases/{waiting}").text
        forms = dict(re.findall(r'<form method="post" action="([^"]+)" class="card" data-action="(\w+)"', page))
        assert set(forms.values()) == {"cancel", "reassign"}  # open: no retry, no match
        assert all("data-confirm=" in f for f in re.findall(r'<form method="post" action="/monitor/cases/[^>]+>', page))
        assert 'name="csrf_token"' in page and 'value="ES-MADRID"' in page and 'value="FR-PARIS"' not in page
        assert "document.pdf" not in page  # nothing printable yet
        assert set(re.findall(r'data-action="(\w+)"', agent.get(f"/monitor/cases/{failed}").text)) == \
            {"cancel", "retry"}

        # without the session's token, or from another origin: refused, nothing changed
        assert agent.post(f"/monitor/cases/{waiting}/cancel", data={"reason": "no token"}).status_code == 403
        assert agent.post_form(f"/monitor/cases/{waiting}/cancel", {"reason": "elsewhere"},
                               headers={"Origin": "https://evil.example"}).status_code == 403
        assert agent.post_form(f"/monitor/cases/{waiting}/cancel", {"reason": "x\u202ey"}).status_code == 400
        assert agent.post_form(f"/monitor/cases/{theirs}/cancel", {"reason": "not ours"}).status_code == 403
        assert client.get(f"/api/v1/cases/{waiting}").json()["status"] == "AWAITING_PARTNER"

        done = agent.post_form(f"/monitor/cases/{waiting}/cancel", {"reason": "asked twice by mistake"})
        assert done.status_code == 303 and done.headers["location"] == f"/monitor/cases/{waiting}?done=cancelled"
        after = agent.get(done.headers["location"]).text
        assert "Le dossier a été annulé." in after and 'data-action="cancel"' not in after  # French by default
        assert client.get(f"/api/v1/cases/{waiting}").json()["status"] == "CANCELLED"
        assert agent.post_form(f"/monitor/cases/{waiting}/cancel", {"reason": "again"}).status_code == 409

        agent.cookies.set("hub_lang", "ar")  # the buttons read in Arabic, right to left
        arabic = agent.get(f"/monitor/cases/{failed}").text
        assert 'dir="rtl"' in arabic and "إعادة محاولة الملف" in arabic and 'data-action="retry"' in arabic
    with ConsoleClient(running_hub.url, *account(running_hub, "supervisor")) as supervisor:  # reads, acts not
        page = supervisor.get(f"/monitor/cases/{failed}").text
        assert "data-action=" not in page
        assert supervisor.post_form(f"/monitor/cases/{failed}/retry").status_code == 403


def test_the_buttons_in_a_browser_ask_first_and_read_right_to_left_in_arabic(running_hub, client, browser_context):
    """Headless Chromium, the console's strict CSP: the retry button asks before it acts (a refused confirmation
    changes nothing), the page fits a laptop's screen in French and Arabic; screenshots for a person to look at."""
    hub = running_hub.hub
    failed = made(hub, "CIVIL_STATUS_EXTRACT", "FAILED")
    username, password = account(running_hub, "consular_agent", PARIS)
    with httpx.Client(base_url=running_hub.url) as http:
        from console_support import sign_in
        assert sign_in(http, username, password).status_code == 303
        cookie = http.cookies["hub_session"]
    host = running_hub.url.split("//")[1].split(":")[0]
    for locale, lang in (("fr-FR", "fr"), ("ar", "ar")):
        context = browser_context.another(locale=locale)
        context.add_cookies([{"name": "hub_session", "value": cookie, "domain": host, "path": "/",
                              "httpOnly": True, "sameSite": "Strict"}])
        page = context.new_page()
        context.problems.watch(page)
        page.goto(f"{running_hub.url}/monitor/cases/{failed}")
        assert page.evaluate("() => document.documentElement.dir") == ("rtl" if lang == "ar" else "ltr")
        assert page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                             " - document.documentElement.clientWidth") <= 0
        screenshot(page, f"case-actions-{lang}")
    page.once("dialog", lambda dialog: dialog.dismiss())  # the Arabic page: "no" to the confirmation
    page.click('form[data-action="retry"] button')
    page.wait_for_timeout(300)
    assert client.get(f"/api/v1/cases/{failed}").json()["status"] == "FAILED"
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click('form[data-action="retry"] button')
    assert "?done=retried" in page.url and page.locator("p.notice.good").is_visible()
    assert client.get(f"/api/v1/cases/{failed}").json()["history"][-2]["note"] == "retried: attempt 2"


def test_a_judicial_document_or_a_batched_life_certificate_is_not_the_posts_to_cancel(running_hub, client):
    hub = running_hub.hub
    for service_name, status in (("JUDICIAL_DOCUMENT", "AT_POST"), ("LIFE_CERTIFICATE", "BATCHED")):
        with hub.sessions.begin() as session:
            first = "RECEIVED" if service_name == "JUDICIAL_DOCUMENT" else "ISSUED"
            case = service.open_case(session, service=service_name, citizen=None, details={}, actor="test",
                                     post_code=PARIS, status=first)
            service.move_case(session, case=case, status=status, actor="test")
            reference = case.reference
        refused = client.post(f"/api/v1/cases/{reference}/cancel", json={"reason": "not wanted"})
        assert refused.status_code == 409 and "not cancelled by a post" in refused.json()["detail"], refused.text
        assert client.get(f"/api/v1/cases/{reference}").json()["status"] == status


def test_cancelling_a_new_registration_frees_its_cnie(client):
    """A registration cancelled before DGSN answered leaves no PENDING record holding the CNIE: the person is
    registered anew (the shared hub's DGSN is not running, so the first case waits)."""
    person = {"post_code": PARIS, "given_name_latin": "Leila", "family_name_latin": "Sqalli",
              "given_name_arabic": "ليلى", "family_name_arabic": "السقلي", "birth_date": "1991-03-04", "sex": "F",
              "cnie": "QA700321", "country": "FR", "city": "Paris", "address_lines": "2 rue Royale"}
    first = client.post("/api/v1/citizens", json=person)
    assert first.status_code == 202, first.text
    held = client.post("/api/v1/citizens", json=person)
    assert held.status_code == 409 and first.json()["registration_id"] in held.json()["detail"]

    reference = first.json()["registration_case"]["reference"]
    cancelled = client.post(f"/api/v1/cases/{reference}/cancel", json={"reason": "typed at the wrong post"})
    assert cancelled.status_code == 200, cancelled.text
    withdrawn = client.get(f"/api/v1/citizens/{first.json()['registration_id']}").json()
    assert withdrawn["status"] == "REJECTED"
    history = client.get(f"/api/v1/citizens/{first.json()['registration_id']}/history").json()["changes"]
    assert any(c["new"] == "REJECTED" and "cancelled: typed at the wrong post" in c["reason"] for c in history)
    again = client.post("/api/v1/citizens", json=person)
    assert again.status_code == 202, again.text
