"""`hub demo --serve` signs people in to the console: one account per role, each with a password of its own
(demo/run.py create_logins; the demo itself is run by `make demo`, the console in a browser by
tests/test_console_browser.py)."""
from __future__ import annotations

from sqlalchemy import select

from demo.run import create_logins
from hub.access.accounts import check_password
from hub.access.tokens import HUMAN_ROLES
from hub.store.models import AuditEntry


def test_the_demo_makes_one_login_per_role_each_signing_in_as_that_role(hub):
    logins = create_logins(hub, "FR-PARIS")
    assert sorted(login["role"] for login in logins) == sorted(HUMAN_ROLES)
    assert {login["username"] for login in logins} == {"supervisor", "integration", "agent.paris", "admin"}
    assert len({login["password"] for login in logins}) == len(logins)  # a password each, random
    with hub.sessions.begin() as session:
        for login in logins:
            signed = check_password(session, login["username"], login["password"]).user
            assert signed is not None and signed.role == login["role"]
            assert signed.post_code == ("FR-PARIS" if login["role"] == "consular_agent" else None) == login["post"]
        created = session.scalars(select(AuditEntry.subject).where(AuditEntry.action == "USER_CREATED")).all()
    assert sorted(created) == sorted(login["username"] for login in logins)
