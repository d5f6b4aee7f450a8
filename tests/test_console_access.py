"""Signing in to the console: accounts, sessions, CSRF, lockout, the audit of each, and what each role reaches.
Over HTTP against a running hub (the same checks in a real browser: tests/test_console_browser.py)."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import select, update

from hub.access.accounts import LOCK_AFTER, check_password, create_user, disable_user, reset_password
from hub.access.sessions import resume
from hub.errors import AccountRequestInvalid
from hub.store.models import AuditEntry, ConsoleSession, User
from console_support import PASSWORD, ConsoleClient, make_user, sign_in
from support import hub_command

pytestmark = pytest.mark.shared_hub


def audit_entries(hub, action: str, subject: str) -> list[AuditEntry]:
    with hub.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.subject == subject)))


def test_a_person_signs_in_lands_on_the_overview_and_signs_out(running_hub):
    username, password = make_user(running_hub.hub.sessions, "supervisor")
    with httpx.Client(base_url=running_hub.url) as browser:
        assert browser.get("/monitor/").status_code == 303  # not signed in: to the sign-in page
        answer = sign_in(browser, username, password, next_path="/monitor/")
        assert answer.status_code == 303 and answer.headers["location"] == "/monitor/"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        page = browser.get("/monitor/")
        assert page.status_code == 200 and 'lang="fr"' in page.text and "Test supervisor" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        assert browser.post("/monitor/logout", data={"csrf_token": token}).status_code == 303
        assert browser.get("/monitor/").status_code == 303  # the session is over, server-side
    assert audit_entries(running_hub.hub, "LOGIN", username) and audit_entries(running_hub.hub, "LOGOUT", username)


def test_a_wrong_password_is_refused_audited_and_locks_after_repeated_failures(running_hub):
    username, password = make_user(running_hub.hub.sessions, "integration")
    with httpx.Client(base_url=running_hub.url) as browser:
        for _ in range(LOCK_AFTER):
            answer = sign_in(browser, username, "not the password at all")
            assert answer.status_code == 401 and "verrouillé" in answer.text  # one message for every failure
        locked = sign_in(browser, username, password)  # the right password, but locked now
        assert locked.status_code == 401 and "hub_session" not in locked.headers.get("set-cookie", "")
    assert len(audit_entries(running_hub.hub, "LOGIN_FAILED", username)) == LOCK_AFTER + 1
    assert len(audit_entries(running_hub.hub, "ACCOUNT_LOCKED", username)) == 1
    with running_hub.hub.sessions.begin() as session:  # the lock expires: the right password works again
        session.execute(update(User).where(User.username == username)
                        .values(locked_until=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)))
    ConsoleClient(running_hub.url, username, password).close()


def test_an_action_without_the_session_csrf_token_is_refused_and_changes_nothing(running_hub):
    username, _ = make_user(running_hub.hub.sessions, "supervisor")
    with ConsoleClient(running_hub.url, username) as browser:
        assert browser.post("/monitor/logout", data={}).status_code == 403
        assert browser.post("/monitor/logout", data={"csrf_token": "x" * 43}).status_code == 403
        assert browser.post("/monitor/logout", data={"csrf_token": browser.csrf},
                            headers={"Origin": "https://evil.example"}).status_code == 403
        assert browser.get("/monitor/").status_code == 200  # still signed in: nothing was done
    with httpx.Client(base_url=running_hub.url) as other:  # the sign-in form's own token is checked too
        assert other.post("/monitor/login", data={"username": username, "password": PASSWORD,
                                                  "csrf_token": "forged"}).status_code == 403


@pytest.mark.parametrize("cookie", ["", "nonsense", "0" * 32 + "." + "a" * 43, "\x00" * 10])
def test_a_forged_or_unknown_session_cookie_is_not_a_session(running_hub, cookie):
    assert resume(running_hub.hub, cookie) is None


def test_disabling_an_account_or_resetting_its_password_ends_its_sessions(running_hub):
    hub = running_hub.hub
    first, _ = make_user(hub.sessions, "supervisor")
    second, _ = make_user(hub.sessions, "supervisor")
    with ConsoleClient(running_hub.url, first) as a, ConsoleClient(running_hub.url, second) as b:
        with hub.sessions.begin() as session:
            disable_user(session, first)
            reset_password(session, second, "another long password")
        assert a.get("/monitor/").status_code == 303 and b.get("/monitor/").status_code == 303
    with hub.sessions.begin() as session:
        assert check_password(session, first, PASSWORD).user is None  # disabled
        assert check_password(session, second, "another long password").user is not None


def test_an_idle_session_expires(running_hub):
    username, _ = make_user(running_hub.hub.sessions, "supervisor")
    with ConsoleClient(running_hub.url, username) as browser:
        with running_hub.hub.sessions.begin() as session:
            user_id = session.scalar(select(User.id).where(User.username == username))
            session.execute(update(ConsoleSession).where(ConsoleSession.user_id == user_id)
                            .values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
        assert browser.get("/monitor/").status_code == 303


def test_the_next_page_after_signing_in_is_never_another_site(running_hub):
    username, password = make_user(running_hub.hub.sessions, "supervisor")
    for target in ("https://evil.example/", "//evil.example/monitor", "/api/v1/messages", "/monitor\\@evil"):
        with httpx.Client(base_url=running_hub.url) as browser:
            assert sign_in(browser, username, password, next_path=target).headers["location"] == "/monitor/"


def test_a_consular_agent_cannot_reach_what_their_role_may_not(running_hub):
    username, _ = make_user(running_hub.hub.sessions, "consular_agent", post="FR-PARIS")
    with ConsoleClient(running_hub.url, username) as agent:
        page = agent.get("/monitor/")
        assert page.status_code == 200 and "FR-PARIS" in page.text
        assert agent.get("/monitor/audit").status_code in (403, 404)


@pytest.mark.parametrize("changes, words", [
    ({"username": "A"}, "username"), ({"username": "ok.name", "role": "partner"}, "unknown role"),
    ({"password": "short"}, "at least"), ({"password": "long enough but \x00 nul"}, "NUL"),
    ({"role": "consular_agent"}, "post"), ({"post_code": "FR-PARIS"}, "only a consular_agent"),
    ({"name": ""}, "name")])
def test_an_account_asked_for_badly_is_refused_with_what_is_wrong(hub, changes, words):
    fields = {"username": "amina", "name": "Amina", "role": "supervisor", "password": PASSWORD,
              "created_by": "tests", **changes}
    with hub.sessions.begin() as session, pytest.raises(AccountRequestInvalid, match=words):
        create_user(session, **fields)


def test_the_users_command_creates_lists_disables_and_resets(running_hub):
    s = running_hub.hub.settings
    env = {"HUB_DATABASE_URL": s.database_url, "HUB_CONFIG_DIR": str(s.config_dir), "HUB_PKI_DIR": str(s.pki_dir),
           "HUB_VAR_DIR": str(s.var_dir), "COLUMNS": "200"}
    created = hub_command("users", "create", "--role", "consular_agent", "--username", "karim", "--name",
                          "Karim Benali", "--post", "fr-paris", env=env, stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stdout + created.stderr
    taken = hub_command("users", "create", "--role", "supervisor", "--username", "karim", "--name", "K",
                        env=env, stdin=PASSWORD + "\n")
    assert taken.returncode == 2 and "taken" in taken.stderr
    listed = hub_command("users", "list", env=env)
    assert "karim" in listed.stdout and "FR-PARIS" in listed.stdout and "active" in listed.stdout
    assert hub_command("users", "disable", "karim", env=env).returncode == 0
    assert "disabled" in hub_command("users", "list", env=env).stdout
    assert hub_command("users", "disable", "nobody", env=env).returncode == 1
    assert hub_command("users", "reset-password", "karim", env=env, stdin="new long password here\n").returncode == 0
