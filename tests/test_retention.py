"""Retention: a final message past its route's retention loses its payload bytes (received, canonical,
sent); purged_at is set, a PURGED event joins the chain, hashes and receipts stay, and
`hub evidence verify` still passes -- while bytes missing WITHOUT a recorded purge fail it. The exported
bundle of a purged case still verifies offline. Short retention: the route says 1 day and the test
moves the messages' last change and their evidence 2 days back, sealed again as if written then
(the clock is the database's, no sleeping)."""
from __future__ import annotations

import datetime as dt

import pytest
import yaml
from sqlalchemy import select, text

from hub.evidence import chains as evidence
from hub.evidence.chains import verify_chains
from hub.store.models import AuditEntry, Delivery, Event, Message
from hub.evidence.retention import purge_expired, retention_days
from hub.intake.door import Arrival
from test_evidence import flat, licence_case, run_hub_cli, run_verify_sh, _export

pytestmark = pytest.mark.both_databases  # storage is the subject


@pytest.fixture
def settings(settings):
    """LicenceAuthenticationRequest kept 1 day; every other type the default (365 days)."""
    path = next(p for p in (settings.config_dir / "routes").glob("*.yaml") if "LicenceAuthenticationRequest" in p.read_text())
    routes = yaml.safe_load(path.read_text(encoding="utf-8"))
    for route in routes["routes"]:
        if route["type"] == "LicenceAuthenticationRequest":
            route["retention_days"] = 1
    path.write_text(yaml.safe_dump(routes, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return settings


def _age(hub, days: int) -> None:
    """The messages' last change `days` ago; those whose retention is shorter were received then too (verify
    checks a purge against the sealed time of receipt, so their RECEIVED events move back and the timeline is
    sealed again; nothing else moves: the certificates of the bundle must be valid when the other entries were
    recorded).

    The timeline is sealed again in the same transaction, under the chain's lock: a running hub's sealer that
    read the rows before the change then finds another head and reads them again, where a commit of unsealed
    rows would have let it seal the old times over an empty chain."""
    back = dt.timedelta(days=days)
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE messages SET updated_at = :t"),
                        {"t": dt.datetime.now(dt.timezone.utc) - back})
        evidence._lock(session, "timeline")
        for event, kind in session.execute(select(Event, Message.type).join(Message, Event.message_pk == Message.id)):
            if event.kind == "RECEIVED" and retention_days(hub, kind) < days:
                event.at -= back
            event.chain_seq, event.content_hash, event.chain_hash = None, None, None
        session.flush()
        rows = evidence._unsealed_events(session, limit=1_000_000)
        evidence.write_seals(session, Event.__table__, evidence.chained((0, evidence.ZERO_HASH), rows,
                                                                        evidence._event_line))


def _messages(hub) -> dict[str, Message]:
    with hub.sessions() as session:
        return {m.type: m for m in session.scalars(select(Message))}


def test_purge_keeps_hashes_and_receipts_and_the_chain_verifies(running_hub, sandbox_factory, client, settings,
                                                               tmp_path):
    hub = running_hub.hub
    sandbox_factory(running_hub.url)
    reference = licence_case(client)
    assert retention_days(hub, "LicenceAuthenticationRequest") == 1
    assert retention_days(hub, "LicenceAuthenticationResult") == settings.default_retention_days == 365
    assert purge_expired(hub).purged == []  # final for less than a day: nothing yet

    _age(hub, 2)
    result = run_hub_cli(settings, "evidence", "purge", "--dry-run")
    assert result.returncode == 0, flat(result)
    assert "would purge 1 message(s)" in flat(result) and f"REGISTRY/REGISTRY-{reference}" in flat(result)
    assert _messages(hub)["LicenceAuthenticationRequest"].received_bytes is not None

    result = run_hub_cli(settings, "evidence", "purge")
    assert result.returncode == 0, flat(result)
    assert "purged 1 message(s)" in flat(result)
    messages = _messages(hub)
    request, answer = messages["LicenceAuthenticationRequest"], messages["LicenceAuthenticationResult"]
    assert request.received_bytes is None and request.canonical_bytes is None and request.purged_at is not None
    assert request.receipt and request.digest  # the hub's signed receipt and the hash stay
    assert answer.received_bytes is not None and answer.purged_at is None  # 365 days for this type
    with hub.sessions() as session:
        [delivery] = session.scalars(select(Delivery).where(Delivery.message_pk == request.id)).all()
        assert delivery.sent_bytes is None and delivery.partner_receipt  # NARSA's receipt kept as it came
        [purged] = session.scalars(select(Event).where(Event.message_pk == request.id, Event.kind == "PURGED")).all()
        assert purged.chain_seq is not None and "received bytes sha256" in purged.detail
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "PURGE")).all()
        assert entry.actor.startswith("cli ") and f"REGISTRY-{reference}" in entry.detail

    result = run_hub_cli(settings, "evidence", "verify")
    assert result.returncode == 0, flat(result)
    assert "purged by retention" in flat(result)
    assert purge_expired(hub).purged == []  # idempotent

    # the bundle of a purged case still verifies offline: entries and receipts, no payload
    bundle = _export(settings, reference, tmp_path)
    request_dir = next(p for p in (bundle / "messages").iterdir() if p.name.endswith(f"REGISTRY-{reference}"))
    assert not (request_dir / "received.xml").exists() and (request_dir / "receipt.xml").exists()
    verified = run_verify_sh(bundle)
    assert verified.returncode == 0, verified.stdout

    # bytes gone WITHOUT a recorded purge: named
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE messages SET received_bytes = NULL WHERE id = :id"), {"id": answer.id})
        received = session.scalars(select(Event).where(Event.message_pk == answer.id,
                                                       Event.kind == "RECEIVED")).one()
    report = verify_chains(hub)
    failure = report.chains["timeline"].failure
    assert failure.seq == received.chain_seq and "RECEIVED" in failure.entry
    assert "missing from the store, and no retention purge of this message is recorded" in failure.problem


def test_messages_not_final_are_never_purged(settings):
    from hub.engine import Hub
    from support import licence_request
    hub = Hub(settings)
    hub.migrate()
    try:
        # ACCEPTED, no worker runs: stays pending
        hub.receive(Arrival("registry", data=licence_request(settings.pki_dir)))
        _age(hub, 30)
        assert purge_expired(hub).purged == []
        assert _messages(hub)["LicenceAuthenticationRequest"].received_bytes is not None
        report = purge_expired(hub, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400))
        assert report.purged == []
    finally:
        hub.close()


def test_a_purge_committed_while_verify_walks_the_chain_is_found(running_hub, sandbox_factory, client, monkeypatch):
    """The purge commits after the walk began (here: after its first entry): the missing bytes it leaves
    are checked against the message's PURGED entry when they are met, not against a list read before."""
    import hub.evidence.chains as evidence
    hub = running_hub.hub
    sandbox_factory(running_hub.url)
    reference = licence_case(client)
    running_hub.seal_now()
    _age(hub, 2)
    monkeypatch.setattr(evidence, "_BATCH", 1)  # one entry per batch: the purge lands between entries
    purged: list[str] = []

    def purge_once(chain: str, done: int, total: int) -> None:
        if chain == "timeline" and done == 1 and not purged:
            purged.extend(purge_expired(hub).purged)

    report = verify_chains(hub, progress=purge_once)
    assert purged == [f"REGISTRY/REGISTRY-{reference}"]
    assert report.ok, str(report)
    assert report.chains["timeline"].purged >= 1  # the bytes sent to NARSA, met after the purge


def test_purge_query_locks_its_candidates_and_skips_locked_ones():
    from sqlalchemy.dialects import postgresql
    from hub.evidence.retention import candidate_query
    sql = str(candidate_query(0, dt.datetime.now(dt.timezone.utc)).compile(dialect=postgresql.dialect()))
    assert sql.rstrip().endswith("FOR UPDATE SKIP LOCKED"), sql


def _dead(settings):
    from hub.engine import Hub
    from support import licence_request
    hub = Hub(settings)
    hub.migrate()
    hub.receive(Arrival("registry", data=licence_request(settings.pki_dir)))
    with hub.sessions.begin() as session:
        for delivery in session.scalars(select(Delivery)):
            delivery.state = "DEAD"
        for message in session.scalars(select(Message)):
            message.state = "DEAD"
    _age(hub, 30)
    return hub


def test_a_message_with_a_delivery_still_pending_is_not_purged(settings):
    """DEAD with a delivery PENDING again (a resend that committed after the candidates were chosen, or
    another recipient still being retried): its bytes are still needed, the purge leaves it."""
    hub = _dead(settings)
    try:
        with hub.sessions.begin() as session:
            session.execute(text("UPDATE deliveries SET state = 'PENDING'"))
        assert purge_expired(hub).purged == []
        assert _messages(hub)["LicenceAuthenticationRequest"].received_bytes is not None
        with hub.sessions.begin() as session:
            session.execute(text("UPDATE deliveries SET state = 'DEAD'"))
        assert len(purge_expired(hub).purged) == 1
    finally:
        hub.close()


def test_the_purge_skips_a_message_whose_row_a_resend_holds(settings):
    import threading
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises its writers (BEGIN IMMEDIATE): there is no row lock to skip")
    hub = _dead(settings)
    try:
        result: dict = {}
        with hub.engine.connect() as other:
            held = other.begin()
            other.execute(text("SELECT id FROM messages FOR UPDATE"))  # what resend() holds until it commits
            worker = threading.Thread(target=lambda: result.setdefault("report", purge_expired(hub)), daemon=True)
            worker.start()
            worker.join(10)
            waited = worker.is_alive()
            held.rollback()
            worker.join(30)
        assert not waited, "the purge waited for the row a resend holds instead of skipping it"
        assert result["report"].purged == []
        assert len(purge_expired(hub).purged) == 1  # once the row is free
    finally:
        hub.close()
