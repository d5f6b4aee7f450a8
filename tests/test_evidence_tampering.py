"""Evidence against its own database administrator: each change an administrator can make in SQL fails
`hub evidence verify` (hub/evidence/chains.py, hub/evidence/checkpoints.py), on SQLite and PostgreSQL.

The data: two licence requests taken in by a hub in this process (no workers), two audit entries and a
repatriation case REFUSED, all sealed as `hub serve` seals them, then a signed checkpoint of the chains'
heads written to the checkpoint file and its copy. The attacks: the tail of `events` and `audit_log`
deleted; the seal columns emptied after an edit (verify does not seal them again; sealed again, the
checkpoint names them); a payload nulled with a fake PURGED event, purged_at and PURGE audit entry; a
case's status edited, a status appended to its history, a status of its history rewritten. verify is called as a function; one test runs `hub evidence verify` itself.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, insert, select, text, update

from hub.errors import HubError
from hub.evidence import audit
from hub.evidence.chains import seal_pending, verify_chains, write_checkpoint
from hub.evidence.checkpoints import primary_file
from hub.evidence.retention import retention_days
from hub.intake.door import Arrival
from hub.store.db import utcnow
from hub.store.models import AuditEntry, Event, Message
from registry import service
from registry.app import Registry
from registry.models import CaseEvent
from support import licence_request
from test_evidence import flat, run_hub_cli

pytestmark = pytest.mark.both_databases  # storage is the subject

REQUESTS = ("LIC-2026-000101", "LIC-2026-000102")


@pytest.fixture
def settings(settings, tmp_path):
    """A second checkpoint location, as an operator would set on storage the database's administrators
    cannot rewrite."""
    return settings.replace(evidence_checkpoint_copy=tmp_path / "worm" / "checkpoints.log")


@pytest.fixture
def hub(hub, settings):
    """The hub with the registry's case history as a chain, some evidence sealed and a checkpoint written."""
    hub.chained_histories.extend(Registry.chains)
    Registry(hub).load_reference_data()
    for reference in REQUESTS:
        hub.receive(Arrival("registry", data=licence_request(settings.pki_dir, reference=reference)))
    with hub.sessions.begin() as session:
        for action in ("TOKEN_CREATED", "TOKEN_REVOKED"):
            audit.record(session, actor="cli ops", action=action, subject="token 7")
        case = service.open_case(session, service="REPATRIATION", citizen=None, details={}, actor="agent",
                                 post_code="FR-PARIS")
        service.move_case(session, case=case, status="AWAITING_CLEARANCES", actor="hub")
        service.move_case(session, case=case, status="REFUSED", actor="SANTE", note="clearance refused")
    seal_pending(hub)
    write_checkpoint(hub)
    report = verify_chains(hub)
    assert report.ok and report.checkpoints and not report.errors, str(report)
    return hub


def _later(settings) -> dt.datetime:
    """A verification after every row written so far has had the time to be sealed."""
    return utcnow() + dt.timedelta(seconds=settings.evidence_unsealed_seconds + 1)


def _message(hub, reference: str) -> Message:
    with hub.sessions() as session:
        return session.scalars(select(Message).where(Message.message_id == f"REGISTRY-{reference}")).one()


def _last_seqs(hub, model, n: int) -> list[int]:
    with hub.sessions() as session:
        return list(session.scalars(select(model.chain_seq).order_by(model.chain_seq.desc()).limit(n)))


def test_a_deleted_tail_of_events_and_audit_log_fails_against_the_checkpoint_and_its_copy(hub, settings):
    events, entries = _last_seqs(hub, Event, 2), _last_seqs(hub, AuditEntry, 1)
    with hub.sessions.begin() as session:
        session.execute(delete(Event).where(Event.chain_seq.in_(events)))
        session.execute(delete(AuditEntry).where(AuditEntry.chain_seq.in_(entries)))
    report = verify_chains(hub)
    assert not report.ok
    timeline, audit_chain = report.chains["timeline"].failure, report.chains["audit"].failure
    assert timeline.chain == "timeline" and timeline.seq == min(events)
    assert f"the chain ends at entry {min(events) - 1}" in timeline.problem and "deleted" in timeline.problem
    assert audit_chain.chain == "audit" and f"has entry {entries[0]}" in audit_chain.problem
    assert report.chains["cases"].failure is None

    # the chains as they are now are not checkpointed over what they were
    with pytest.raises(HubError, match="no checkpoint written: audit chain: the chain ends at entry"):
        write_checkpoint(hub)

    # the file under the var dir removed too: the copy still says what the chains held
    primary_file(settings).unlink()
    report = verify_chains(hub)
    assert report.chains["timeline"].failure and str(settings.evidence_checkpoint_copy) in report.chains[
        "timeline"].failure.problem
    assert report.errors == [f"checkpoint file {primary_file(settings)} is missing or empty, while another "
                             "holds checkpoints"]

    # the command says so, naming the chain (the copy is not configured in its environment: the primary is
    # put back)
    primary_file(settings).write_text(settings.evidence_checkpoint_copy.read_text())
    result = run_hub_cli(settings, "evidence", "verify")
    assert result.returncode == 1, flat(result)
    assert f"evidence NOT verified: timeline chain, entry {min(events)}" in flat(result)
    assert "audit chain: FAILED" in flat(result) and "cases chain: OK" in flat(result)


def test_emptied_seals_after_an_edit_are_an_error_not_sealed_again_and_named_once_sealed_again(hub, settings):
    message = _message(hub, REQUESTS[0])
    with hub.sessions() as session:
        edited = session.scalars(select(Event).where(Event.message_pk == message.id, Event.kind == "QUEUED")).one()
    with hub.sessions.begin() as session:
        session.execute(update(Event).where(Event.id == edited.id).values(detail="for SANTE"))
        session.execute(update(Event).where(Event.chain_seq >= edited.chain_seq)
                        .values(chain_seq=None, content_hash=None, chain_hash=None))

    report = verify_chains(hub, now=_later(settings))
    failure = report.chains["timeline"].failure
    assert failure.seq == edited.chain_seq and failure.entry.startswith(f"events row {edited.id} ")
    assert "left unsealed" in failure.problem and "verify never seals" in failure.problem
    with hub.sessions() as session:  # verify sealed nothing
        assert session.scalar(select(Event.chain_seq).where(Event.id == edited.id)) is None
    # right away, before the rows are old enough to count as left unsealed, the checkpoint names the chain
    failure = verify_chains(hub).chains["timeline"].failure
    assert failure.seq == edited.chain_seq and "deleted" in failure.problem

    # the sealer of a running hub seals them again: the chain links up, the checkpoint does not
    seal_pending(hub)
    report = verify_chains(hub)
    failure = report.chains["timeline"].failure
    assert failure is not None and failure.entry == "compared with the last checkpoint"
    assert "were changed and sealed again" in failure.problem
    assert report.chains["audit"].failure is None


def test_a_payload_nulled_with_a_fake_purge_fails_naming_the_message(hub, settings):
    message = _message(hub, REQUESTS[1])
    now = utcnow()
    with hub.sessions.begin() as session:
        session.execute(update(Message).where(Message.id == message.id)
                        .values(received_bytes=None, canonical_bytes=None, purged_at=now))
        session.execute(insert(Event).values(message_pk=message.id, at=now, kind="PURGED",
                                             detail="retention: DELIVERED for 90 days; removed received bytes"))
    seal_pending(hub)  # as the running hub would: the fake PURGED event is sealed
    failure = verify_chains(hub).chains["timeline"].failure
    assert f"of message REGISTRY-{REQUESTS[1]} from REGISTRY" in failure.entry
    assert "no PURGE audit entry names this message" in failure.problem

    with hub.sessions.begin() as session:  # the audit entry forged too
        audit.record(session, actor="hub scheduler", action="PURGE", subject="1 messages",
                     detail=f"retention purge of payload bytes (hashes and receipts kept): REGISTRY/{message.message_id}")
    seal_pending(hub)
    failure = verify_chains(hub).chains["timeline"].failure
    assert f"of message REGISTRY-{REQUESTS[1]} from REGISTRY" in failure.entry
    days = retention_days(hub, "LicenceAuthenticationRequest")
    assert f"before the route's retention of {days} days since its receipt" in failure.problem


def test_a_case_status_edited_in_sql_fails_the_cases_chain(hub, settings):
    with hub.sessions() as session:
        case_id, reference = session.execute(text("SELECT id, reference FROM cases WHERE status = 'REFUSED'")).one()
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE cases SET status = 'AUTHORISED' WHERE id = :id"), {"id": case_id})
    failure = verify_chains(hub).chains["cases"].failure
    assert failure.chain == "cases"
    assert f"case {reference} has status AUTHORISED, but its history's last row" in failure.problem
    assert "records REFUSED" in failure.problem

    # a history row appended to match, sealed as the running hub would: REFUSED is final
    with hub.sessions.begin() as session:
        session.execute(insert(CaseEvent).values(case_id=case_id, at=utcnow(), status="AUTHORISED", actor="hub",
                                                 note="all clearances received"))
    seal_pending(hub)
    failure = verify_chains(hub).chains["cases"].failure
    assert f"case {reference}: its history goes from REFUSED to AUTHORISED" in failure.problem

    # the refusal itself rewritten
    with hub.sessions.begin() as session:
        session.execute(update(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.status == "REFUSED")
                        .values(status="AUTHORISED", actor="hub"))
    failure = verify_chains(hub).chains["cases"].failure
    assert failure.entry.startswith("case_events row ") and "no longer match what was sealed" in failure.problem


def test_a_checkpoint_line_changed_or_signed_by_another_key_is_an_error(hub, settings):
    path = primary_file(settings)
    line = path.read_text()
    path.write_text(line.replace('"timeline":[', '"timeline":[1', 1))
    report = verify_chains(hub)
    assert not report.ok and report.chains["timeline"].failure is None
    assert report.errors == [f"checkpoint file {path}, line 1: its signature does not verify with the hub's "
                             "certificate (the line was changed)"]
    path.write_text("not a checkpoint\n")
    assert "line 1: not a checkpoint line" in verify_chains(hub).errors[0]


def test_a_sealer_overtaken_by_another_seals_nothing_twice(hub, settings, monkeypatch):
    """Sealing hashes a batch outside the write lock (hub/evidence/chains.py `_seal_chain`), then writes it only
    if the chain's head is still the one it continued: here another sealer (a `hub evidence` command beside
    the running hub's job) seals the same rows between the read and the write."""
    import threading

    from hub.evidence import chains
    hub.receive(Arrival("registry", data=licence_request(settings.pki_dir, reference="LIC-2026-000103")))
    read, overtaken = chains._unsealed_events, {}

    def read_then_overtaken(session, limit):
        rows = read(session, limit)
        if rows and threading.current_thread() is threading.main_thread() and not overtaken:
            other = threading.Thread(target=lambda: overtaken.update(seal_pending(hub)))  # reads as it is
            other.start()
            other.join()
        return rows
    monkeypatch.setattr(chains, "_unsealed_events", read_then_overtaken)
    mine = seal_pending(hub)
    assert overtaken["timeline"] > 0 and mine["timeline"] == 0  # each row sealed once, by the first to write
    report = verify_chains(hub)
    assert report.ok and not report.errors, str(report)
    with hub.sessions() as session:
        assert session.scalar(select(Event.id).where(Event.chain_seq.is_(None)).limit(1)) is None
