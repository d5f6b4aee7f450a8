"""The audit log: `hub messages resend` records RESEND with its actor, the hub records CONFIG_CHANGED
when it starts on a configuration that differs from the last one recorded (naming the files), the
audit chain is verified by `hub evidence verify`, and a changed entry is named."""
from __future__ import annotations

import pytest
import yaml
from sqlalchemy import select, text

from hub.evidence.chains import seal_pending, verify_chains
from hub.store.models import AuditEntry, Delivery, DeliveryState, Message, MessageState
from hub.delivery.operations import resend
from hub.engine import Hub
from hub.intake.door import Arrival
from support import licence_request
from test_evidence import flat, run_hub_cli

pytestmark = pytest.mark.both_databases  # storage is the subject


def _entries(hub, action: str) -> list[AuditEntry]:
    with hub.sessions() as session:
        return session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


def _dead_message(settings) -> tuple[Hub, str]:
    hub = Hub(settings)
    hub.migrate()
    receipt = hub.receive(Arrival("registry", data=licence_request(settings.pki_dir)))
    with hub.sessions.begin() as session:
        for delivery in session.scalars(select(Delivery)):
            delivery.state = DeliveryState.DEAD
        for message in session.scalars(select(Message)):
            message.state = MessageState.DEAD
    return hub, receipt.message_id


def test_resend_is_audited_with_its_actor_and_the_chain_names_a_changed_entry(settings):
    hub, message_id = _dead_message(settings)
    try:
        result = run_hub_cli(settings, "messages", "resend", message_id)
        assert result.returncode == 0, flat(result)
        [entry] = _entries(hub, "RESEND")
        assert entry.actor.startswith("cli ") and entry.subject == message_id
        assert "1 dead delivery back in the outbox: NARSA" in entry.detail
        assert resend(hub, message_id, actor="token abc (ops, integration)") == 0
        second = _entries(hub, "RESEND")[1]
        assert second.actor == "token abc (ops, integration)" and second.detail == "nothing was dead"

        result = run_hub_cli(settings, "evidence", "audit", "--action", "resend")
        assert result.returncode == 0 and message_id in flat(result) and "RESEND" in flat(result)
        seal_pending(hub)  # what `hub serve` does each second (verify never seals)
        result = run_hub_cli(settings, "evidence", "verify")
        assert result.returncode == 0 and "audit chain: OK: 2 entries" in flat(result), flat(result)

        [entry, _] = _entries(hub, "RESEND")
        with hub.sessions.begin() as session:
            session.execute(text("UPDATE audit_log SET actor = 'someone else' WHERE id = :id"), {"id": entry.id})
        result = run_hub_cli(settings, "evidence", "verify")
        assert result.returncode == 1
        assert f"audit chain, entry {entry.chain_seq}: audit entry {entry.id} (RESEND by someone else, " \
               f"{message_id}): its fields no longer match what was sealed" in flat(result)
    finally:
        hub.close()


def test_configuration_changes_are_recorded_at_start(settings):
    from hub.service import HubService

    def start() -> list[AuditEntry]:
        service = HubService(settings)
        try:
            return _entries(service.hub, "CONFIG_CHANGED")
        finally:
            service.hub.close()

    [first] = start()
    assert first.detail.startswith("first configuration recorded") and "partners/NARSA.yaml " in first.detail
    assert len(start()) == 1  # same configuration: nothing new
    path = settings.config_dir / "partners" / "NARSA.yaml"
    party = yaml.safe_load(path.read_text(encoding="utf-8"))
    party["timeout_seconds"] = 7
    path.write_text(yaml.safe_dump(party, allow_unicode=True, sort_keys=False), encoding="utf-8")
    entries = start()
    assert len(entries) == 2 and entries[1].detail.splitlines()[0] == "changed: partners/NARSA.yaml"
    assert entries[1].digest != first.digest
    hub = Hub(settings)
    try:
        seal_pending(hub)
        report = verify_chains(hub)
        assert report.ok and report.chains["audit"].entries == 2
    finally:
        hub.close()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_resend_of_a_purged_dead_message_is_a_conflict_not_a_not_found(settings):
    import datetime as dt
    from fastapi.testclient import TestClient
    from conftest import bearer, token_minter
    from hub.api.app import create_app
    from hub.errors import InputError, NotFound
    from hub.errors import PayloadPurged
    from hub.evidence.retention import purge_expired
    hub, message_id = _dead_message(settings)
    try:
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)
        assert purge_expired(hub, now=later).purged == [f"REGISTRY/{message_id}"]
        with pytest.raises(PayloadPurged) as raised:
            resend(hub, message_id)
        assert isinstance(raised.value, InputError) and not isinstance(raised.value, NotFound)
        assert (raised.value.status, raised.value.title) == (409, "Payload purged")
        assert "purged" in str(raised.value) and message_id in str(raised.value)

        app = create_app(hub)
        answer = TestClient(app).post(f"/api/v1/messages/{message_id}/resend",
                                      headers=bearer(token_minter(hub.sessions)("administrator")))
        assert answer.status_code == 409, answer.text
        assert answer.json()["title"] == "Payload purged" and "retention" in answer.json()["detail"]
        with hub.sessions() as session:  # nothing went back to the outbox
            assert {d.state for d in session.scalars(select(Delivery))} == {DeliveryState.DEAD}
    finally:
        hub.close()
