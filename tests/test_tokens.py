"""API tokens: `hub tokens create | list | revoke` against a running hub's database, stored hashed and shown
once, refused when missing, malformed, unknown, altered, expired or revoked; token changes audited.

The module's tests share one hub; the one that counts every token audited has a hub of its own."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select, update

from conftest import bearer
from hub.access.tokens import LAST_USED_RESOLUTION, Identity
from hub.api.auth import TokenCache
from hub.cli import tokens as tokens_cli
from hub.cli.main import main as hub_cli
from hub.store.models import ApiToken, AuditEntry

pytestmark = pytest.mark.shared_hub


@pytest.fixture
def cli_env(running_hub, monkeypatch):
    """The environment that points `hub` at the running hub's database and configuration."""
    s = running_hub.hub.settings
    for name, value in {"HUB_DATABASE_URL": s.database_url, "HUB_CONFIG_DIR": str(s.config_dir),
                        "HUB_PKI_DIR": str(s.pki_dir), "HUB_VAR_DIR": str(s.var_dir)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")  # the list's table, unwrapped
    # rich fixes a console's width when COLUMNS is set as it is made (a pytest-xdist worker's is): one made now
    monkeypatch.setattr(tokens_cli, "console", Console())
    return {**os.environ}


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = hub_cli(["tokens", *args])
    out, err = capsys.readouterr()
    return code, out, err


def audit(running_hub, action: str) -> list[AuditEntry]:
    with running_hub.hub.sessions() as session:
        return session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


@pytest.mark.private_hub  # the one token created and revoked is the only one audited
def test_created_once_listed_without_secret_and_revoked_for_good(running_hub, cli_env, capsys):
    code, out, err = run_cli(capsys, "create", "--role", "consular_agent", "--name", "Paris desk 3",
                             "--post", "FR-PARIS", "--expires-in-days", "30")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("hub_") and len(out.splitlines()) == 1  # stdout: the token alone
    assert "shown only once" in err and token not in err
    token_id, secret = token.split("_", 2)[1:]
    with running_hub.hub.sessions() as session:
        stored = session.scalars(select(ApiToken).where(ApiToken.token_id == token_id)).one()
        assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in str([getattr(stored, c.key) for c in ApiToken.__table__.columns])
        assert (stored.role, stored.post_code, stored.partner) == ("consular_agent", "FR-PARIS", None)
        assert dt.timedelta(days=29.9) < stored.expires_at - stored.created_at < dt.timedelta(days=30.1)
        assert stored.created_by.startswith("cli ")
    [created] = audit(running_hub, "TOKEN_CREATED")
    assert created.subject == token_id and created.actor.startswith("cli ") and secret not in created.detail

    with httpx.Client(base_url=running_hub.url, headers=bearer(token), timeout=10) as agent:
        assert agent.get("/api/v1/posts").status_code == 200
        code, out, _ = run_cli(capsys, "list")
        assert code == 0 and token_id in out and "Paris desk 3" in out and "active" in out and secret not in out
        code, out, _ = run_cli(capsys, "revoke", token_id)
        assert code == 0 and "revoked" in out
        refused = refused_within_a_cache_period(running_hub, lambda: agent.get("/api/v1/posts"))
        assert refused.status_code == 401 and "not valid" in refused.json()["detail"]
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    code, out, _ = run_cli(capsys, "list")
    assert "revoked" in out
    [revoked] = audit(running_hub, "TOKEN_REVOKED")
    assert revoked.subject == token_id and revoked.actor == created.actor
    code, _, err = run_cli(capsys, "revoke", "0123456789abcdef")
    assert code == 1 and "no token with id" in err


@pytest.mark.parametrize("args, says", [
    (["--role", "consular_agent", "--name", "x"], "give --post"),
    (["--role", "consular_agent", "--name", "x", "--post", "ZZ-NOWHERE"], "no consular post"),
    (["--role", "partner", "--name", "x"], "give --partner"),
    (["--role", "partner", "--name", "x", "--partner", "REGISTRY"], "no partner with code"),
    (["--role", "integration", "--name", "x", "--post", "FR-PARIS"], "only a consular_agent token"),
    (["--role", "supervisor", "--name", "x", "--partner", "NARSA"], "only a partner token"),
    (["--role", "administrator", "--name", "  "], "needs a name"),
])
def test_bad_requests_exit_2_with_the_reason(running_hub, cli_env, capsys, args, says):
    audited = [entry.id for entry in audit(running_hub, "TOKEN_CREATED")]
    code, out, err = run_cli(capsys, "create", *args)
    assert code == 2 and says in err and out == ""
    assert [entry.id for entry in audit(running_hub, "TOKEN_CREATED")] == audited  # nothing created


def test_unknown_role_and_bad_expiry_are_usage_errors(running_hub, cli_env, capsys):
    for args in (["--role", "superuser", "--name", "x"], ["--role", "integration", "--name", "x",
                                                           "--expires-in-days", "0"]):
        with pytest.raises(SystemExit) as exited:
            hub_cli(["tokens", "create", *args])
        assert exited.value.code == 2


def test_the_real_command_prints_a_working_partner_token(running_hub, cli_env):
    hub = Path(sys.executable).with_name("hub")
    done = subprocess.run([str(hub), "tokens", "create", "--role", "partner", "--name", "NARSA callbacks",
                           "--partner", "narsa"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with httpx.Client(base_url=running_hub.url, headers=bearer(done.stdout.strip()), timeout=10) as narsa:
        assert narsa.post("/api/v1/partners/NARSA/messages", content=b"<x/>",
                          headers={"Content-Type": "application/xml"}).status_code == 400  # in, then refused
        assert narsa.get("/api/v1/posts").status_code == 403


def test_missing_malformed_unknown_altered_and_expired_tokens_get_401(running_hub, anonymous, api_token):
    token = api_token("integration")
    token_id = token.split("_")[1]
    other_secret = api_token("integration").split("_", 2)[2]
    presented = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {token}"},
        "malformed": bearer("not-a-token"),
        "unknown id": bearer(f"hub_{'0' * 16}_{token.split('_', 2)[2]}"),
        "altered secret": bearer(token[:-1] + ("A" if token[-1] != "A" else "B")),
        "another token's secret": bearer(f"hub_{token_id}_{other_secret}"),
    }
    for what, headers in presented.items():
        response = anonymous.get("/api/v1/messages", headers=headers)
        assert response.status_code == 401, what
        assert response.headers["www-authenticate"].startswith("Bearer"), what
        assert token.split("_", 2)[2] not in response.text
    assert anonymous.get("/api/v1/messages", headers=bearer(token)).status_code == 200
    with running_hub.hub.sessions.begin() as session:
        session.execute(update(ApiToken).where(ApiToken.token_id == token_id)
                        .values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    expired = refused_within_a_cache_period(running_hub,
                                            lambda: anonymous.get("/api/v1/messages", headers=bearer(token)))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def refused_within_a_cache_period(running_hub, request):
    """The first 401 `request()` gets, asked until HUB_TOKEN_CACHE_SECONDS (and a margin) have passed since the
    change: a process reuses a token's successful check that long (hub/api/auth.py), never longer."""
    deadline = time.monotonic() + running_hub.hub.settings.token_cache_seconds + 0.5
    while True:
        response = request()
        if response.status_code == 401 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_a_token_check_is_reused_for_at_most_its_period():
    """TokenCache: a success is reused until its period ends, keyed by the token's hash, never a failure."""
    now = [100.0]
    cache = TokenCache(1.0, size=4, clock=lambda: now[0])
    agent = Identity(token_id="a" * 16, name="desk", role="consular_agent", post_code="FR-PARIS", partner=None)
    assert cache.get("hub_a_secret") is None
    cache.put("hub_a_secret", agent)
    assert cache.get("hub_a_secret") is agent and cache.get("hub_a_secreT") is None
    assert all("secret" not in repr(key) for key in cache._entries)
    now[0] += 0.99
    assert cache.get("hub_a_secret") is agent
    now[0] += 0.02
    assert cache.get("hub_a_secret") is None  # read again: a revocation made meanwhile is seen
    for n in range(10):  # bounded: the oldest go when full
        cache.put(f"hub_{n}_secret", agent)
    assert len(cache._entries) <= 4 and cache.get("hub_9_secret") is agent
    assert TokenCache(0).get("hub_a_secret") is None  # 0: every request reads the token
    cache.put("hub_slow_secret", agent, read_at=now[0] - 0.6)  # the check took 0.6 s after the row was read
    now[0] += 0.5
    assert cache.get("hub_slow_secret") is None  # its period ran from the reading, not from the end of the check


def test_last_used_is_recorded_at_most_once_a_minute(running_hub, anonymous, api_token):
    token = api_token("supervisor")
    token_id = token.split("_")[1]

    def last_used():
        with running_hub.hub.sessions() as session:
            return session.scalars(select(ApiToken.last_used_at).where(ApiToken.token_id == token_id)).one()
    assert last_used() is None
    anonymous.get("/api/v1/posts", headers=bearer(token))
    first = last_used()
    assert first is not None
    anonymous.get("/api/v1/posts", headers=bearer(token))
    assert last_used() == first  # within the minute: no write
    with running_hub.hub.sessions.begin() as session:
        session.execute(update(ApiToken).where(ApiToken.token_id == token_id)
                        .values(last_used_at=first - LAST_USED_RESOLUTION))
    time.sleep(running_hub.hub.settings.token_cache_seconds)  # the check reused meanwhile reads nothing
    anonymous.get("/api/v1/posts", headers=bearer(token))
    assert last_used() > first - LAST_USED_RESOLUTION
