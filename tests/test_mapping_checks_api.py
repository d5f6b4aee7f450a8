"""The mapping checks as integration staff reach them: POST /api/v1/mappings/{name}/test|preview|replay and
`hub mappings test|preview|replay|add-case`, on one shared hub holding a short stored history."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from hub.store.models import AuditEntry
from support import hub_command
from test_mapping_checks import NARSA, NO_COUNTRY, START, UPPER_GIVEN, changed, store_history, COUNTRY

pytestmark = pytest.mark.shared_hub
BASE = f"/api/v1/mappings/{NARSA}"
HISTORY = 40


@pytest.fixture
def history(running_hub):
    """The shared hub's stored licence requests (made once for the module)."""
    if not getattr(running_hub, "mapping_history", None):
        running_hub.mapping_history = store_history(running_hub.hub, HISTORY, start=START)
    return running_hub.mapping_history


def audit(running_hub, action: str) -> list[AuditEntry]:
    with running_hub.hub.sessions() as session:
        return session.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


def test_sample_cases_and_the_personal_data_check(client_as):
    staff = client_as("integration")
    active = staff.post(f"{BASE}/test")
    assert active.status_code == 200 and active.json()["passed"] and len(active.json()["cases"]) == 2

    upper = staff.post(f"{BASE}/test", json={"xslt": UPPER_GIVEN.decode()}).json()
    assert not upper["passed"] and "+    <Prenom>YOUSSEF</Prenom>" in upper["cases"][0]["diff"]

    reading = changed(COUNTRY, COUNTRY + b'<xsl:if test="//rep:Cause"><Note/></xsl:if>').decode()
    refused = staff.post(f"{BASE}/test", json={"xslt": reading}).json()
    assert not refused["passed"] and refused["personal_data"] == [
        "Cause: NARSA may not receive it, and the stylesheet reads it"]

    broken = staff.post(f"{BASE}/test", json={"xslt": "<xsl:stylesheet"}).json()
    assert not broken["passed"] and "line 1: is not well-formed" in broken["refused"]


def test_bad_requests_name_what_is_wrong(client_as, history):
    staff = client_as("integration")
    for name in ("narsa/nothing.to-narsa.xsl", "narsa/..%2F..%2Fconfig/services.yaml", "narsa"):
        assert staff.post(f"/api/v1/mappings/{name}/test").status_code == 404, name
    extra = staff.post(f"{BASE}/replay", json={"lasts": 5})
    assert extra.status_code == 422 and "lasts" in extra.json()["detail"]
    assert staff.post(f"{BASE}/replay", json={"last": 0}).status_code == 422
    window = staff.post(f"{BASE}/replay", json={"since": "2026-11-02T00:00:00", "until": "2026-11-01T00:00:00"})
    assert window.status_code == 400 and "since" in window.json()["detail"]
    both = staff.post(f"{BASE}/preview", json={"message_id": history[0], "document": "<a/>"})
    assert both.status_code == 400 and "message_id" in both.json()["detail"]
    assert staff.post(f"{BASE}/preview", json={"message_id": "NO-SUCH"}).status_code == 404
    nul = staff.post(f"{BASE}/preview", json={"message_id": "NO\u0000SUCH"})
    assert nul.status_code == 400 and "message_id" in nul.json()["detail"]
    malformed = staff.post(f"{BASE}/preview", json={"document": "<not-closed"})
    assert malformed.status_code == 400
    assert staff.post(f"{BASE}/preview", json={"document": "<a>\x00</a>"}).status_code in (400, 422)


def test_preview_on_a_stored_message_is_audited(running_hub, client_as, history):
    staff = client_as("integration")
    before = len(audit(running_hub, "MAPPING_PREVIEWED"))
    result = staff.post(f"{BASE}/preview", json={"message_id": history[3], "xslt": UPPER_GIVEN.decode()}).json()
    assert result["valid"] and result["identical"] is False and "<Prenom>YOUSSEF3</Prenom>" in result["output"]
    entries = audit(running_hub, "MAPPING_PREVIEWED")
    assert len(entries) == before + 1 and entries[-1].subject == NARSA
    assert entries[-1].detail == f"on message {history[3]}" and "integration" in entries[-1].actor

    document = (running_hub.hub.settings.mappings_dir /
                "narsa/cases/licence-request.to-narsa/authentic-with-cnie.input.xml").read_text(encoding="utf-8")
    uploaded = staff.post(f"{BASE}/preview", json={"document": document, "xslt": NO_COUNTRY.decode()}).json()
    assert not uploaded["valid"] and any("PaysResidence" in e for e in uploaded["schema_errors"])


def test_replay_over_the_stored_history_is_audited(running_hub, client_as, history):
    staff = client_as("administrator")
    report = staff.post(f"{BASE}/replay", json={"xslt": UPPER_GIVEN.decode(), "last": 25}).json()
    assert (report["messages"], report["identical"], report["different"], report["invalid"]) == (25, 0, 25, 0)
    assert report["diffs"][0]["message_id"] == history[-1] and report["per_second"] > 0
    same = staff.post(f"{BASE}/replay", json={}).json()
    assert same["messages"] == same["identical"] == HISTORY
    assert [e.detail for e in audit(running_hub, "MAPPING_REPLAYED")][-2:] == [
        "25 messages: 0 identical, 25 different, 0 invalid, 0 failed",
        f"{HISTORY} messages: {HISTORY} identical, 0 different, 0 invalid, 0 failed"]
    from hub.mappings import store
    with running_hub.hub.sessions() as session:  # a replay of a stored version is kept with it, for its activation
        active = store.active(session, NARSA)
        kept = store.last_replay(session, NARSA, active.number)
        assert (kept["messages"], kept["identical"]) == (HISTORY, HISTORY) and "administrator" in kept["actor"]


def cli_env(running_hub) -> dict[str, str]:
    settings = running_hub.hub.settings
    return {"HUB_VAR_DIR": str(settings.var_dir), "HUB_PKI_DIR": str(settings.pki_dir),
            "HUB_DATABASE_URL": settings.database_url, "HUB_CONFIG_DIR": str(settings.config_dir),
            "COLUMNS": "200"}


def test_the_command_line(running_hub, history, tmp_path):
    env = cli_env(running_hub)
    passed = hub_command("mappings", "test", NARSA, env=env)
    assert passed.returncode == 0 and "2/2 cases pass; personal data: respected" in passed.stdout

    version = tmp_path / "upper.xsl"
    version.write_bytes(UPPER_GIVEN)
    failed = hub_command("mappings", "test", NARSA, "--file", str(version), env=env)
    assert failed.returncode == 1 and "FAIL authentic-with-cnie" in failed.stdout
    assert "+    <Prenom>YOUSSEF</Prenom>" in failed.stdout

    replayed = hub_command("mappings", "replay", NARSA, "--file", str(version), "--last", "10", env=env)
    assert replayed.returncode == 0 and "10 messages" in replayed.stdout and "10 different" in replayed.stdout

    previewed = hub_command("mappings", "preview", NARSA, "--message", history[0], env=env)
    assert previewed.returncode == 0 and "same output as the active version" in previewed.stdout

    missing = hub_command("mappings", "preview", NARSA, "--message", "NO-SUCH", env=env)
    assert missing.returncode == 1 and "no message with id 'NO-SUCH'" in missing.stdout
    unknown = hub_command("mappings", "replay", "narsa/nothing.to-narsa.xsl", env=env)
    assert unknown.returncode == 1 and "no mapping" in unknown.stdout
