"""The mapping API for integration staff over real HTTP, and two `hub serve` processes on one database that
both pick up an activation made through one of them, without a restart."""
from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from sqlalchemy import select

from conftest import bearer, free_port, serve_tokens, wait_for, write_config
from faults_support import HubProcess
from hub.settings import PROJECT_ROOT

NARSA = "narsa/licence-request.to-narsa.xsl"
URL = f"/api/v1/mappings/{NARSA}"
ORIGINAL = (PROJECT_ROOT / "mappings" / NARSA).read_bytes()
RESTYLED = ORIGINAL.replace(b"<xsl:output", b"<!-- restyled -->\n  <xsl:output", 1)
BROKEN = ORIGINAL.replace(b"<Nom><xsl:value-of", b"<Nom>X<xsl:value-of", 1)
XML = {"Content-Type": "application/xml"}


@pytest.mark.private_hub
def test_integration_staff_add_activate_and_roll_back_a_version(client_as, running_hub):
    staff = client_as("integration")
    listed = {m["name"]: m for m in staff.get("/api/v1/mappings").json()["items"]}
    assert listed[NARSA]["active"]["number"] == 1 and listed[NARSA]["partner"] == "narsa"
    assert listed[NARSA]["direction"] == "to" and any("NARSA" in r for r in listed[NARSA]["routes"])
    schemas = {s["name"]: s["sha256"] for s in staff.get("/api/v1/mappings/schemas").json()["items"]}
    narsa_xsd = next(name for name in schemas if "narsa" in name)
    assert schemas[narsa_xsd] == hashlib.sha256((PROJECT_ROOT / "schemas" / narsa_xsd).read_bytes()).hexdigest()

    hostile = ORIGINAL.replace(b'<xsl:output', b'<xsl:include href="../../config/hub.yaml"/>\n  <xsl:output', 1)
    refused = staff.post(URL + "/versions", content=hostile, headers=XML, params={"comment": "sly"})
    assert refused.status_code == 400 and "outside the mapping's folder" in refused.json()["detail"]
    assert "line " in refused.json()["detail"]
    assert staff.post(URL + "/versions", content=b"", headers=XML).status_code == 400
    assert staff.post(URL + "/versions", content=RESTYLED, headers=XML,
                      params={"comment": "bad\x00"}).status_code in (400, 422)
    assert [v["number"] for v in staff.get(URL + "/versions").json()["items"]] == [1]

    added = staff.post(URL + "/versions", content=RESTYLED, headers=XML, params={"comment": "restyled"})
    assert added.status_code == 201, added.text
    assert added.json()["number"] == 2 and added.json()["sha256"] == hashlib.sha256(RESTYLED).hexdigest()
    assert staff.post(URL + "/versions", content=BROKEN, headers=XML).json()["number"] == 3
    assert staff.get(URL + "/versions/2").content == RESTYLED
    diff = staff.get(URL + "/diff", params={"from": 1, "to": 2}).text
    assert "+  <!-- restyled -->" in diff and "version 1" in diff

    failing = staff.post(URL + "/activate", json={"version": 3, "reason": "try"})
    assert failing.status_code == 409 and "fails its checks" in failing.json()["detail"]
    assert staff.post(URL + "/activate", json={"version": 7, "reason": "try"}).status_code == 409
    assert staff.post(URL + "/activate", json={"version": 1, "reason": "try"}).status_code == 409
    assert staff.post(URL + "/activate", json={"version": 2, "reason": "x", "expected_active": 3}).status_code == 409
    assert staff.post(URL + "/activate", json={"version": 2}).status_code == 422  # the reason is required
    assert staff.get(URL).json()["active"]["number"] == 1

    from hub.mappings import store
    with running_hub.hub.sessions.begin() as session:
        store.record_replay(session, NARSA, 2, actor="cli amina", messages=300, identical=298, different=2, invalid=0)
    activated = staff.post(URL + "/activate", json={"version": 2, "reason": "new layout", "expected_active": 1})
    assert activated.status_code == 200, activated.text
    assert activated.json()["last_replay"]["different"] == 2  # the activation shows the last replay
    shown = staff.get(URL).json()
    assert shown["active"]["number"] == 2 and shown["in_use_here"] == hashlib.sha256(RESTYLED).hexdigest()
    assert shown["last_change"]["reason"] == "new layout" and staff.token[4:20] in shown["last_change"]["actor"]

    rolled = staff.post(URL + "/rollback", json={"reason": "partner complained"})
    assert rolled.status_code == 200 and rolled.json()["number"] == 1
    assert staff.get(URL).json()["in_use_here"] == hashlib.sha256(ORIGINAL).hexdigest()
    from hub.store.models import AuditEntry
    with running_hub.hub.sessions() as session:
        entries = session.execute(select(AuditEntry.action, AuditEntry.detail, AuditEntry.actor)
                                  .where(AuditEntry.subject == NARSA).order_by(AuditEntry.id)).all()
    assert [(a, d) for a, d, _ in entries] == [
        ("MAPPING_VERSION_ADDED", "version 2: restyled"), ("MAPPING_VERSION_ADDED", "version 3: "),
        ("MAPPING_ACTIVATED", "version 1 -> 2: new layout"),
        ("MAPPING_ROLLED_BACK", "version 2 -> 1: partner complained")]
    assert all("integration" in actor for _, _, actor in entries)
    assert client_as("supervisor").get("/api/v1/mappings").status_code == 403
    assert staff.get("/api/v1/mappings/narsa/nothing.xsl").status_code == 404


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_hub_processes_both_pick_up_an_activation_without_restart(tmp_path, pki_dir, database_url):
    config = write_config(tmp_path / "config", narsa_url="http://127.0.0.1:9")
    env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_PKI_DIR": str(pki_dir), "HUB_CONFIG_DIR": str(config),
           "HUB_DELIVERY_WORKERS": "1"}
    hubs = [HubProcess({**env, "HUB_VAR_DIR": str(tmp_path / f"var{i}")}, free_port(), tmp_path / f"hub{i}.log")
            for i in range(2)]
    try:
        for process in hubs:
            process.start()
        mint = serve_tokens(hubs[0].url, database_url)
        staff = bearer(mint("integration"))
        first, second = (httpx.Client(base_url=h.url, timeout=15, headers=staff) for h in hubs)
        original, restyled = hashlib.sha256(ORIGINAL).hexdigest(), hashlib.sha256(RESTYLED).hexdigest()
        assert [c.get(URL).json()["in_use_here"] for c in (first, second)] == [original, original]
        assert first.post(URL + "/versions", content=RESTYLED, headers=XML).status_code == 201
        assert first.post(URL + "/activate", json={"version": 2, "reason": "live"}).status_code == 200
        assert first.get(URL).json()["in_use_here"] == restyled  # at once where it was made
        wait_for(lambda: second.get(URL).json()["in_use_here"] == restyled, 10, what="the second process to follow")
        assert second.post(URL + "/rollback", json={"reason": "back"}).status_code == 200
        wait_for(lambda: first.get(URL).json()["in_use_here"] == original, 10, what="the first process to follow")
    finally:
        for process in hubs:
            process.stop()
