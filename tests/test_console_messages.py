"""Messages in the console, over HTTP against a running hub with real traffic: licence requests submitted
through the API, delivered to a stand-in NARSA that answers with its signed verdict (taken in as NARSA's own
message) or refuses (503, then 400: the delivery dead-lettered after two attempts).

What a person relies on: each filter and the paging return the right messages, the CSV holds what the search
shows, a supervisor never sees a payload, an integration user's view of one is in the audit log under their
name, the message page shows every attempt and the evidence of the case downloads; hostile input is a clear 4xx
that changes nothing, and a resend needs the session's CSRF token. The module's tests share one hub and its
traffic (built once)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from zoneinfo import ZoneInfo

import pytest
from lxml import etree
from sqlalchemy import select

from conftest import wait_for
from console_support import ConsoleClient, make_user
from hub.monitor import messages as console_messages
from hub.monitor.messages import csv_cell, local_moment
from hub.monitor.web import Viewer
from hub.store.models import AuditEntry
from support import StandInPartner, licence_request, signer_for
from hub.settings import PROJECT_ROOT

pytestmark = pytest.mark.shared_hub

XML = {"Content-Type": "application/xml"}
VERDICT = PROJECT_ROOT / "mappings/narsa/cases/licence-result.from-narsa/discrepancy.input.xml"  # on LIC-2026-000013
DELIVERED, REFUSED = 6, 2  # cases NARSA answers with its verdict; cases it answers 503, then 400 (dead)
_traffic: dict[str, dict] = {}
LINK = re.compile(r'href="/monitor/messages/([A-Z_]+)/([A-Za-z0-9._:-]+)"')


def verdict(pki_dir, case: str) -> bytes:
    """NARSA's signed verdict on the licence request of `case` (its id NARSA-R-<case number>)."""
    text = VERDICT.read_text(encoding="utf-8").replace("NARSA-R-000013", f"NARSA-R-{case[-6:]}")
    root = signer_for(pki_dir, "NARSA").sign(etree.fromstring(text.replace("LIC-2026-000013", case).encode()))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class Narsa:
    """NARSA on its loopback port: the verdict for a case in `delivered`; for one in `refused` 503 first, then 400
    (permanent), until `fixed` names it. One per port (the module's hubs on SQLite and PostgreSQL share it)."""

    def __init__(self, port: int, pki_dir):
        self.delivered: set[str] = set()
        self.refused: set[str] = set()
        self.fixed: set[str] = set()
        self.seen: dict[str, int] = {}
        self.pki_dir = pki_dir
        self.partner = StandInPartner(port, self.answer)

    def answer(self, body: bytes) -> tuple[int, bytes]:
        case = next((c for c in self.delivered | self.refused if c.encode() in body), None)
        if case is None or (case in self.refused and case not in self.fixed):
            self.seen[case] = self.seen.get(case, 0) + 1
            return (503, b"busy") if self.seen[case] == 1 else (400, b"<Error>refused</Error>")
        return 200, verdict(self.pki_dir, case)


_narsas: dict[int, Narsa] = {}


@pytest.fixture
def traffic(running_hub, client, pki_dir, partner_ports):
    """The hub's messages, submitted once: {"narsa", "start", "end", "delivered": [case, ...],
    "refused": [case, ...], "requests": [message id, ...] oldest first (the delivered cases' first)}."""
    if running_hub.url not in _traffic:
        port = partner_ports["NARSA"]
        narsa = _narsas[port] = _narsas.get(port) or Narsa(port, pki_dir)
        series = len(_traffic)  # each database kind's hub its own cases
        cases = [f"LIC-2026-7{series}00{n:02d}" for n in range(1, DELIVERED + REFUSED + 1)]
        delivered, refused = cases[:DELIVERED], cases[DELIVERED:]
        narsa.delivered.update(delivered)
        narsa.refused.update(refused)
        start = dt.datetime.now(dt.timezone.utc)
        for case in cases:
            answer = client.post("/api/v1/messages", content=licence_request(pki_dir, reference=case), headers=XML)
            assert answer.status_code == 202, answer.text

        def settled():
            states = {c: client.get(f"/api/v1/messages/REGISTRY-{c}").json()["state"] for c in cases}
            answers = client.get("/api/v1/messages", params={"sender": "NARSA", "received_from": start.isoformat()})
            return (all(states[c] == "DELIVERED" for c in delivered) and all(states[c] == "DEAD" for c in refused)
                    and answers.json()["total"] == DELIVERED)
        wait_for(settled, 30, interval=0.2, what="the hub's traffic delivered or dead")
        _traffic[running_hub.url] = {"narsa": narsa, "start": start, "end": dt.datetime.now(dt.timezone.utc),
                                     "delivered": delivered, "refused": refused,
                                     "requests": [f"REGISTRY-{c}" for c in cases]}
    return _traffic[running_hub.url]


_people: dict[tuple[str, str], ConsoleClient] = {}  # (hub URL, role) -> a signed-in person, shared by the tests


@pytest.fixture(scope="module", autouse=True)
def _sign_out_at_the_end():
    yield
    for person in _people.values():
        person.close()
    _people.clear()


@pytest.fixture
def as_role(running_hub):
    """as_role(role) -> a ConsoleClient signed in as the module's account of that role (`.username`)."""
    def person(role: str) -> ConsoleClient:
        if (running_hub.url, role) not in _people:
            username, password = make_user(running_hub.hub.sessions, role,
                                           post="FR-PARIS" if role == "consular_agent" else None)
            _people[running_hub.url, role] = ConsoleClient(running_hub.url, username, password)
            _people[running_hub.url, role].username = username
        return _people[running_hub.url, role]
    return person


def listed(page) -> list[str]:
    """Message ids of a search page's table, in order."""
    assert page.status_code == 200, page.text[:500]
    return [message_id for _sender, message_id in LINK.findall(page.text)]


def audit(hub, action: str, subject: str) -> list[AuditEntry]:
    with hub.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.subject == subject)))


def audit_by(hub, username: str) -> list[int]:
    with hub.sessions() as session:
        return list(session.scalars(select(AuditEntry.id).where(AuditEntry.actor.contains(f"user {username} "))))


def local(moment: dt.datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


def test_each_filter_and_the_paging_return_the_right_messages(traffic, as_role, client):
    browser = as_role("supervisor")
    requests = traffic["requests"]
    newest_first = list(reversed(requests))
    answers = [f"NARSA-R-{c[-6:]}" for c in traffic["delivered"]]
    # the viewer's zone (a cookie the page sets from the browser) is the dates' zone: Tokyo is UTC+9
    browser.cookies.set("hub_tz", "Asia/Tokyo")
    window = {"received_from": local(traffic["start"] - dt.timedelta(minutes=1), "Asia/Tokyo"),
              "received_to": local(traffic["end"], "Asia/Tokyo")}
    search = lambda **params: listed(browser.get("/monitor/messages", params={**window, **params}))  # noqa: E731
    assert search(sender="REGISTRY") == newest_first
    assert sorted(search(sender="NARSA")) == sorted(answers)
    assert search(state="DEAD", sender="REGISTRY") == newest_first[:2]
    assert search(type="LicenceAuthenticationResult") == search(sender="NARSA")
    assert search(case=traffic["delivered"][2]) == [answers[2], requests[2]]
    assert search(id=requests[4]) == [requests[4]]
    assert search(partner="NARSA", state="delivered") == newest_first[2:]  # a state's name in any case
    assert set(search(partner="NARSA")) == set(requests) | set(answers)
    assert search(sender="REGISTRY", received_to=local(traffic["start"] - dt.timedelta(minutes=2), "Asia/Tokyo")) == []
    page = browser.get("/monitor/messages", params={**window, "sender": "REGISTRY"})
    assert "Messages trouvés : 8" in page.text  # the total, exact below the count limit
    # by cursor, three at a time: every match once, newest first
    seen, target = [], f"/monitor/messages?sender=REGISTRY&limit=3&received_from={window['received_from']}" \
                       f"&received_to={window['received_to']}"
    while target:
        page = browser.get(target)
        seen += listed(page)
        older = re.search(r'<a class="button" href="([^"]+)" rel="next">', page.text)
        target = older.group(1).replace("&amp;", "&") if older else None
    assert seen == newest_first
    pages = []  # and back up from the last page, by the "newer" links, to the first
    while page is not None:
        pages.insert(0, listed(page))
        newer = re.search(r'<a class="button" href="([^"]+)" rel="prev">', page.text)
        page = browser.get(newer.group(1).replace("&amp;", "&")) if newer else None
    assert pages[0] == newest_first[:3] and sum(pages, []) == newest_first
    # the JSON API has the same filters
    api = client.get("/api/v1/messages", params={"sender": "REGISTRY", "received_from": traffic["start"].isoformat(),
                                                 "received_to": traffic["end"].isoformat(), "limit": 100}).json()
    assert [item["id"] for item in api["items"]] == newest_first and api["total"] == 8 and api["total_exact"]
    assert client.get("/api/v1/messages", params={"message_id": requests[1], "sender": "NARSA"}).json()["total"] == 0


def test_the_csv_export_holds_what_the_search_shows(traffic, as_role, monkeypatch):
    browser = as_role("integration")
    params = {"partner": "NARSA", "received_from": local(traffic["start"] - dt.timedelta(minutes=1),
                                                         "Africa/Casablanca")}
    shown = listed(browser.get("/monitor/messages", params={**params, "limit": 200}))
    exported = browser.get("/monitor/messages.csv", params=params)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    assert exported.content.startswith(b"\xef\xbb\xbf")  # a BOM: Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Reçu", "Identifiant du message", "Expéditeur"]  # the viewer's language (French)
    assert [row[1] for row in rows[1:]] == shown and len(shown) == 14
    # read a few rows at a time, and cut at the cap with a last line saying so (the hub runs in this process)
    monkeypatch.setattr(console_messages, "CSV_PAGE", 3)
    monkeypatch.setattr(console_messages, "CSV_CAP", 8)
    cut = browser.get("/monitor/messages.csv", params=params).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(cut)))
    assert [row[1] for row in rows[1:9]] == shown[:8] and len(rows) == 10 and "8" in rows[9][0]


def test_cells_a_spreadsheet_would_take_for_formulas_are_quoted():
    assert [csv_cell(v) for v in ("=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "REGISTRY-1", "", None, 3)] \
        == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "REGISTRY-1", "", "", "3"]


def test_dates_are_read_in_the_viewers_zone_and_until_includes_what_it_names():
    seen = Viewer(identity=None, lang="fr", tz=ZoneInfo("Africa/Casablanca"), csrf="", session_id="")
    utc = dt.timezone.utc
    assert local_moment("2026-12-03T14:05", seen, "x", end=False) == dt.datetime(2026, 12, 3, 13, 5, tzinfo=utc)
    assert local_moment("2026-12-03T14:05", seen, "x", end=True) == dt.datetime(2026, 12, 3, 13, 6, tzinfo=utc)
    assert local_moment("2026-12-03", seen, "x", end=True) == dt.datetime(2026, 12, 3, 23, 0, tzinfo=utc)
    assert local_moment("", seen, "x", end=True) is None
    for bad in ("2026-13-45", "03/12/2026", "2026-12-03T25:00", "yesterday"):
        with pytest.raises(Exception, match="date|time"):
            local_moment(bad, seen, "x", end=False)


def test_a_supervisor_sees_no_payload_and_an_integration_users_view_is_audited(traffic, as_role, running_hub):
    hub = running_hub.hub
    message_id = traffic["requests"][0]
    page_url = f"/monitor/messages/REGISTRY/{message_id}"
    payload_url = f"{page_url}/payload/received"
    supervisor, integration = as_role("supervisor"), as_role("integration")
    agent = as_role("consular_agent")  # no messages at all: the role reads its post's cases only
    assert [agent.get(path).status_code for path in ("/monitor/messages", page_url, payload_url)] == [403] * 3
    assert "/monitor/messages" not in agent.get("/monitor/").text  # nor a link to them
    before = len(audit(hub, "PAYLOAD_VIEWED", message_id))
    page = supervisor.get(page_url)
    assert page.status_code == 200 and "/payload/" not in page.text and message_id in page.text
    assert supervisor.get(payload_url).status_code == 403
    assert supervisor.get(f"{page_url}/payload/sent", params={"partner": "NARSA"}).status_code == 403
    page = integration.get(page_url)  # the message's page links to its payloads, and views none
    assert page.status_code == 200 and payload_url in page.text
    assert len(audit(hub, "PAYLOAD_VIEWED", message_id)) == before
    shown = integration.get(payload_url)
    assert shown.status_code == 200 and "&lt;env:Message" in shown.text and "<env:Message" not in shown.text
    sent = integration.get(f"{page_url}/payload/sent", params={"partner": "NARSA"})
    answer = integration.get(f"{page_url}/payload/answer", params={"partner": "NARSA"})
    assert sent.status_code == 200 and answer.status_code == 200 and "NARSA-R-" in answer.text
    viewed = audit(hub, "PAYLOAD_VIEWED", message_id)[before:]
    assert len(viewed) == 3 and all(f"user {integration.username} " in e.actor for e in viewed)
    assert [e.detail.split(" (")[0] for e in viewed] == ["received", "sent to NARSA", "answer of NARSA"]


def test_the_message_page_shows_timeline_deliveries_attempts_and_the_evidence(traffic, as_role, running_hub):
    browser = as_role("supervisor")
    dead = browser.get(f"/monitor/messages/REGISTRY/{traffic['requests'][6]}")
    assert dead.status_code == 200
    assert "partner answered 503: busy" in dead.text and "partner answered 400" in dead.text  # each attempt
    assert "DEAD_LETTERED" in dead.text and "RETRY_SCHEDULED" in dead.text
    live = browser.get(f"/monitor/messages/REGISTRY/{traffic['requests'][6]}/live")  # the part a page refreshes
    assert live.status_code == 200 and "<html" not in live.text and "partner answered 400" in live.text
    message_id = traffic["requests"][1]
    page = browser.get(f"/monitor/messages/REGISTRY/{message_id}")
    detail = running_hub.hub.sessions  # the digests shown are the timeline's
    with detail() as session:
        from hub.store.models import Event, Message
        digests = session.scalars(select(Event.digest).join(Message, Message.id == Event.message_pk)
                                  .where(Message.message_id == message_id, Event.digest.is_not(None))).all()
    assert digests and all(d in page.text for d in digests)
    assert "&lt;env:Receipt" in page.text  # the hub's receipt (metadata only), shown escaped
    answer_id = f"NARSA-R-{traffic['delivered'][1][-6:]}"
    assert f'href="/monitor/messages/NARSA/{answer_id}"' in page.text  # NARSA's answer, a message
    assert "ResultatAuthentification" not in page.text and "Youssef" not in page.text  # payloads: in their tabs

    # the bundle holds the case's payloads: a supervisor, who sees no payload, gets none of it
    assert browser.get(f"/monitor/messages/REGISTRY/{message_id}/evidence").status_code == 403
    assert "/evidence" not in page.text
    browser = as_role("integration")

    def bundle():
        answer = browser.get(f"/monitor/messages/REGISTRY/{message_id}/evidence")
        return answer if answer.status_code == 200 else None
    answer = wait_for(bundle, 15, interval=0.5, what="the case's evidence bundle (once its entries are sealed)")
    assert answer.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert f"evidence-{traffic['delivered'][1]}/verify.sh" in names
    exported = audit(running_hub.hub, "EVIDENCE_EXPORTED", traffic["delivered"][1])
    assert exported and f"user {browser.username} " in exported[-1].actor


HOSTILE = [  # (path, query, status)
    ("/monitor/messages", {"case": "LIC\x00"}, 400),
    ("/monitor/messages", {"received_from": "2026-13-45", "received_to": "2026-12-03T12:00"}, 400),
    ("/monitor/messages", {"received_to": "le 3 décembre"}, 400),
    ("/monitor/messages", {"state": "LOST"}, 400),
    ("/monitor/messages", {"id": "A" * 81}, 422),
    ("/monitor/messages", {"before": "-1"}, 422),
    ("/monitor/messages", {"limit": "100000"}, 422),
    ("/monitor/messages.csv", {"received_from": "2026-02-30"}, 400),
    ("/monitor/messages", {"received_to": "9999-12-31"}, 400),       # the calendar's edge, moved by a day
    ("/monitor/messages/NARSA/{request}", {}, 404),        # another sender's id
    ("/monitor/messages/REGISTRY/" + "A" * 81, {}, 400),
    ("/monitor/messages/REGISTRY/{request}/payload/secret", {}, 404),
    ("/monitor/messages/REGISTRY/{request}/payload/sent", {"partner": "DGSN"}, 404),
    ("/monitor/messages/REGISTRY/NOPE/evidence", {}, 404),
]


def test_hostile_input_is_a_clear_refusal_that_views_nothing(traffic, as_role, running_hub):
    browser = as_role("integration")
    actions = lambda: audit_by(running_hub.hub, browser.username)  # noqa: E731
    before = actions()
    for path, params, status in HOSTILE:
        path = path.replace("{request}", traffic["requests"][0])
        answer = browser.get(path, params=params)
        assert answer.status_code == status, (path, params, answer.text[:300])
        if any("\x00" in value for value in params.values()):  # refused before routing, by the hub's edge
            continue                                             # (hub/api/edge.py, as problem+json)
        # a page saying what is wrong: the search form again with what to fix, or an error page
        assert answer.headers["content-type"].startswith("text/html"), (path, params)
        assert ('role="alert"' if path == "/monitor/messages" and status == 400 else 'class="error-page"') \
            in answer.text, (path, params)
    assert actions() == before  # nothing viewed, exported or resent
    refused = browser.get("/monitor/messages", params={"received_from": "2026-02-30", "sender": "REGISTRY"})
    assert "Reçu à partir du : cette date ou cette heure n’existe pas." in refused.text  # in the viewer's words
    assert 'value="REGISTRY"' in refused.text  # the form kept as given, to fix


def test_resend_needs_the_sessions_csrf_token_and_then_finishes_the_delivery(traffic, as_role, running_hub, client):
    hub = running_hub.hub
    message_id = traffic["requests"][7]
    page_url = f"/monitor/messages/REGISTRY/{message_id}"
    browser = as_role("integration")
    page = browser.get(page_url)
    assert f'action="{page_url}/resend"' in page.text and "data-confirm" in page.text
    assert browser.post(f"{page_url}/resend", data={}).status_code == 403
    assert browser.post(f"{page_url}/resend", data={"csrf_token": "forged"}).status_code == 403
    assert as_role("supervisor").post(f"{page_url}/resend").status_code == 403
    assert client.get(f"/api/v1/messages/{message_id}").json()["state"] == "DEAD"
    assert audit(hub, "RESEND", message_id) == []  # nothing was done
    traffic["narsa"].fixed.add(traffic["refused"][1])
    done = browser.post_form(f"{page_url}/resend")
    assert done.status_code == 303 and done.headers["location"] == f"{page_url}?resent=1"
    assert "dans la file d’envoi : 1." in browser.get(done.headers["location"]).text
    resent = audit(hub, "RESEND", message_id)
    assert len(resent) == 1 and f"user {browser.username} " in resent[0].actor
    wait_for(lambda: client.get(f"/api/v1/messages/{message_id}").json()["state"] == "DELIVERED", 20,
             what="the resent message delivered")
