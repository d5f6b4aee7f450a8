"""`hub serve` killed with SIGKILL while messages are queued and in flight: nothing accepted is lost,
and the partner sees each message once (its deduplication absorbs the hub's redelivery)."""
from __future__ import annotations

import os

import httpx
import pytest

from conftest import bearer, free_port, serve_tokens, wait_for, write_config
from faults_support import HubProcess
from test_licence_flow import FINAL, open_case

pytestmark = pytest.mark.both_databases  # storage is the subject

CASES = 10


@pytest.mark.slow
def test_sigkill_with_queued_messages_loses_nothing_and_delivers_once(tmp_path, pki_dir, database_url, narsa_port,
                                                                       sandbox_factory):
    config = write_config(tmp_path / "config", narsa_url=f"http://127.0.0.1:{narsa_port}",
                          retry={"max_attempts": 20, "base_delay_seconds": 0.2, "max_delay_seconds": 1})
    env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_VAR_DIR": str(tmp_path / "var"),
           "HUB_PKI_DIR": str(pki_dir), "HUB_CONFIG_DIR": str(config), "HUB_LEASE_SECONDS": "3",
           "HUB_DELIVERY_WORKERS": "2", "HUB_PARTNER_CONCURRENCY": "2"}  # two in flight to NARSA
    hub = HubProcess(env, free_port(), tmp_path / "hub.log").start()
    mint = serve_tokens(hub.url, database_url)  # the sandbox's callbacks and this test need the hub's tokens
    admin = bearer(mint("administrator"))
    sandbox = sandbox_factory(hub.url)
    sandbox.behave(mode="slow", delay_seconds=1.5)  # deliveries pile up in the outbox, two in flight
    try:
        with httpx.Client(base_url=hub.url, timeout=10, headers=admin) as client:
            references = [open_case(client, f"12/34567{i % 7}") for i in range(CASES)]
            accepted = [client.get(f"/api/v1/cases/{r}").json()["status"] for r in references]
            assert accepted == ["AWAITING_PARTNER"] * CASES  # every request accepted before the crash
        wait_for(lambda: sandbox.stats()["received"] >= 1, 15, what="the first delivery in flight")
        hub.kill()
        received_before_restart = sandbox.stats()["received"]
        assert received_before_restart < CASES, "the crash came too late to leave messages queued"
        sandbox.behave(mode="normal")
        hub.start()
        with httpx.Client(base_url=hub.url, timeout=10, headers=admin) as client:
            def all_final():
                statuses = [client.get(f"/api/v1/cases/{r}").json()["status"] for r in references]
                return all(s in FINAL for s in statuses) and statuses
            statuses = wait_for(all_final, 60, interval=0.3, what="every case final after the restart")
            assert "FAILED" not in statuses
            messages = client.get("/api/v1/messages", params={"type": "LicenceAuthenticationRequest"}).json()
            assert messages["total"] == CASES and {m["state"] for m in messages["items"]} == {"DELIVERED"}
        stats = sandbox.stats()
        print(f"\ncrash test: {CASES} accepted, {received_before_restart} received before SIGKILL, "
              f"{stats['received']} distinct at the partner, {stats['duplicates']} redeliveries absorbed, "
              f"{stats['results_sent']} answers")
        assert stats["received"] == CASES            # every accepted message delivered...
        assert len(sandbox.received()) == CASES      # ...and processed once per message id
        assert stats["results_sent"] == CASES        # one answer each, no double effect
    finally:
        hub.stop()
