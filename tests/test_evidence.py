"""The evidence archive on real data: a licence case through the NARSA sandbox, then
`hub evidence verify` (once as a real subprocess on the same database) passes; one byte changed in a stored
message, an event's detail changed, an event deleted -- each fails naming the entry. The exported
bundle is unzipped and its verify.sh run with /bin/sh: it verifies, and fails naming the file or entry
after one byte of the bundle is changed.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select, text

from conftest import wait_for
from support import hub_command, register_citizen
from hub.evidence.chains import ZERO_HASH, audit_line, event_line, link, seal_pending, sha256_text, verify_chains
from hub.store.models import Event, Message

pytestmark = pytest.mark.both_databases  # storage is the subject

FINAL = {"AUTHENTIC", "NOT_AUTHENTIC", "DISCREPANCY", "FAILED"}


def run_hub_cli(settings, *args: str, process: bool = False) -> subprocess.CompletedProcess:
    """`hub ARGS` on the same database, configuration and keys as `settings` (support.hub_command: in this
    process, or as a real subprocess with `process=True`)."""
    env = {k: v for k, v in settings.environment.items() if k.startswith("HUB_")}
    env.update({"HUB_VAR_DIR": str(settings.var_dir), "HUB_PKI_DIR": str(settings.pki_dir),
                "HUB_CONFIG_DIR": str(settings.config_dir), "HUB_DATABASE_URL": settings.database_url,
                "COLUMNS": "250"})
    return hub_command(*args, env=env, process=process, cwd=settings.var_dir.parent)


def flat(result: subprocess.CompletedProcess) -> str:
    return " ".join((result.stdout + result.stderr).split())


def licence_case(client, number: str = "12/345673") -> str:
    citizen = register_citizen(client, post_code="FR-PARIS", given_name_latin="Khadija", family_name_latin="Alaoui",
                               given_name_arabic="خديجة", family_name_arabic="العلوي", birth_date="1979-03-02",
                               sex="F", cnie="J123456")
    case = client.post("/api/v1/cases/licence-authentication", json={
        "registration_id": citizen["registration_id"],
        "licence": {"number": number, "categories": ["B"], "issue_date": "2005-09-01"}})
    assert case.status_code == 201, case.text
    reference = case.json()["reference"]
    wait_for(lambda: client.get(f"/api/v1/cases/{reference}").json()["status"] in FINAL, 30,
             what=f"case {reference} to reach a final state")
    # the answer's own deliveries (to the registry) are final too once the case is
    wait_for(lambda: all(m["state"] != "ACCEPTED" for m in
                         client.get("/api/v1/messages", params={"correlation_id": reference}).json()["items"]),
             20, what="every message of the case final")
    return reference


@pytest.fixture
def flow(running_hub, sandbox_factory, client):
    """One licence case, final, with every evidence row sealed; returns (hub, reference)."""
    sandbox_factory(running_hub.url)
    reference = licence_case(client)
    running_hub.seal_now()
    return running_hub.hub, reference


def _request(hub, reference: str) -> Message:
    with hub.sessions() as session:
        return session.scalars(select(Message).where(Message.message_id == f"REGISTRY-{reference}")).one()


def _event(hub, message: Message, kind: str) -> Event:
    with hub.sessions() as session:
        return session.scalars(select(Event).where(Event.message_pk == message.id, Event.kind == kind)).one()


def test_chain_format_is_the_documented_one(flow, client):
    hub, reference = flow
    with hub.sessions() as session:
        rows = session.execute(select(Event, Message.message_id, Message.sender, Message.correlation_id)
                               .join(Message, Event.message_pk == Message.id).order_by(Event.chain_seq)).all()
    previous = ZERO_HASH
    assert [r[0].chain_seq for r in rows] == list(range(1, len(rows) + 1))
    for event, message_id, sender, correlation_id in rows:
        line = event_line(event.chain_seq, event, message_id, sender, correlation_id,
                          None if event.delivery_id is None else _partner(hub, event.delivery_id))
        assert line.startswith(f'["event",{event.chain_seq},"') and line.isascii()
        assert event.content_hash == hashlib.sha256(line.encode()).hexdigest()
        assert event.chain_hash == hashlib.sha256((previous + event.content_hash).encode()).hexdigest()
        previous = event.chain_hash
    request = _request(hub, reference)
    assert _event(hub, request, "RECEIVED").digest == hashlib.sha256(request.received_bytes).hexdigest()
    assert _event(hub, request, "ACCEPTED").digest == hashlib.sha256(request.receipt).hexdigest()
    sent = _event(hub, request, "SENT")
    assert sent.digest and _event(hub, request, "PARTNER_RECEIPT").digest  # NARSA's acknowledgement, as it came

    # rows written after a sealing run are sealed by the next one, continuing the same chain
    before = verify_chains(hub).chains["timeline"]
    licence_case(client, "12/345678")
    seal_pending(hub)
    after = verify_chains(hub).chains["timeline"]
    assert before.failure is None and after.failure is None and after.unsealed == 0
    assert after.entries > before.entries and after.head_seq == after.entries


def _partner(hub, delivery_id: int) -> str:
    from hub.store.models import Delivery
    with hub.sessions() as session:
        return session.get(Delivery, delivery_id).partner


def test_verify_passes_then_names_a_changed_byte_a_changed_detail_and_a_deleted_event(flow, settings):
    hub, reference = flow
    result = run_hub_cli(settings, "evidence", "verify", process=True)  # a separate process reads what the hub wrote
    assert result.returncode == 0, flat(result)
    assert "timeline chain: OK" in flat(result) and "audit chain: OK" in flat(result)

    # one byte of the stored request, as received
    request = _request(hub, reference)
    received = _event(hub, request, "RECEIVED")
    altered = bytearray(request.received_bytes)
    altered[altered.index(b"12/345673")] = ord("7")
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE messages SET received_bytes = :b WHERE id = :id"),
                        {"b": bytes(altered), "id": request.id})
    result = run_hub_cli(settings, "evidence", "verify")
    assert result.returncode == 1, flat(result)
    output = flat(result)
    assert f"timeline chain, entry {received.chain_seq}: event {received.id} (RECEIVED) of message " \
           f"REGISTRY-{reference} from REGISTRY" in output
    assert "stored received bytes have sha256" in output and "changed since" in output
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE messages SET received_bytes = :b WHERE id = :id"),
                        {"b": request.received_bytes, "id": request.id})
    assert verify_chains(hub).ok

    # an event's detail
    queued = _event(hub, request, "QUEUED")
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE events SET detail = 'for SANTE' WHERE id = :id"), {"id": queued.id})
    report = verify_chains(hub)
    assert not report.ok
    failure = report.chains["timeline"].failure
    assert (failure.seq, failure.entry) == (queued.chain_seq, f"event {queued.id} (QUEUED) of message "
                                                              f"REGISTRY-{reference} from REGISTRY")
    assert "no longer match what was sealed" in failure.problem
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE events SET detail = :d WHERE id = :id"), {"d": queued.detail, "id": queued.id})
    assert verify_chains(hub).ok

    # an event deleted from the middle of the chain
    verified = _event(hub, request, "VERIFIED")
    with hub.sessions.begin() as session:
        session.execute(text("DELETE FROM events WHERE id = :id"), {"id": verified.id})
    result = run_hub_cli(settings, "evidence", "verify")
    assert result.returncode == 1
    assert f"timeline chain, entry {verified.chain_seq}: entry missing (deleted?): the chain jumps from entry " \
           f"{verified.chain_seq - 1} to entry {verified.chain_seq + 1}" in flat(result)


def _export(settings, reference: str, tmp_path: Path) -> Path:
    result = run_hub_cli(settings, "evidence", "export", reference, "--output", str(tmp_path / "out"))
    assert result.returncode == 0, flat(result)
    archive = tmp_path / "out" / f"evidence-{reference}.zip"
    assert archive.is_file() and str(archive.name) in flat(result)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")
    return tmp_path / "unzipped" / f"evidence-{reference}"


def run_verify_sh(bundle: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}  # standard tools only, nothing from the venv
    return subprocess.run(["/bin/sh", str(bundle / "verify.sh")], capture_output=True, text=True, timeout=120,
                          env=env, cwd="/")


def test_exported_bundle_verifies_offline_and_names_what_was_altered(flow, settings, tmp_path):
    hub, reference = flow
    bundle = _export(settings, reference, tmp_path)
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    request_dir = next(p for p in (bundle / "messages").iterdir() if p.name.endswith(f"REGISTRY-{reference}"))
    for name in ("received.xml", "received.document.xml", "receipt.xml", "sent-NARSA.xml",
                 "partner-receipt-NARSA.xml"):
        assert (request_dir / name).is_file(), (name, files)
    for name in ("certificates/hub.crt", "certificates/REGISTRY.crt", "certificates/NARSA.crt",
                 "certificates/ca-bundle.pem", "chain/statement.txt", "chain/statement.sig", "chain/entries.txt",
                 "chain/files.txt", "chain/signatures.txt", "SHA256SUMS", "verify.sh"):
        assert name in files
    assert (request_dir / "received.xml").read_bytes() == _request(hub, reference).received_bytes
    signed_files = (bundle / "chain/signatures.txt").read_text()
    assert "received.document.xml REGISTRY.crt" in signed_files and "sent-NARSA.xml hub.crt" in signed_files
    assert "NARSA.crt" in signed_files  # NARSA's signed answer (its callback, received)

    result = run_verify_sh(bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout and "FAILED" not in result.stdout
    unknown = run_hub_cli(settings, "evidence", "export", "LIC-0000-000000", "--output", str(tmp_path))
    assert unknown.returncode == 1 and "no message belongs to case 'LIC-0000-000000'" in flat(unknown)

    # one byte of a message file: named by SHA256SUMS and by its chain entry
    pristine = tmp_path / "pristine"
    shutil.copytree(bundle, pristine)
    received = request_dir / "received.xml"
    data = bytearray(received.read_bytes())
    data[data.index(b"12/345673")] = ord("7")
    received.write_bytes(bytes(data))
    result = run_verify_sh(bundle)
    assert result.returncode == 1
    relative = received.relative_to(bundle).as_posix()
    assert f"{relative}: FAILED" in result.stdout
    assert re.search(rf"FAILED: {re.escape(relative)}: sha256 [0-9a-f]{{64}} is not the digest sealed in chain entry "
                     r"\d+ \(file changed\)", result.stdout), result.stdout
    # ... also when SHA256SUMS is rewritten to match: the chain still names it
    sums = [f"{hashlib.sha256(bytes(data)).hexdigest()}  {relative}" if line.endswith(f"  {relative}") else line
            for line in (bundle / "SHA256SUMS").read_text().splitlines()]
    (bundle / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    result = run_verify_sh(bundle)
    assert result.returncode == 1 and "every file matches SHA256SUMS" in result.stdout
    assert f"FAILED: {relative}: sha256" in result.stdout

    # one byte of an entry's line (its detail): named by seq
    shutil.rmtree(bundle)
    shutil.copytree(pristine, bundle)
    lines = (bundle / "chain/entries.txt").read_text().splitlines()
    n, line = next((i, l) for i, l in enumerate(lines) if '"QUEUED"' in l)
    seq = line.split(" ", 1)[0]
    lines[n] = line.replace('"for NARSA', '"for SANTE')
    (bundle / "chain/entries.txt").write_text("\n".join(lines) + "\n")
    result = run_verify_sh(bundle)
    assert result.returncode == 1
    assert f"FAILED: chain entry {seq}: its line does not hash to its content hash (entry changed)" in result.stdout

    # one byte of the hub's signed statement
    shutil.rmtree(bundle)
    shutil.copytree(pristine, bundle)
    statement = (bundle / "chain/statement.txt").read_text()
    last = re.search(r"^last_seq=(\d+)$", statement, re.M).group(1)
    (bundle / "chain/statement.txt").write_text(statement.replace(f"last_seq={last}\n", f"last_seq={int(last) - 1}\n"))
    result = run_verify_sh(bundle)
    assert result.returncode == 1 and "FAILED: chain/statement.txt: the hub's signature does not verify" in result.stdout

    # a signed document whose bytes are changed where the chain does not vouch for them (the extracted copy)
    shutil.rmtree(bundle)
    shutil.copytree(pristine, bundle)
    document = request_dir / "received.document.xml"
    document.write_bytes(document.read_bytes().replace(b"12/345673", b"12/345677"))
    result = run_verify_sh(bundle)
    assert result.returncode == 1
    assert f"FAILED: {document.relative_to(bundle).as_posix()}: signature does not verify with " \
           f"certificates/REGISTRY.crt" in result.stdout


def _rewrite_sums(bundle: Path) -> None:
    """What an attacker does after changing files: SHA256SUMS made to match them again."""
    paths = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    (bundle / "SHA256SUMS").write_text("".join(f"{hashlib.sha256((bundle / p).read_bytes()).hexdigest()}  {p}\n"
                                               for p in paths if p != "SHA256SUMS"))


def _resign(bundle: Path, hub) -> None:
    """What only the hub can do: the statement's file hashes updated and signed again with its key."""
    from hub.evidence.export import sign_detached
    lines = []
    for line in (bundle / "chain/statement.txt").read_text().splitlines():
        if line.startswith("sha256:"):
            path = line[len("sha256:"):].split("=", 1)[0]
            line = f"sha256:{path}={hashlib.sha256((bundle / path).read_bytes()).hexdigest()}"
        lines.append(line)
    data = ("\n".join(lines) + "\n").encode()
    (bundle / "chain/statement.txt").write_bytes(data)
    (bundle / "chain/statement.sig").write_bytes(sign_detached(hub.signer.key, data))
    _rewrite_sums(bundle)


def _fresh(pristine: Path, bundle: Path) -> Path:
    shutil.rmtree(bundle)
    shutil.copytree(pristine, bundle)
    return bundle


def test_bundle_statement_is_signed_text_covering_the_lists_and_every_file_is_vouched_for(flow, settings, tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from hub.store.models import AuditEntry
    hub, reference = flow
    bundle = _export(settings, reference, tmp_path)
    pristine = tmp_path / "pristine"
    shutil.copytree(bundle, pristine)
    request_dir = next(p for p in (bundle / "messages").iterdir() if p.name.endswith(f"REGISTRY-{reference}"))
    relative = (request_dir / "received.xml").relative_to(bundle).as_posix()

    # the export is audited: who, which case, the zip's sha256
    archive = (tmp_path / "out" / f"evidence-{reference}.zip").read_bytes()
    with hub.sessions() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "EVIDENCE_EXPORTED")).all()
    assert entry.actor.startswith("cli ") and entry.subject == reference
    assert entry.digest == hashlib.sha256(archive).hexdigest() and entry.chain_seq is not None
    assert verify_chains(hub).ok

    # the statement: plain key=value lines, signed as they are (detached, with the hub's key)
    statement = (bundle / "chain/statement.txt").read_bytes()
    fields = dict(line.split("=", 1) for line in statement.decode("ascii").splitlines())
    assert fields["case"] == reference and fields["chain"] == "timeline"
    for path in ("chain/entries.txt", "chain/files.txt", "chain/signatures.txt", "certificates/hub.crt",
                 "certificates/NARSA.crt", "certificates/ca-bundle.pem"):
        assert fields[f"sha256:{path}"] == hashlib.sha256((bundle / path).read_bytes()).hexdigest(), path
    assert not (bundle / "chain/head.xml").exists()
    public = hub.signer.certificate.public_key()
    signature = (bundle / "chain/statement.sig").read_bytes()
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, statement, padding.PKCS1v15(), hashes.SHA256())
    else:
        public.verify(signature, statement, ec.ECDSA(hashes.SHA256()))

    # a second, fake value for a field the script reads: the signed bytes changed, and not one value
    for fake in (f"last_seq={int(fields['last_seq']) - 1}\n", f"<!-- -->last_seq ={fields['last_seq']}\n"):
        _fresh(pristine, bundle)
        (bundle / "chain/statement.txt").write_bytes(statement + fake.encode())
        _rewrite_sums(bundle)
        result = run_verify_sh(bundle)
        assert result.returncode == 1 and "FAILED: chain/statement.txt: the hub's signature does not verify" \
            in result.stdout, result.stdout
        if fake.startswith("last_seq="):  # read from the bytes as they are: two values are none
            assert "FAILED: chain/statement.txt: no single last_seq=<number> line" in result.stdout

    # a payload changed, its lines taken out of files.txt and signatures.txt, SHA256SUMS made to match:
    # the lists are no longer the ones the hub signed, and the file is vouched for by nothing
    _fresh(pristine, bundle)
    data = bytearray((bundle / relative).read_bytes())
    data[data.index(b"12/345673")] = ord("7")
    (bundle / relative).write_bytes(bytes(data))
    for name in ("files.txt", "signatures.txt"):
        listed = (bundle / "chain" / name).read_text().splitlines()
        (bundle / "chain" / name).write_text("".join(f"{l}\n" for l in listed if f"{relative}" not in l))
    _rewrite_sums(bundle)
    result = run_verify_sh(bundle)
    assert result.returncode == 1 and "every file matches SHA256SUMS" in result.stdout
    assert "FAILED: chain/files.txt: its sha256 differs from the one in the hub's signed statement" in result.stdout
    assert f"FAILED: {relative}: named neither in chain/files.txt nor in chain/signatures.txt" in result.stdout
    assert "VERIFIED: every" not in result.stdout

    # a certificate swapped for another (whose key would verify a forged signature)
    _fresh(pristine, bundle)
    (bundle / "certificates/NARSA.crt").write_bytes((bundle / "certificates/REGISTRY.crt").read_bytes())
    _rewrite_sums(bundle)
    result = run_verify_sh(bundle)
    assert result.returncode == 1
    assert "FAILED: certificates/NARSA.crt: its sha256 differs from the one in the hub's signed statement" in result.stdout

    # even a bundle the hub itself signed is refused when an entry's digest has no file, or a file
    # under messages/ is named by nothing
    _fresh(pristine, bundle)
    files = (bundle / "chain/files.txt").read_text().splitlines()
    received_seq = next(l.split(" ", 1)[0] for l in files if l.endswith(f" {relative}"))
    (bundle / "chain/files.txt").write_text("".join(f"{l}\n" for l in files if not l.endswith(f" {relative}")))
    (bundle / relative).unlink()
    (request_dir / "extra").mkdir()
    (request_dir / "extra" / "note.xml").write_bytes(b"<Note>trust me</Note>")
    _resign(bundle, hub)
    result = run_verify_sh(bundle)
    assert result.returncode == 1, result.stdout
    assert "ok: chain/statement.txt is signed by the hub" in result.stdout
    assert f"FAILED: chain entry {received_seq} (RECEIVED): it seals a digest, but chain/files.txt names no file " \
           f"for it" in result.stdout, result.stdout
    assert f"FAILED: {request_dir.relative_to(bundle).as_posix()}/extra/note.xml: named neither" in result.stdout


def test_a_null_digest_vouches_that_the_column_stays_empty(flow):
    """VERIFIED with a null digest: the message had no separate canonical bytes. Bytes put there later fail."""
    hub, reference = flow
    with hub.sessions() as session:
        rows = session.execute(select(Event, Message).join(Message, Event.message_pk == Message.id)
                               .where(Event.kind == "VERIFIED", Event.digest.is_(None))).all()
    assert rows, "the flow has a message without separate canonical bytes"
    event, message = rows[0]
    assert message.canonical_bytes is None
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE messages SET canonical_bytes = :b WHERE id = :id"),
                        {"b": b"<Forged/>", "id": message.id})
    failure = verify_chains(hub).chains["timeline"].failure
    assert failure is not None and failure.seq == event.chain_seq and "(VERIFIED)" in failure.entry
    assert "canonical bytes are stored" in failure.problem and "null digest" in failure.problem
    with hub.sessions.begin() as session:
        session.execute(text("UPDATE messages SET canonical_bytes = NULL WHERE id = :id"), {"id": message.id})
    assert verify_chains(hub).ok


def test_audit_line_is_the_documented_one():
    from types import SimpleNamespace
    import datetime as dt
    entry = SimpleNamespace(at=dt.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=dt.timezone.utc), actor="cli ana",
                            action="RESEND", subject="M-1", detail="é", digest=None)
    line = audit_line(7, entry)
    assert line == '["audit",7,"2026-01-02T03:04:05.006000+00:00","cli ana","RESEND","M-1","\\u00e9",null]'
    assert link(ZERO_HASH, sha256_text(line)) == hashlib.sha256((ZERO_HASH + sha256_text(line)).encode()).hexdigest()


# -- a streamed batch: a message whose bytes are kept in a file (hub/intake/files.py) -----------------------


def test_an_export_of_a_streamed_batch_includes_the_batch_file_and_verify_sh_fails_after_one_byte(
        hub, settings, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))  # bench/ is not an installed package
    from bench import cdg as bench_cdg
    from registry.app import Registry
    from registry.services import cdg_stream
    from registry.services import life_certificates as lc
    monkeypatch.setattr(lc, "MAX_ITEMS", 5)  # a small batch takes the streamed path
    registry = Registry(hub)
    hub.chained_histories.extend(Registry.chains)  # the case history is sealed and verified too
    registry.load_reference_data()
    bench_cdg.fill(hub, 12, 1)
    batch = lc.build_and_submit_batch(registry)
    kept = cdg_stream.batch_path(hub, batch)
    files = hub.message_files(f"REGISTRY-{batch}", sender="REGISTRY")
    assert files["received"].read_bytes() == kept.read_bytes()
    assert files["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
    seal_pending(hub)  # what `hub serve` does each second (verify never seals)
    report = verify_chains(hub)
    assert report.ok, str(report)

    # `hub evidence verify` checks the file's digest too
    original = files["received"].read_bytes()
    files["received"].write_bytes(original.replace(b"<Caisse>CNRA</Caisse>", b"<Caisse>RCAR</Caisse>", 1))
    result = run_hub_cli(settings, "evidence", "verify")
    assert result.returncode == 1 and "file of the received document" in flat(result), flat(result)
    files["received"].write_bytes(original)
    assert run_hub_cli(settings, "evidence", "verify").returncode == 0

    bundle = _export(settings, batch, tmp_path)
    folder = next(p for p in (bundle / "messages").iterdir() if p.name.endswith(f"REGISTRY-{batch}"))
    assert (folder / "received.xml").read_bytes() == original  # the batch file itself, 13 certificates and notices
    assert f"{folder.relative_to(bundle).as_posix()}/received.xml REGISTRY.crt" in \
        (bundle / "chain/signatures.txt").read_text()
    assert f"{folder.relative_to(bundle).as_posix()}/received.xml" in (bundle / "chain/files.txt").read_text()
    result = run_verify_sh(bundle)
    assert result.returncode == 0, result.stdout[-3000:]

    changed = bytearray((folder / "received.xml").read_bytes())
    at = changed.index(b"<NumeroPension>") + len(b"<NumeroPension>")
    changed[at] = ord("7") if changed[at] != ord("7") else ord("8")  # one byte of one certificate
    (folder / "received.xml").write_bytes(bytes(changed))
    result = run_verify_sh(bundle)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "received.xml: sha256" in result.stdout and "is not the digest sealed in chain entry" in result.stdout
    print(f"streamed batch {batch}: {len(original)} bytes exported with its case; one byte changed: "
          f"{result.stdout.strip().splitlines()[-1]}")

    # retention: once final and past its retention, the file goes too; the chain still verifies (the purge is
    # recorded), the digests and the receipt stay
    import datetime as dt

    from hub.evidence.retention import purge_expired
    from hub.store.models import Delivery
    with hub.sessions.begin() as session:
        message = session.scalars(select(Message).where(Message.message_id == f"REGISTRY-{batch}")).one()
        session.execute(Delivery.__table__.update().where(Delivery.message_pk == message.id).values(state="DEAD"))
        message.state = "DEAD"
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=4000)
    report = purge_expired(hub, now=later)
    assert f"REGISTRY/REGISTRY-{batch}" in report.purged and report.bytes_removed >= len(original)
    assert not files["received"].exists()
    seal_pending(hub)
    assert verify_chains(hub, now=later).ok
