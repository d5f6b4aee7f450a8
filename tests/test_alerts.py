"""Alerts (hub/monitor/alerts.py, hub/monitor/notify.py): each rule over a real database, raised once when
its condition appears, notified once by a real SMTP server on loopback (aiosmtpd) and a real HTTP receiver,
cleared when it goes away and raised again when it comes back; a failing webhook does not hold up the
e-mail and is tried again; no secret reaches a log. End to end: a running hub whose partner is on a closed
port raises the unreachable alert within its rule, and clears it once the partner listens; a case the
registry reports past its deadline is raised and cleared once answered; the console's page and the API
show the alerts to whom may see them."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.server
import json
import logging
import threading

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from conftest import free_port, serve_hub, wait_for
from console_support import ConsoleClient, make_user
from registry import service as registry_service
from support import StandInPartner
from test_console_cases import opened
from hub.errors import NotificationFailed
from hub.intake.polling import LastPoll
from hub.monitor import alerts
from hub.monitor.notify import EMAIL_LIST_LIMIT, EmailNotifier, WebhookNotifier, configured_notifiers, email_text
from hub.store.db import utcnow
from hub.store.models import Alert, Delivery, DeliveryState, Message, MessageState

PASSWORD, TOKEN = "s3cret-smtp-Pa55", "webhook-t0ken-XYZ"


class Mailbox:
    """An SMTP server on loopback (aiosmtpd) keeping what it receives; signing in as alerts/PASSWORD."""

    def __init__(self):
        self.messages: list[tuple[list[str], str]] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, authenticator=self._auth,
                                     auth_require_tls=False)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), f"{message['Subject']}\n{message.get_content()}"))
        return "250 OK"

    @staticmethod
    def _auth(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alerts" \
            and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # a refusal answered 535 by the server

    def stop(self):
        self.controller.stop()


class Receiver:
    """An HTTP server on loopback keeping each POST (headers and JSON body), answering `status`."""

    def __init__(self, status: int = 200):
        self.status, self.posts = status, []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.posts.append((dict(self.headers), json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.stop()


@pytest.fixture
def settings(settings):
    """Unreachable partners (all of them here: nothing listens on their ports) wait an hour before they are
    raised, so that the rules under test are alone unless a test says otherwise."""
    return settings.replace(alert_unreachable_minutes=60, alert_console_url="https://hub.example.ma")


def notifiers(hub, mailbox, receiver, password=PASSWORD):
    email = EmailNotifier(f"smtp://alerts@127.0.0.1:{mailbox.port}", sender="hub@consulat.ma",
                          recipients=["veille@consulat.ma"], password=password, link="https://hub.example.ma/monitor/alerts")
    return [email, WebhookNotifier(receiver.url, token=TOKEN, timeout=5)]


def add_delivery(hub, partner: str, state: str, *, error: str | None = None, attempts: int = 1) -> int:
    """A message to `partner` with one delivery in `state` (what the workers leave), written directly."""
    now = utcnow()
    with hub.sessions.begin() as session:
        message = Message(message_id=f"m-{now.timestamp()}-{partner}-{state}", sender="REGISTRY", recipient=partner,
                          type="LicenceAuthenticationRequest", correlation_id="LIC-1", state=MessageState.ACCEPTED,
                          digest="0" * 64, received_bytes=b"<x/>", receipt=b"<r/>", received_at=now, updated_at=now)
        session.add(message)
        session.flush()
        delivery = Delivery(message_pk=message.id, partner=partner, state=state, attempts=attempts,
                            next_attempt_at=now, last_error=error)
        session.add(delivery)
        session.flush()
        return delivery.id


def rows(hub) -> list[Alert]:
    with hub.reads() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def row(hub, key: str) -> Alert:
    [found] = [a for a in rows(hub) if a.key == key]
    return found


def open_keys(hub) -> set[str]:
    return {a.key for a in rows(hub) if a.cleared_at is None and a.raised_at is not None}


def test_a_dead_letter_is_raised_once_notified_once_cleared_and_raised_again(hub, mailbox, receiver):
    told = notifiers(hub, mailbox, receiver)
    mails = len(mailbox.messages)
    delivery = add_delivery(hub, "NARSA", DeliveryState.DEAD, error="NARSA answered 400: licence number unknown")

    first = alerts.evaluate(hub, notifiers=told)
    assert first.ok and first.raised == ["dead-letters:NARSA"]
    [(recipients, mail)] = mailbox.messages[mails:]
    assert recipients == ["veille@consulat.ma"]
    assert "Lettres mortes pour NARSA" in mail and "licence number unknown" in mail  # French, the key facts
    assert "https://hub.example.ma/monitor/alerts" in mail and "(Africa/Casablanca)" in mail
    [(headers, body)] = receiver.posts
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert [a["key"] for a in body["alerts"]] == ["dead-letters:NARSA"] and body["alerts"][0]["facts"]["count"] == 1

    add_delivery(hub, "NARSA", DeliveryState.DEAD, error="NARSA answered 400: second one")
    again = alerts.evaluate(hub, notifiers=told)  # still there, one more: not raised nor told again
    assert again.raised == [] and again.notified == {}
    assert len(mailbox.messages) == mails + 1 and len(receiver.posts) == 1
    alert = row(hub, "dead-letters:NARSA")
    assert alert.notified_at is not None and alert.notified_via == "email,webhook" and "2 dead-lettered" in alert.detail

    with hub.sessions.begin() as session:  # both resent (what the console's resend does to the rows)
        for dead in session.scalars(select(Delivery).where(Delivery.partner == "NARSA")):
            dead.state = DeliveryState.DELIVERED
    cleared = alerts.evaluate(hub, notifiers=told)
    assert cleared.cleared == ["dead-letters:NARSA"] and "dead-letters:NARSA" not in open_keys(hub)

    add_delivery(hub, "NARSA", DeliveryState.DEAD, error="NARSA answered 400: third")
    back = alerts.evaluate(hub, notifiers=told)
    assert back.raised == ["dead-letters:NARSA"] and len(mailbox.messages) == mails + 2 and len(receiver.posts) == 2
    assert [a.cleared_at is None for a in rows(hub) if a.key == "dead-letters:NARSA"] == [False, True]
    assert delivery


def test_a_failing_webhook_does_not_stop_the_email_and_is_tried_again(hub, mailbox, receiver, caplog):
    told = notifiers(hub, mailbox, receiver)
    mails = len(mailbox.messages)
    receiver.status = 503
    add_delivery(hub, "SANTE", DeliveryState.DEAD, error="SANTE refused the clearance")
    with caplog.at_level(logging.INFO):
        first = alerts.evaluate(hub, notifiers=told)
    assert first.raised == ["dead-letters:SANTE"] and first.failed == ["webhook"] and not first.ok
    assert len(mailbox.messages) == mails + 1 and len(receiver.posts) == 1
    alert = row(hub, "dead-letters:SANTE")
    assert alert.notified_via == "email" and alert.notified_at is None

    receiver.status = 200
    second = alerts.evaluate(hub, notifiers=told)  # the webhook again, the e-mail not
    assert second.ok and second.notified == {"webhook": ["dead-letters:SANTE"]}
    assert len(mailbox.messages) == mails + 1 and len(receiver.posts) == 2
    alert = row(hub, "dead-letters:SANTE")
    assert alert.notified_via == "email,webhook" and alert.notified_at is not None
    assert alerts.evaluate(hub, notifiers=told).notified == {} and len(receiver.posts) == 2
    assert TOKEN not in caplog.text and PASSWORD not in caplog.text


def test_a_refused_smtp_sign_in_is_reported_without_the_password(hub, mailbox, caplog):
    email = EmailNotifier(f"smtp://alerts@127.0.0.1:{mailbox.port}", sender="hub@consulat.ma",
                          recipients=["veille@consulat.ma"], password="wrong-" + PASSWORD)
    with pytest.raises(NotificationFailed) as refused:
        email.send([{"key": "poll:CDG", "kind": "poll", "subject": "CDG", "detail": "", "facts": {}}])
    assert "sign-in as alerts refused" in str(refused.value) and PASSWORD not in str(refused.value)
    assert PASSWORD not in repr(email)
    add_delivery(hub, "DGSN", DeliveryState.DEAD, error="x")
    with caplog.at_level(logging.INFO):
        outcome = alerts.evaluate(hub, notifiers=[email])
    assert outcome.failed == ["email"] and PASSWORD not in caplog.text and "sign-in" in caplog.text
    assert outcome.raised == ["dead-letters:DGSN"]  # raised all the same, told at a later evaluation


def test_unreachable_is_raised_only_once_it_held_for_the_rule(hub):
    hold = hub.settings.alert_unreachable_minutes * 60
    t0 = utcnow()
    down = {"DGSN": (False, "127.0.0.1:9 unreachable (Connection refused)"), "NARSA": (True, "reachable")}

    def run(now, checks):
        with hub.sessions.begin() as session:
            return alerts.apply(session, alerts.observe(hub, session, now=now, checks=checks), now)

    assert run(t0, down).raised == []
    [pending] = rows(hub)
    assert pending.key == "unreachable:DGSN" and pending.raised_at is None
    assert run(t0 + dt.timedelta(seconds=hold - 1), down).raised == []
    assert run(t0 + dt.timedelta(seconds=hold), down).raised == ["unreachable:DGSN"]
    assert run(t0 + dt.timedelta(seconds=hold + 60), down).raised == []  # once

    up = {"DGSN": (True, "reachable"), "NARSA": (True, "reachable")}
    assert run(t0 + dt.timedelta(seconds=hold + 120), up).cleared == ["unreachable:DGSN"]
    # a blip shorter than the rule leaves nothing behind
    run(t0 + dt.timedelta(seconds=hold + 180), down)
    assert run(t0 + dt.timedelta(seconds=hold + 240), up).cleared == []
    assert [(a.key, a.cleared_at is not None) for a in rows(hub)] == [("unreachable:DGSN", True)]

    # deliveries failing with transient errors count too, even while the connection opens
    add_delivery(hub, "NARSA", DeliveryState.PENDING, error="NARSA answered 503", attempts=2)
    t1 = t0 + dt.timedelta(seconds=hold + 300)
    run(t1, up)
    assert run(t1 + dt.timedelta(seconds=hold), up).raised == ["unreachable:NARSA"]
    [alert] = [a for a in rows(hub) if a.key == "unreachable:NARSA"]
    assert "NARSA answered 503" in alert.detail and json.loads(alert.facts)["failing_deliveries"] == 1


def test_certificates_overdue_cases_and_polls(hub):
    t0 = utcnow()
    cases = [{"reference": "REP-2026-000001", "service": "repatriation", "post_code": "PAR",
              "deadline_at": t0 - dt.timedelta(hours=1), "status": "AWAITING_CLEARANCES",
              "url": "/monitor/cases/REP-2026-000001"}]
    broken = []

    def overdue(_hub):
        if broken:
            raise RuntimeError("the registry's query failed")
        return list(cases)

    up = {code: (True, "reachable") for code in hub.connectors}

    def run(now, **settings):
        hub.settings = hub.settings.replace(**settings) if settings else hub.settings
        with hub.sessions.begin() as session:
            return alerts.apply(session, alerts.observe(hub, session, now=now, checks=up, overdue=[overdue]), now)

    hub.last_polls["CDG"] = LastPoll(at=t0, ok=False, detail="sftp 127.0.0.1:2222: connection refused")
    first = run(t0, alert_certificate_days=0)
    assert set(first.raised) == {"overdue:repatriation:REP-2026-000001", "poll:CDG"}
    # every test certificate expires within 100,000 days: one alert each, keyed by party and serial
    many = run(t0, alert_certificate_days=100_000)
    assert {k.split(":")[1] for k in many.raised} >= {"hub", "NARSA", "DGSN", "CDG"}
    assert all(k.startswith("certificate:") and len(k.split(":")) == 3 for k in many.raised)

    broken.append(True)  # the app could not say: its alert stays; a partner not polled yet: its alert stays
    del hub.last_polls["CDG"]
    assert run(t0).cleared == []
    broken.clear()
    cases.clear()
    hub.last_polls["CDG"] = LastPoll(at=t0, ok=True, detail="1 file")
    cleared = run(t0, alert_certificate_days=0)
    assert set(cleared.cleared) == {"overdue:repatriation:REP-2026-000001", "poll:CDG"} | set(many.raised)
    assert open_keys(hub) == set()


@pytest.mark.both_databases
def test_evaluation_is_idempotent_and_one_open_row_per_key(hub):
    add_delivery(hub, "JUSTICE", DeliveryState.DEAD, error="fault")
    now = utcnow()
    assert alerts.evaluate(hub, now=now).raised == ["dead-letters:JUSTICE"]
    assert alerts.evaluate(hub, now=now).raised == []
    assert [a.key for a in rows(hub) if a.raised_at] == ["dead-letters:JUSTICE"]
    with pytest.raises(Exception, match="(?i)unique"):
        with hub.sessions.begin() as session:
            session.add(Alert(key="dead-letters:JUSTICE", kind="dead-letters", subject="JUSTICE", detail="",
                              facts="{}", seen_at=now, notified_via=""))
    with hub.reads() as session:
        listed = alerts.list_alerts(session)
    assert [(a["key"], a["open"]) for a in listed] == [("dead-letters:JUSTICE", True)]


def test_configured_notifiers_keep_their_secrets():
    from hub.settings import Settings
    settings = Settings.from_env(environment={
        "HUB_ALERT_SMTP_URL": "smtp+starttls://alerts@mail.example.ma:587", "HUB_ALERT_SMTP_PASSWORD": PASSWORD,
        "HUB_ALERT_EMAIL_TO": "a@consulat.ma, b@consulat.ma", "HUB_ALERT_WEBHOOK_URL": "https://ops.example.ma/h",
        "HUB_ALERT_WEBHOOK_TOKEN": TOKEN})
    email, webhook = configured_notifiers(settings)
    assert email.recipients == ["a@consulat.ma", "b@consulat.ma"] and email.port == 587
    for shown in (repr(settings), repr(email), repr(webhook), str(settings.model_dump())):
        assert PASSWORD not in shown and TOKEN not in shown


def test_a_long_list_is_counted_in_the_email_and_whole_in_the_webhook():
    many = [{"key": f"overdue:repatriation:REP-{i}", "kind": "overdue", "subject": f"repatriation:REP-{i}",
             "detail": "", "raised_at": "2026-12-03T10:00:00+00:00",
             "facts": {"reference": f"REP-{i}", "service": "repatriation", "post_code": "FR-PARIS",
                       "status": "AWAITING_CLEARANCES", "deadline_at": "2026-12-03T09:00:00+00:00"}}
            for i in range(EMAIL_LIST_LIMIT + 7)]
    subject, body = email_text(many, "https://hub.example.ma/monitor/alerts")
    assert subject == f"Alerte du hub consulaire : Dossier REP-0 hors délai (+{EMAIL_LIST_LIMIT + 6})"
    assert body.count("REP-0 hors délai") == 1 and f"REP-{EMAIL_LIST_LIMIT} " not in body
    assert "Et 7 autres" in body and "Levée: 2026-12-03 11:00 (Africa/Casablanca)" in body  # raised 10:00 UTC
    assert "الملف REP-1 تجاوز أجله" in body
    assert len(WebhookNotifier("http://127.0.0.1:9/").payload(many)["alerts"]) == EMAIL_LIST_LIMIT + 7


@pytest.mark.slow
def test_a_partner_on_a_closed_port_raises_the_unreachable_alert_then_clears(settings, partner_ports, mailbox,
                                                                              receiver):
    """End to end: the leader's scheduled evaluation, the real connection checks, the real notifiers."""
    settings = settings.replace(alert_evaluate_seconds=0.5, alert_unreachable_minutes=0.02,
                                alert_smtp_url=f"smtp://127.0.0.1:{mailbox.port}", alert_email_to="veille@consulat.ma",
                                alert_webhook_url=receiver.url)
    mails = len(mailbox.messages)
    serving = serve_hub(settings)
    service = next(serving)
    try:
        # nothing listens on NARSA's port: raised after 1.2 s of failing checks, told once by e-mail and webhook
        wait_for(lambda: "unreachable:NARSA" in open_keys(service.hub), 15, what="unreachable:NARSA raised")
        [alert] = [a for a in rows(service.hub) if a.key == "unreachable:NARSA"]
        assert (alert.raised_at - alert.seen_at).total_seconds() >= 1.2
        wait_for(lambda: any("unreachable:NARSA" in mail for _, mail in mailbox.messages[mails:]), 10,
                 what="the e-mail")
        wait_for(lambda: any("unreachable:NARSA" in [a["key"] for a in body["alerts"]] for _, body in receiver.posts),
                 10, what="the webhook")
        [mail] = [mail for _, mail in mailbox.messages[mails:] if "unreachable:NARSA" in mail]
        assert "Partenaire NARSA injoignable" in mail and f":{partner_ports['NARSA']}" in mail
        assert "الشريك NARSA غير قابل للوصول" in mail  # then in Arabic
        see_it_in_the_console(service)

        # a case past its deadline, as the registry reports it (its ConsolePart.overdue): raised, then cleared
        # once the case is answered
        late = opened(service.hub, "CIVIL_STATUS_EXTRACT", "AWAITING_PARTNER", days_ago=1)
        key = f"overdue:CIVIL_STATUS_EXTRACT:{late}"
        wait_for(lambda: key in open_keys(service.hub), 10, what="the overdue case raised")
        assert json.loads(row(service.hub, key).facts)["url"] == f"/monitor/cases/{late}"
        with service.hub.sessions.begin() as session:
            registry_service.move_case(session, case=registry_service.get_case(session, reference=late),
                                       status="ISSUED", actor="test")
        wait_for(lambda: key not in open_keys(service.hub), 10, what="the overdue case cleared")

        narsa = StandInPartner(partner_ports["NARSA"], b"<ok/>")  # the partner listens again
        try:
            wait_for(lambda: "unreachable:NARSA" not in open_keys(service.hub), 15, what="unreachable:NARSA cleared")
        finally:
            narsa.close()
        told = [mail for _, mail in mailbox.messages[mails:] if "unreachable:NARSA" in mail]
        assert len(told) == 1
    finally:
        next(serving, None)


def see_it_in_the_console(service):
    """The API and the page show the open alert, to whom may see it, computed by the same function."""
    with httpx.Client(base_url=service.url, timeout=10) as http:
        def get(path, role=None, **params):
            post = "FR-PARIS" if role == "consular_agent" else None
            headers = {"Authorization": f"Bearer {service.mint_token(role, post=post)}"} if role else {}
            return http.get(path, params=params, headers=headers)

        listed = get("/api/v1/monitor/alerts", "integration", state="open").json()["items"]
        narsa = next(a for a in listed if a["key"] == "unreachable:NARSA")
        assert narsa["open"] and narsa["kind"] == "unreachable" and narsa["raised_at"] and narsa["facts"]["check_failed"]
        with service.hub.reads() as session:
            assert listed == alerts.list_alerts(session, state="open")
        assert get("/api/v1/monitor/alerts", "supervisor", state="cleared").json()["items"] == []
        assert get("/api/v1/monitor/alerts", "consular_agent").status_code == 403
        assert get("/api/v1/monitor/alerts").status_code == 401
        for hostile in ({"state": "everything"}, {"limit": "0"}, {"limit": "100000"}, {"state": "open\x00"}):
            refused = get("/api/v1/monitor/alerts", "administrator", **hostile)
            assert refused.status_code in (400, 422), (hostile, refused.status_code)

    username, password = make_user(service.hub.sessions, "supervisor")
    with ConsoleClient(service.url, username, password) as person:
        page = person.get("/monitor/alerts")
        assert page.status_code == 200 and "Partenaire NARSA injoignable" in page.text
        assert 'data-key="unreachable:NARSA"' in page.text and 'href="/monitor/alerts"' in page.text
        live = person.get("/monitor/alerts/live")
        assert "Partenaire NARSA injoignable" in live.text and "<html" not in live.text
        arabic = person.get("/monitor/alerts", headers={"Accept-Language": "ar"})
        assert 'dir="rtl"' in arabic.text and "الشريك NARSA غير قابل للوصول" in arabic.text
    agent, password = make_user(service.hub.sessions, "consular_agent", post="FR-PARIS")
    with ConsoleClient(service.url, agent, password) as person:
        assert person.get("/monitor/alerts").status_code == 403
        assert 'href="/monitor/alerts"' not in person.get("/monitor/").text
