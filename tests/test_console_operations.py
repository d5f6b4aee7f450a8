"""The console's operations pages over HTTP against a running hub: dead letters grouped by cause and resent from
the page once the partner is fixed, the partners' pages with "check now" and "poll now" for the roles that may,
refusals without their bytes, the audit log, and hostile filters refused with a clear 4xx.

NARSA is played by a stand-in on its port (tests/support.py): first answering every message with a permanent
error that names the case (so the deliveries dead-letter at once, each with a reason of its own), then
accepting them."""
from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from conftest import bearer, wait_for
from console_support import ConsoleClient, make_user
from hub.monitor.dead_letters import group_key, pattern
from hub.monitor.partners import Hour, hourly, hours_svg, percentile
from support import StandInPartner, licence_request

pytestmark = pytest.mark.shared_hub

XML = {"Content-Type": "application/xml"}
_people: dict[tuple[str, str], str] = {}


def person(running_hub, role: str, *, post: str | None = None) -> ConsoleClient:
    """A console client signed in as the module's person of `role` (made once), reading English."""
    key = (running_hub.url, role)
    if key not in _people:
        _people[key] = make_user(running_hub.hub.sessions, role, post=post)[0]
    browser = ConsoleClient(running_hub.url, _people[key])
    browser.cookies.set("hub_lang", "en")
    return browser


def states(client, message_ids: list[str]) -> list[str]:
    return [client.get(f"/api/v1/messages/{m}").json()["state"] for m in message_ids]


def naming_the_case(body: bytes) -> bytes:
    found = re.search(rb"LIC-\d{4}-\d{6}", body)
    return b"<Erreur>dossier " + (found.group() if found else b"?") + b" inconnu du registre</Erreur>"


# -- pure functions ------------------------------------------------------------------------------------------

def test_a_reason_pattern_keeps_the_cause_and_drops_what_names_one_message():
    a = pattern("partner answered 400: <Erreur>dossier LIC-2026-000123 inconnu</Erreur> at 2026-12-03T11:02:07Z")
    b = pattern("partner answered 400: <Erreur>dossier LIC-2026-000124 inconnu</Erreur> at 2026-12-03T11:09:51Z")
    assert a == b and "400" in a and "000123" not in a
    assert pattern("partner answered 503") != pattern("partner answered 500")
    assert pattern("127.0.0.1:20001 unreachable (Connection refused) after 5.02 s") == \
        pattern("127.0.0.1:20001 unreachable (Connection refused) after 4.97 s")
    assert pattern("sha256 " + "ab12" * 16 + " differs") == pattern("sha256 " + "cd34" * 16 + " differs")
    assert pattern(None) == "" and len(pattern("x" * 5000)) == 300
    assert group_key("NARSA", a) != group_key("DGSN", a)


def test_the_hours_chart_is_an_accessible_svg_without_style_attributes():
    import datetime as dt
    start = dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc)
    hours = [Hour(start + dt.timedelta(hours=i), delivered=i, failed=i % 3) for i in range(24)]
    svg = str(hours_svg(hours, gettext=lambda s, **k: s % k if k else s, hour_label=lambda h: f"{h:%H}"))
    assert svg.startswith("<svg") and 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert "style=" not in svg and "276 delivered" in svg
    assert percentile([], 0.95) is None and percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


# -- dead letters --------------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_dead_letters_group_by_cause_and_a_fixed_partner_gets_them_from_the_group_resend(
        running_hub, client, partner_ports, pki_dir):
    references = [f"LIC-2026-0810{i:02d}" for i in range(3)]
    message_ids = [f"REGISTRY-{r}" for r in references]
    narsa = StandInPartner(partner_ports["NARSA"], naming_the_case, status=400)
    try:
        for reference in references:
            response = client.post("/api/v1/messages", content=licence_request(pki_dir, reference=reference),
                                   headers=XML)
            assert response.status_code == 202, response.text
        wait_for(lambda: states(client, message_ids) == ["DEAD"] * 3, 20, what="the deliveries dead-lettered")
    finally:
        narsa.close()

    integration = person(running_hub, "integration")
    page = integration.get("/monitor/dead-letters", params={"partner": "NARSA"})
    assert page.status_code == 200, page.text
    [key] = re.findall(r'data-group="([0-9a-f]{16})"', page.text)  # three reasons, one cause
    assert "dossier LIC-# inconnu du registre" in page.text and "LIC-2026-081002" in page.text  # the example, raw
    assert "Resend the 3 messages of this group to NARSA?" in page.text  # the confirmation says how many
    token = running_hub.mint_token("integration")
    listed = httpx.get(f"{running_hub.url}/api/v1/monitor/dead-letters", params={"partner": "NARSA"},
                       headers=bearer(token)).json()
    [group] = listed["groups"]
    assert group["key"] == key and group["count"] == 3 and sorted(group["message_ids"]) == message_ids
    group_page = integration.get(f"/monitor/dead-letters/NARSA/{key}")
    assert all(m in group_page.text for m in message_ids)
    assert "NARSA now:" in group_page.text and "unreachable" in group_page.text  # the cause is not fixed yet

    # refused without the session's CSRF token, or by a role that may not resend: nothing changes
    form = {"partner": "NARSA", "group": key}
    assert integration.post("/monitor/dead-letters/resend-group", data=form).status_code == 403
    forged = {**form, "csrf_token": "x" * 43}
    assert integration.post("/monitor/dead-letters/resend-group", data=forged).status_code == 403
    with person(running_hub, "consular_agent", post="FR-PARIS") as agent:
        assert agent.post_form("/monitor/dead-letters/resend-group", form).status_code == 403
        assert agent.get("/monitor/dead-letters").status_code == 403
    assert states(client, message_ids) == ["DEAD"] * 3

    narsa = StandInPartner(partner_ports["NARSA"], b"")  # fixed: takes every message
    try:  # one message from the group's page, then the rest of the group at once
        one = integration.post_form("/monitor/dead-letters/resend",
                                    {"message_id": message_ids[0], "sender": "REGISTRY", **form})
        assert one.status_code == 303 and one.headers["location"] == f"/monitor/dead-letters/NARSA/{key}?resent=1"
        assert "One message back in the outbox." in integration.get(one.headers["location"]).text
        resent = integration.post_form("/monitor/dead-letters/resend-group", form)
        assert resent.status_code == 303 and resent.headers["location"] == f"/monitor/dead-letters/NARSA/{key}?resent=2"
        shown = integration.get(resent.headers["location"])
        assert shown.status_code == 200 and "2 messages back in the outbox." in shown.text
        wait_for(lambda: states(client, message_ids) == ["DELIVERED"] * 3, 20, what="the resent messages delivered")
    finally:
        narsa.close()
    assert not httpx.get(f"{running_hub.url}/api/v1/monitor/dead-letters", params={"partner": "NARSA"},
                         headers=bearer(token)).json()["groups"]

    hours = hourly(running_hub.hub, "NARSA")  # what the partner's page charts: 3 failed, then 3 delivered
    assert (sum(h.delivered for h in hours), sum(h.failed for h in hours)) == (3, 3)
    assert any(h.p95_seconds is not None for h in hours)

    username = _people[(running_hub.url, "integration")]
    with person(running_hub, "supervisor") as supervisor:
        audit = supervisor.get("/monitor/audit", params={"action": "RESEND", "actor": username})
        assert audit.status_code == 200 and all(m in audit.text for m in message_ids)
    entries = httpx.get(f"{running_hub.url}/api/v1/monitor/audit", params={"action": "resend", "actor": username},
                        headers=bearer(running_hub.mint_token("supervisor"))).json()["items"]
    assert sorted(e["subject"] for e in entries) == message_ids  # one entry per message resent
    assert all(f"user {username} (" in e["actor"] and "back in the outbox: NARSA" in e["detail"] for e in entries)
    integration.close()


def test_resending_one_unknown_or_hostile_message_id_is_refused_clearly(running_hub):
    with person(running_hub, "integration") as integration:
        assert integration.post_form("/monitor/dead-letters/resend",
                                     {"message_id": "NOPE-404", "sender": "REGISTRY"}).status_code == 404
        # an id is unique per sender only: another sender's message of that id is not this one
        assert integration.post_form("/monitor/dead-letters/resend",
                                     {"message_id": "REGISTRY-NOPE", "sender": "NARSA"}).status_code == 404
        bad = integration.post_form("/monitor/dead-letters/resend", {"message_id": "A\x00B", "sender": "REGISTRY"})
        assert bad.status_code == 400 and "U+0000" in bad.text and bad.headers["content-type"].startswith("text/html")
        assert integration.post_form("/monitor/dead-letters/resend",
                                     {"message_id": "x" * 5000, "sender": "REGISTRY"}).status_code == 422
        assert integration.post_form("/monitor/dead-letters/resend-group",
                                     {"partner": "NARSA", "group": "not-a-key"}).status_code == 400
        assert integration.post_form("/monitor/dead-letters/resend-group",
                                     {"partner": "NOBODY", "group": "0" * 16}).status_code == 404
        assert integration.get(f"/monitor/dead-letters/NARSA/{'0' * 16}").status_code == 404


# -- partners ------------------------------------------------------------------------------------------------

def test_partner_pages_show_health_and_certificates_and_only_operators_check_and_poll(running_hub):
    hub = running_hub.hub
    with person(running_hub, "supervisor") as supervisor:
        listed = supervisor.get("/monitor/partners")
        assert listed.status_code == 200 and all(f'data-partner="{code}"' in listed.text for code in hub.config.parties)
        page = supervisor.get("/monitor/partners/NARSA")
        assert page.status_code == 200 and "Certificates" in page.text and "<svg" in page.text
        assert "Check now" not in page.text and "/check" not in page.text  # seen, without the button
        assert "Poll now" not in supervisor.get("/monitor/partners/CDG").text
        before = dict(getattr(running_hub.app.state, "partner_checks", {}))
        assert supervisor.post_form("/monitor/partners/NARSA/check").status_code == 403
        assert supervisor.post_form("/monitor/partners/CDG/poll").status_code == 403
        assert getattr(running_hub.app.state, "partner_checks", {}).get("NARSA") == before.get("NARSA")
    assert not _audit(running_hub, "POLL_NOW", _people[(running_hub.url, "supervisor")])

    with person(running_hub, "integration") as integration:
        assert integration.post("/monitor/partners/NARSA/check", data={}).status_code == 403  # no CSRF token
        checked = integration.post_form("/monitor/partners/NARSA/check")
        assert checked.status_code == 303
        page = integration.get(checked.headers["location"])
        assert "Checked now:" in page.text and "unreachable" in page.text  # nothing listens on NARSA's port
        polled = integration.post_form("/monitor/partners/CDG/poll")  # no CDG server: the poll fails, said
        assert polled.status_code == 303 and polled.headers["location"].endswith("polled=failed")
        assert "The poll failed" in integration.get(polled.headers["location"]).text
        assert "Polled now:" in integration.get("/monitor/partners/CDG", params={"polled": "ok"}).text
        assert integration.post_form("/monitor/partners/NARSA/poll").status_code == 404  # not polled
        assert integration.get("/monitor/partners/NOBODY").status_code == 404
    [entry] = _audit(running_hub, "POLL_NOW", _people[(running_hub.url, "integration")])
    assert entry.subject == "CDG" and "poll failed" in entry.detail


def _audit(running_hub, action: str, username: str):
    from sqlalchemy import select
    from hub.store.models import AuditEntry
    with running_hub.hub.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.actor.startswith(f"user {username} ("))))


# -- refusals and the audit log ------------------------------------------------------------------------------

def test_refusals_are_listed_without_their_bytes_and_paged(running_hub, client):
    sent = [b"<doc><note>SECRET-PAYLOAD-%d</note></doc>" % i for i in range(3)]
    for data in sent:
        assert client.post("/api/v1/messages", content=data, headers=XML).status_code == 400
    digests = [hashlib.sha256(d).hexdigest() for d in sent]
    with person(running_hub, "integration") as integration:
        page = integration.get("/monitor/refusals", params={"door": "rest", "status": 400})
        assert page.status_code == 200 and all(d in page.text for d in digests)
        assert "SECRET-PAYLOAD" not in page.text
        assert integration.get("/monitor/audit").status_code == 403  # the audit log is not integration's
    token = bearer(running_hub.mint_token("supervisor"))
    first = httpx.get(f"{running_hub.url}/api/v1/monitor/refusals", params={"door": "rest", "limit": 2},
                      headers=token).json()
    assert [r["digest_sha256"] for r in first["items"]] == digests[::-1][:2] and first["next_before"]
    second = httpx.get(f"{running_hub.url}/api/v1/monitor/refusals",
                       params={"door": "rest", "limit": 2, "before": first["next_before"]}, headers=token).json()
    assert second["items"][0]["digest_sha256"] == digests[0]
    assert "SECRET-PAYLOAD" not in str(first) + str(second)
    agent = httpx.get(f"{running_hub.url}/api/v1/monitor/refusals",
                      headers=bearer(running_hub.mint_token("consular_agent", post="FR-PARIS")))
    assert agent.status_code == 403


HOSTILE = [
    ("/monitor/refusals", {"since": "yesterday"}, 400),
    ("/monitor/refusals", {"since": "1900-01-01"}, 400),
    ("/monitor/refusals", {"since": "2026-12-03", "until": "2026-12-01"}, 400),
    ("/monitor/refusals", {"door": "chimney"}, 400),
    ("/monitor/refusals", {"status": "99999999999999999999"}, 422),
    ("/monitor/refusals", {"before": str(10 ** 30)}, 422),
    ("/monitor/refusals", {"partner": "P" * 5000}, 422),
    ("/monitor/audit", {"actor": "a" * 10_000}, 422),
    ("/monitor/audit", {"until": "2026-13-45"}, 400),
    ("/monitor/dead-letters", {"partner": "NOBODY"}, 404),
    ("/monitor/dead-letters", {"resent": "-1"}, 422),
]


def test_hostile_filters_get_a_clear_refusal_page(running_hub):
    with person(running_hub, "administrator") as admin:
        for path, params, status in HOSTILE:
            answer = admin.get(path, params=params)
            assert answer.status_code == status, (path, params, answer.text)
            assert answer.headers["content-type"].startswith("text/html") and "<h1>" in answer.text, (path, params)
        for path in ("/monitor/refusals", "/monitor/audit", "/monitor/dead-letters"):  # before the database
            answer = admin.get(path, params={"partner": "A\x00", "actor": "A\x00"})
            assert answer.status_code == 400 and "U+0000" in answer.text, (path, answer.text)
        assert admin.get("/monitor/audit", params={"actor": "100%_\\"}).status_code == 200  # LIKE's characters
