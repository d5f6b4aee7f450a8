"""The console end to end, in a real browser (headless Chromium, tests/browser_support.py) against a running hub
and a real sandbox partner process (NARSA), as issue 13 asks:

1. a consular agent opens a licence case through the API while NARSA is down: the request is refused until the
   retry policy gives up, the delivery is dead-lettered and the case FAILS;
2. an integration user sees the dead letter on the dead-letters page, grouped by partner and reason, within
   seconds (the page is reloaded until it shows), and NARSA failing on its partner page and its overview tile;
3. NARSA is started again, the integration user resends the group from the dead-letters page (confirming the
   dialog), and a supervisor sees the case reach its final status on its page, whose history shows the failure
   and the late answer, and whose conversation shows the delivery dead-lettered then resent;
4. screenshots under var/screenshots/ (e2e-*.png): the failed request's message page, the dead-letters page with
   its group, the overview with the partner's failing tile and the case page in French, the case page in Arabic;
5. an integration user's payload view is in the audit log page as a supervisor sees it.

One hub and one failed case are shared by the module's tests (a module fixture); the sandbox runs only while
the scenario needs it. Partners are tried twice before a delivery is dead-lettered (0.2 s apart), so the
failure comes within a second or two.

Run it alone: `.venv/bin/pytest -p no:xdist tests/test_console_scenario.py -q`."""
from __future__ import annotations

import re
import time

import httpx
import pytest
from sqlalchemy import select

from hub.monitor.i18n import translations
from hub.store.models import AuditEntry
from browser_support import screenshot
from conftest import PARTNERS, Sandbox, bearer, free_port, make_settings, serve_hub, wait_for, write_config
from support import register_citizen
from console_support import make_user

POST = "FR-PARIS"
LICENCE = "12/345673"  # the NARSA sandbox finds this licence authentic
QUICK_RETRY = {"max_attempts": 2, "base_delay_seconds": 0.2, "max_delay_seconds": 0.2}
SHOWN_WITHIN = 15  # seconds from the case's opening to its dead letter on the dead-letters page
SUBMIT = 'form[action="/monitor/login"] button[type="submit"]'


def say(lang: str, msgid: str, **values) -> str:
    text = translations(lang).gettext(msgid)
    return text % values if values else text


class Scenario:
    """The module's hub, its NARSA sandbox (not running until `start_narsa`) and the failed case."""

    def __init__(self, service, narsa: Sandbox):
        self.service, self.narsa = service, narsa
        self.url = service.url
        self.api = httpx.Client(base_url=self.url, timeout=30, headers=bearer(service.mint_token("administrator")))
        self.reference: str | None = None
        self.opened_at = 0.0
        self.people: dict[str, tuple[str, str]] = {}

    @property
    def request_id(self) -> str:
        return f"REGISTRY-{self.reference}"

    def person(self, role: str) -> tuple[str, str]:
        if role not in self.people:
            self.people[role] = make_user(self.service.hub.sessions, role)
        return self.people[role]

    def case(self) -> dict:
        return self.api.get(f"/api/v1/cases/{self.reference}").json()

    def close(self) -> None:
        self.narsa.stop()
        self.api.close()


def open_licence_case(url: str, token: str) -> str:
    """A consular agent of FR-PARIS registers a citizen and asks NARSA to authenticate their licence."""
    with httpx.Client(base_url=url, timeout=30, headers=bearer(token)) as agent:
        citizen = register_citizen(agent, post_code=POST, given_name_latin="Khadija", family_name_latin="Alaoui",
                                   given_name_arabic="خديجة", family_name_arabic="العلوي", birth_date="1979-03-02",
                                   sex="F", cnie="J123456")
        case = agent.post("/api/v1/cases/licence-authentication", json={
            "registration_id": citizen["registration_id"],
            "licence": {"number": LICENCE, "categories": ["B"], "issue_date": "2005-09-01"}})
        assert case.status_code == 201, case.text
        return case.json()["reference"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, databases, pki_dir):
    """A hub whose partners are tried twice, and a licence case opened while NARSA is down."""
    directory = tmp_path_factory.mktemp("scenario")
    database_url, drop = databases.create("sqlite", directory)
    ports = {code: free_port() for code in PARTNERS}
    settings = make_settings(directory, pki_dir, database_url, ports)
    settings = settings.replace(config_dir=write_config(directory / "config-quick", retry=QUICK_RETRY))
    serving = serve_hub(settings)
    service = next(serving)
    narsa = Sandbox(ports["NARSA"], service.url, pki_dir, directory / "sandbox", name="narsa")
    shared = Scenario(service, narsa)
    try:
        shared.opened_at = time.monotonic()
        shared.reference = open_licence_case(service.url, service.mint_token("consular_agent", post=POST))
        yield shared
    finally:
        shared.close()
        next(serving, None)
        drop()


# ---- the browser ------------------------------------------------------------------------------------------

def signed_in_page(browser_context, scenario: Scenario, role: str, **options):
    """A page of a fresh context (French unless `locale` says otherwise) signed in through the form as `role`."""
    context = browser_context.another(**options)
    page = context.new_page()
    context.problems.watch(page)
    username, password = scenario.person(role)
    page.goto(f"{scenario.url}/monitor/login")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click(SUBMIT)
    assert page.url == f"{scenario.url}/monitor/", f"signing in as a {role} landed on {page.url}"
    return page


def group_row(page, partner: str):
    """The dead-letters page's row of `partner`'s groups (each row: one partner and one reason)."""
    rows = page.locator("table.dead-letters tbody tr").filter(
        has=page.locator(f'td:first-child a[href="/monitor/partners/{partner}"]'))
    return rows


def cells(row) -> list[str]:
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def overview_shows_the_failure_on_the_tile_of(page, base: str, partner: str) -> None:
    """The overview's tile of `partner`: failing (unreachable, red), its dead letter counted and its last failure
    dead-lettered (the partner's reachability is asked in the background: the page is read again until known)."""
    tile = page.locator(f'article.tile[data-partner="{partner}"]')

    def checked():
        page.goto(f"{base}/monitor/")
        return tile.locator('[data-fig="reachable"]').get_attribute("data-value") == "false"
    wait_for(checked, 10, interval=0.5, what=f"the overview to find {partner} unreachable")
    assert tile.locator('[data-fig="status"]').get_attribute("data-value") == "red"
    assert tile.locator('[data-fig="dead_letters"]').get_attribute("value") == "1"
    reasons = tile.locator("ul.reasons").inner_text()
    assert say("fr", "unreachable") in reasons and say("fr", "dead letters waiting") in reasons
    assert say("fr", "dead-lettered") in tile.inner_text()
    screenshot(page, "e2e-overview-fr")


def test_a_failed_partner_shows_up_is_resent_from_the_console_and_the_case_finishes(scenario, browser_context):
    base = scenario.url
    operator = signed_in_page(browser_context, scenario, "integration")

    # the dead letter on the dead-letters page within seconds of the case's opening, grouped by partner and reason
    def shown():
        operator.goto(f"{base}/monitor/dead-letters")
        return group_row(operator, "NARSA").count() == 1
    wait_for(shown, SHOWN_WITHIN - (time.monotonic() - scenario.opened_at), interval=0.5,
             what="NARSA's dead letter on the dead-letters page")
    row = group_row(operator, "NARSA")
    key = row.get_attribute("data-group")
    partner, cause, count, first, last, actions = cells(row)
    assert partner == "NARSA" and count == "1" and "connection refused" in cause.lower(), cells(row)
    assert first == last and "(Africa/Casablanca)" in first
    assert row.locator("button").inner_text() == say("fr", "Resend the message")
    assert len(group_row(operator, "NARSA").all()) == 1 and operator.locator("table.dead-letters tbody tr").count() == 1

    failed = wait_for(lambda: (case := scenario.case())["status"] == "FAILED" and case, 10, what="the case to fail")
    assert [h["status"] for h in failed["history"]][-2:] == ["AWAITING_PARTNER", "FAILED"]
    assert "connection refused" in failed["history"][-1]["note"]
    screenshot(operator, "e2e-dead-letters-fr")

    # the group's page lists the request; the request's own page shows it dead, with its two attempts
    operator.click(f'tr[data-group="{key}"] a[href="/monitor/dead-letters/NARSA/{key}"]')
    operator.wait_for_url(f"**/monitor/dead-letters/NARSA/{key}")
    with operator.expect_navigation() as followed:
        operator.click(f'a[href="/monitor/messages/REGISTRY/{scenario.request_id}"]')
    assert followed.value.status == 200
    assert operator.url == f"{base}/monitor/messages/REGISTRY/{scenario.request_id}"
    assert say("fr", "dead") in operator.inner_text("main h1")
    delivery = operator.locator("article.delivery")
    assert delivery.count() == 1 and "NARSA" in delivery.locator("h3").inner_text()
    assert delivery.locator("table.attempts tbody tr.failed").count() == 2
    assert "connection refused" in delivery.locator("dd.error-text").inner_text().lower()
    screenshot(operator, "e2e-message-fr")

    # the partner's page: unreachable, one dead letter, failed attempts in the last 24 hours
    operator.goto(f"{base}/monitor/partners/NARSA")
    health = operator.locator("#health-title + p .badge")
    assert health.inner_text() == say("fr", "unreachable") and "state-bad" in health.get_attribute("class")
    assert operator.locator(f'a[href="/monitor/dead-letters?partner=NARSA"]').inner_text() == "1"
    assert say("fr", "%(delivered)s delivered, %(failed)s failed attempts", delivered="0", failed="2") in \
        operator.inner_text("main")

    overview_shows_the_failure_on_the_tile_of(operator, base, "NARSA")

    # NARSA is back: the group is resent from the dead-letters page, after the confirmation
    scenario.narsa.start()
    operator.goto(f"{base}/monitor/dead-letters")
    asked: list[str] = []

    def confirm(dialog):
        asked.append(dialog.message)
        dialog.accept()
    operator.on("dialog", confirm)
    with operator.expect_navigation():
        group_row(operator, "NARSA").locator("button").click()
    assert asked == [say("fr", "Resend the message of this group to %(partner)s?", partner="NARSA")]
    assert operator.url.startswith(f"{base}/monitor/dead-letters/NARSA/{key}?resent=1")
    assert operator.inner_text('[role="status"]').strip() == say("fr", "One message back in the outbox.")
    with scenario.service.hub.sessions() as session:
        resent = session.scalars(select(AuditEntry).where(AuditEntry.action == "RESEND",
                                                          AuditEntry.subject == scenario.request_id)).all()
    integration = scenario.person("integration")[0]
    assert [e.actor for e in resent] == [f"user {integration} (Test integration, integration)"]

    # the supervisor sees the case finish on its page: the failure and NARSA's late answer in its history
    supervisor = signed_in_page(browser_context, scenario, "supervisor")
    case_url = f"{base}/monitor/cases/{scenario.reference}"

    def finished():
        supervisor.goto(case_url)
        return supervisor.locator("h1 .case-status").get_attribute("title") == "AUTHENTIC"
    wait_for(finished, 30, interval=0.5, what="NARSA's late verdict on the case page")
    assert supervisor.locator("h1 .case-status").inner_text() == say("fr", "Authentic")
    history = supervisor.locator("table.history tbody tr")
    statuses = [history.nth(i).get_attribute("data-status") for i in range(history.count())]
    # the resend took the case back to waiting for NARSA, whose answer then closed it
    assert statuses == ["SUBMITTED", "AWAITING_PARTNER", "FAILED", "AWAITING_PARTNER", "AUTHENTIC"], statuses
    failure, reopened, answer = (history.nth(i).locator("td").all_inner_texts() for i in (2, 3, 4))
    assert failure[1] == say("fr", "Failed") and "connection refused" in failure[3]
    assert "resent by" in reopened[3] and "waiting for the partner's answer again" in reopened[3]
    assert answer[1:3] == [say("fr", "Authentic"), "NARSA"]
    dead = supervisor.locator('table.conversation tr[data-kind="DEAD_LETTERED"] td')
    assert dead.nth(1).inner_text() == say("fr", "To %(partner)s", partner="NARSA")
    assert dead.nth(3).inner_text().startswith(say("fr", "Dead-lettered"))  # in words, its code beside
    talk = supervisor.locator('table.conversation tr[data-partner="NARSA"]')
    kinds = [talk.nth(i).get_attribute("data-kind") for i in range(talk.count())]
    assert kinds.index("DEAD_LETTERED") < kinds.index("RESENT") < kinds.index("PARTNER_RECEIPT"), kinds
    assert supervisor.locator('tr[data-kind="NARSA_ATTESTATION"]').count() == 1  # the document NARSA sent
    screenshot(supervisor, "e2e-case-fr")
    with supervisor.expect_navigation() as followed:  # the conversation's links lead to the messages' pages
        supervisor.click(f'table.conversation tr[data-kind="RESENT"] a')
    assert followed.value.status == 200
    assert supervisor.url == f"{base}/monitor/messages/REGISTRY/{scenario.request_id}"
    assert say("fr", "delivered") in supervisor.inner_text("main h1")
    case = scenario.case()
    assert case["status"] == "AUTHENTIC" and case["partner_reference"].startswith("NARSA-")
    assert scenario.narsa.stats()["received"] == 1

    arabic = signed_in_page(browser_context, scenario, "supervisor", locale="ar")
    arabic.goto(case_url)
    assert arabic.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["ar", "rtl"]
    assert arabic.locator("h1 .case-status").inner_text() == say("ar", "Authentic")
    # dates keep their order in right-to-left text: the day first, as written, then the time and the zone
    opened = arabic.locator("table.history tbody tr").first.locator("td").first
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \(Africa/Casablanca\)", opened.inner_text().strip())
    day, clock = opened.evaluate(r"""td => {
        const walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
        let t; while ((t = walk.nextNode()) && !/\d{4}-\d{2}-\d{2} \d{2}:/.test(t.data)) {}
        const start = t.data.search(/\d{4}-/), r = document.createRange();
        const left = i => { r.setStart(t, i); r.setEnd(t, i + 1); return r.getBoundingClientRect().left; };
        return [left(start), left(start + 11)]; }""")
    assert day < clock, "the date reads backwards in the Arabic page"
    screenshot(arabic, "e2e-case-ar")


def test_a_payload_view_by_an_integration_user_is_in_the_audit_log_a_supervisor_reads(scenario, browser_context):
    base, message = scenario.url, f"/monitor/messages/REGISTRY/{scenario.request_id}"
    operator = signed_in_page(browser_context, scenario, "integration")
    operator.goto(base + message)
    with operator.expect_navigation():
        operator.click(f'nav.tabs a[href="{message}/payload/received"]')
    assert operator.locator("pre").first.inner_text().lstrip().startswith("<")  # the request's XML, shown
    integration = scenario.person("integration")[0]

    supervisor = signed_in_page(browser_context, scenario, "supervisor")
    supervisor.goto(f"{base}/monitor/audit")
    supervisor.select_option("#a-action", "PAYLOAD_VIEWED")
    supervisor.fill("#a-subject", scenario.request_id)
    with supervisor.expect_navigation():
        supervisor.click('form.filters button[type="submit"]')
    rows = supervisor.locator("table.audit tbody tr")
    assert rows.count() == 1, supervisor.inner_text("main")
    when, actor, action, subject, detail, digest, sealed = [t.strip() for t in rows.first.locator("td").all_inner_texts()]
    assert actor == f"user {integration} (Test integration, integration)"
    assert (action, subject) == ("PAYLOAD_VIEWED", scenario.request_id)
    assert re.fullmatch(r"[0-9a-f]{64}", digest), digest
    assert "(Africa/Casablanca)" in when
