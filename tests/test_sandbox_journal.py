"""The sandboxes' journal (sandbox/journal.py): what makes their deduplication durable.

A sandbox answers a request only once the request and its answer are synced to the journal; its
per-message files are written after, without a sync. So a crash may leave the files missing or cut
short, and the journal must rebuild them at the next start: the same message id then gets the same
answer bytes, and is not taken as new. Checked with the real SANTE sandbox, in process, on real files.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lxml import etree

from hub.settings import PROJECT_ROOT
from hub.xml.mapping import MappingSet
from hub.xml.safe import to_bytes
from sandbox.journal import HEADER, Journal
from sandbox.sante import SanteSandbox
from support import signer_for

CASE = PROJECT_ROOT / "mappings/sante/cases/health-clearance.to-sante/cardiac-arrest.input.xml"


def request(pki_dir: Path, number: int) -> tuple[str, bytes]:
    """(message id, a hub-signed DemandeAutorisationSanitaire)."""
    message_id = f"REGISTRY-REP-2026-{number:06d}"
    envelope = etree.fromstring(CASE.read_bytes().replace(b"REGISTRY-REP-2026-000005", message_id.encode()))
    document = MappingSet(PROJECT_ROOT / "mappings").apply("sante/health-clearance.to-sante.xsl", envelope)
    return message_id, to_bytes(signer_for(pki_dir, "hub").sign(document))


def test_records_are_read_back_in_order_up_to_a_torn_or_damaged_tail(tmp_path):
    path = tmp_path / "journal"
    journal = Journal(path)
    offsets = [journal.append(f"ID-{n}", b"<Demande/>" * n, b"<Avis/>" * n) for n in (1, 2, 3)]
    journal.sync(offsets[-1])
    journal.close()
    assert list(Journal.records(path)) == [(f"ID-{n}", b"<Demande/>" * n, b"<Avis/>" * n) for n in (1, 2, 3)]

    whole = path.read_bytes()
    path.write_bytes(whole[:offsets[2] - 5])  # the last record cut short, as by a crash while appending
    assert [key for key, _, _ in Journal.records(path)] == ["ID-1", "ID-2"]

    damaged = bytearray(whole)
    damaged[offsets[1] + HEADER.size + 2] ^= 0xFF  # a byte of the third record's key flipped
    path.write_bytes(bytes(damaged))
    assert [key for key, _, _ in Journal.records(path)] == ["ID-1", "ID-2"]


def test_a_sync_covers_every_record_appended_before_it(tmp_path):
    journal = Journal(tmp_path / "journal")
    first = journal.append("ID-1", b"a", b"b")
    second = journal.append("ID-2", b"c", b"d")
    journal.sync(first)
    assert journal._synced == second  # one fdatasync made both durable: the second request has nothing to wait for
    journal.close()


def test_files_lost_or_cut_short_by_a_crash_are_rebuilt_and_the_id_is_still_known(pki_dir, tmp_path):
    sante = SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path)
    (first_id, first), (second_id, second) = request(pki_dir, 1), request(pki_dir, 2)
    first_answer, second_answer = sante.handle(first), sante.handle(second)
    home = tmp_path / "SANTE"
    assert (home / "received" / f"{first_id}.xml").read_bytes() == first
    assert (home / "journal").stat().st_size > len(first) + len(second)

    # the crash: one message's files never written, the other's answer cut short
    (home / "received" / f"{first_id}.xml").unlink()
    (home / "acknowledged" / f"{first_id}.xml").unlink()
    (home / "acknowledged" / f"{second_id}.xml").write_bytes(second_answer[:40])

    restarted = SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path)
    assert (home / "journal").stat().st_size == 0  # replayed into the files, then emptied
    assert (home / "received" / f"{first_id}.xml").read_bytes() == first
    assert (home / "acknowledged" / f"{first_id}.xml").read_bytes() == first_answer
    assert (home / "acknowledged" / f"{second_id}.xml").read_bytes() == second_answer
    assert restarted.handle(first) == first_answer and restarted.handle(second) == second_answer
    assert restarted.stats()["duplicates"] == 2 and restarted.stats()["stored"] == 2

    # and what the restarted sandbox receives is journalled again, for the next restart
    third_id, third = request(pki_dir, 3)
    third_answer = restarted.handle(third)
    (home / "acknowledged" / f"{third_id}.xml").unlink()
    assert SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path).handle(third) == third_answer


def test_a_journal_grown_too_large_is_emptied_and_what_it_held_is_still_known(pki_dir, tmp_path):
    sante = SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path)
    (first_id, first), (second_id, second) = request(pki_dir, 1), request(pki_dir, 2)
    sante.journal_limit_bytes = len(first) + len(second)  # crossed by the second request with its answer
    first_answer = sante.handle(first)
    assert sante.journal.size > len(first)
    second_answer = sante.handle(second)
    assert sante.journal.size == 0 and (tmp_path / "SANTE" / "journal").stat().st_size == 0

    third_id, third = request(pki_dir, 3)
    third_answer = sante.handle(third)  # journalled afresh
    assert [key for key, _, _ in Journal.records(tmp_path / "SANTE" / "journal")] == [third_id]
    restarted = SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path)
    assert [restarted.handle(body) for body in (first, second, third)] == [first_answer, second_answer, third_answer]
    assert restarted.stats()["duplicates"] == 3


def test_journal_only_writes_no_file_and_still_knows_every_id_after_a_crash(pki_dir, tmp_path):
    """`--journal-only` (the benchmark's sandboxes): the journal is the store. A restart reads the answers back
    from it, and cuts off a torn tail, so that what is journalled after the restart is read back too."""
    sante = SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path, journal_only=True)
    (first_id, first), (second_id, second) = request(pki_dir, 1), request(pki_dir, 2)
    first_answer, second_answer = sante.handle(first), sante.handle(second)
    home = tmp_path / "SANTE"
    assert list((home / "received").iterdir()) == [] and list((home / "acknowledged").iterdir()) == []
    journal = home / "journal"
    with journal.open("ab") as torn:  # the crash: a record cut short while being appended (never answered)
        torn.write(HEADER.pack(b"SBJ1", 8, 100, 100, 0) + b"REGISTRY")
    sante.journal.close()

    restarted = SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path, journal_only=True)
    assert restarted.stats()["stored"] == 2
    assert restarted.handle(first) == first_answer and restarted.handle(second) == second_answer
    assert restarted.stats()["duplicates"] == 2
    third_id, third = request(pki_dir, 3)
    third_answer = restarted.handle(third)
    restarted.journal.close()
    assert [key for key, _, _ in Journal.records(journal)] == [first_id, second_id, third_id]
    again = SanteSandbox(pki_dir=pki_dir, data_dir=tmp_path, journal_only=True)
    assert again.handle(third) == third_answer and again.stats()["duplicates"] == 1
    assert list((home / "received").iterdir()) == []


def test_requests_handled_inline_on_the_loop_share_a_sync_and_answer_once_it_is_done(tmp_path, monkeypatch):
    """A sandbox handles requests inline on its event loop (sandbox/common.py run_work): a request waiting for
    the journal's sync must let the loop take the next ones, whose records the next sync covers."""
    import asyncio
    import os
    import time

    from hub.concurrency import run_inline

    syncs, real = [], os.fdatasync

    # a disk that takes 200 ms: requests arriving meanwhile must wait for the next sync (long enough for the other
    # nineteen to arrive during the first, on a machine busy with other tests: at 50 ms a busy one took four syncs)
    def slow_sync(fd):
        time.sleep(0.2)
        real(fd)
        syncs.append(time.monotonic())
    monkeypatch.setattr(os, "fdatasync", slow_sync)
    journal = Journal(tmp_path / "journal")

    def handle(n: int) -> float:
        journal.sync(journal.append(f"ID-{n}", b"<Demande/>", b"<Avis/>"))
        return time.monotonic()

    async def main():
        return await asyncio.gather(*(run_inline(handle, n) for n in range(20)))
    # a loop of its own on a thread of its own: another test in this worker (Playwright's synchronous API, for
    # one) can leave this thread marked as running an event loop, where asyncio.run refuses to start
    with ThreadPoolExecutor(1) as pool:
        answered = pool.submit(asyncio.run, main()).result()
    assert 1 <= len(syncs) <= 3, syncs  # 20 requests, one or two syncs: not one each
    assert all(at >= syncs[0] for at in answered)  # none answered before a sync covered it
    assert [key for key, _, _ in Journal.records(tmp_path / "journal")] == [f"ID-{n}" for n in range(20)]
