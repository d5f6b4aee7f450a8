"""`hub evidence export CASE`: one zip per case that a third party checks offline with standard tools.

    evidence-<case>/
      README.txt              what is inside and how to check it
      verify.sh               the check: sh, sha256sum, openssl, xmlsec1 (plus sed, grep, cut)
      SHA256SUMS              sha256 of every other file (`sha256sum -c SHA256SUMS`)
      certificates/           hub.crt, each party's pinned certificate(s) <PARTY>.crt, ca-bundle.pem
      messages/NN-<id>/       received.xml (as received; for a document kept in a file, that file, copied
                              from the engine's file store in chunks), canonical.xml (a partner document mapped in),
                              receipt.xml (the hub's signed receipt), sent-<PARTNER>.xml (as sent),
                              partner-receipt-<PARTNER>.xml (the partner's answer as it arrived), and
                              *.document.xml: a signed business document taken out of its envelope,
                              because xmlsec1 resolves Reference URI="" to the whole file
      chain/entries.txt       the timeline chain from the case's first entry to its last, one line each:
                              "seq content_hash chain_hash [canonical line]"; the canonical line (see
                              hub/evidence/chains.py) only for the case's own entries, other cases' entries
                              appear by their hashes alone
      chain/files.txt         "seq path": the file whose sha256 is that entry's digest (every case entry
                              with a digest has one, unless the message's payload was purged)
      chain/signatures.txt    "path certificate time epoch ca|pinned": which certificate signed which file,
                              and when
      chain/statement.txt     the hub's statement, `key=value` lines: the hash before the span, the span's
                              last hash, the chain's head when the bundle was made, and the sha256 of
                              chain/entries.txt, files.txt, signatures.txt, each certificate, README.txt
                              and verify.sh
      chain/statement.sig     its detached signature with the hub's key (RSA PKCS#1 v1.5 or ECDSA, SHA-256):
                              `openssl dgst -sha256 -verify <hub public key> -signature chain/statement.sig
                              chain/statement.txt`

Every file under messages/ is named in chain/files.txt (its bytes sealed by the chain) or
chain/signatures.txt (signed by a party), or both; bytes neither vouches for are left out.

A purged message (retention) has no payload files; its entries and receipts are still there.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from sqlalchemy import func, select

from hub.evidence import audit

from hub.evidence import chains as evidence
from hub.evidence.checkpoints import sign_detached

from hub.trust import pki

from hub.evidence import timeline
from hub.store.db import utcnow
from hub.errors import HubError, NotFound
from hub.evidence.verify_script import VERIFY_SH
from hub.store import files as store
from hub.store.models import Delivery, Event, Message
from hub.trust.signing import DS_NS
from hub.xml.safe import to_bytes

EVIDENCE_EXPORTED = "EVIDENCE_EXPORTED"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    messages: int
    entries: int          # entries of the case in the span
    span: tuple[int, int]
    digest: str = ""      # sha256 of the zip (as recorded in the audit log)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]


def _gmt(at: dt.datetime) -> str:
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class _Certificates:
    """Certificates the bundle carries, found by the DER bytes a signature's KeyInfo embeds."""

    def __init__(self, hub):
        self.files: dict[str, bytes] = {}
        self.by_der: dict[bytes, str] = {}
        self.cas: list[x509.Certificate] = []
        self.ca_issued: dict[str, bool] = {}
        hub_crt = hub.settings.pki_dir / "hub.crt"
        candidates = [("hub", hub_crt)]
        for code, party in hub.config.parties.items():
            paths = list(getattr(party, "certificates", []) or [])
            candidates += [(code if i == 0 else f"{code}-{i + 1}", Path(p)) for i, p in enumerate(paths)]
            ca = getattr(party, "ca", None)
            if ca:
                self._add_ca(Path(ca))
        self._add_ca(hub.settings.pki_dir / "ca.crt")
        self.candidates = candidates

    def _add_ca(self, path: Path) -> None:
        if path.is_file():
            cert = pki.load_certificate(str(path))
            if all(c.public_bytes(serialization.Encoding.DER) != cert.public_bytes(serialization.Encoding.DER)
                   for c in self.cas):
                self.cas.append(cert)

    def name_for(self, der: bytes) -> str | None:
        if not self.by_der:
            for name, path in self.candidates:
                if path.is_file():
                    cert = pki.load_certificate(str(path))
                    self.by_der.setdefault(cert.public_bytes(serialization.Encoding.DER), name)
        name = self.by_der.get(der)
        if name is not None and name not in self.files:
            cert = x509.load_der_x509_certificate(der)
            self.files[name] = cert.public_bytes(serialization.Encoding.PEM)
            self.ca_issued[name] = any(self._issued_by(cert, ca) for ca in self.cas)
        return name

    @staticmethod
    def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:
            return False

    def ca_bundle(self) -> bytes:
        return b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in self.cas)


def _signed_part(data: bytes) -> tuple[bytes | None, bytes | None]:
    """(bytes xmlsec1 can verify as they are or taken out of the envelope, DER of the signer's certificate)."""
    if not data or not data.lstrip().startswith(b"<"):
        return None, None
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None, None
    signed, own = root, True
    if root.find(f"{{{DS_NS}}}Signature") is None:
        body = next((el for el in root if isinstance(el.tag, str) and etree.QName(el).localname == "Body"), None)
        document = body[0] if body is not None and len(body) else None
        if document is None or document.find(f"{{{DS_NS}}}Signature") is None:
            return None, None
        signed, own = copy.deepcopy(document), False
    certificate = signed.find(f"{{{DS_NS}}}Signature/{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate")
    if certificate is None or not (certificate.text or "").strip():
        return None, None
    der = base64.b64decode("".join(certificate.text.split()))
    return (data if own else to_bytes(signed)), der


def export_case(hub, case: str, output_dir: Path, *, actor: str | None = None) -> ExportResult:
    """Write `<output_dir>/evidence-<case>.zip`; refuses when the chains do not verify.

    The export is recorded in the audit log (EVIDENCE_EXPORTED by `actor`, default "cli <os user>";
    subject the case, digest the zip's sha256), in the transaction that writes the zip."""
    report = evidence.verify_chains(hub)
    if not report.ok:
        raise HubError(f"exporting the evidence of case {case}: the evidence chain does not verify, "
                       f"so the hub will not sign a statement over it: {report.first_failure}")
    certificates = _Certificates(hub)
    files: dict[str, bytes] = {}
    file_entries: list[tuple[int, str]] = []
    signatures: list[tuple[str, str, dt.datetime]] = []
    with hub.sessions() as session:
        messages = session.scalars(select(Message).where(Message.correlation_id == case).order_by(Message.id)).all()
        if not messages:
            raise NotFound(f"exporting the evidence of case {case}: no message belongs to case {case!r}")
        pks = [m.id for m in messages]
        first, last = session.execute(select(func.min(Event.chain_seq), func.max(Event.chain_seq))
                                      .where(Event.message_pk.in_(pks), Event.chain_seq.is_not(None))).one()
        if first is None:
            raise HubError(f"exporting the evidence of case {case}: none of its entries is sealed yet")
        previous_hash = evidence.chain_hash_at(session, Event, first - 1)
        head_seq, head_hash = evidence._head(session, Event)
        lines, case_entries = [], 0
        vouching: dict[int, list[tuple[int, str, int | None, dt.datetime, str]]] = {}  # message pk -> entries
        for event, message_id, sender, correlation_id, partner in evidence.chain_entries(session, Event, first, last):
            seq = event.chain_seq
            if event.message_pk in pks:
                line = evidence.event_line(seq, event, message_id, sender, correlation_id, partner)
                lines.append(f"{seq} {event.content_hash} {event.chain_hash} {line}")
                case_entries += 1
                if event.digest:
                    vouching.setdefault(event.message_pk, []).append(
                        (seq, event.kind, event.delivery_id, event.at, event.digest))
            else:
                lines.append(f"{seq} {event.content_hash} {event.chain_hash}")
        last_hash = evidence.chain_hash_at(session, Event, last)
        deliveries = session.scalars(select(Delivery).where(Delivery.message_pk.in_(pks))
                                     .order_by(Delivery.id)).all()

        for n, message in enumerate(messages, 1):
            folder = f"messages/{n:02d}-{_safe(message.message_id)}"
            # (path, bytes, the entry kinds whose digest this file is, its delivery)
            candidates: list[tuple[str, bytes | Path | None, tuple[str, ...], int | None]] = [
                (f"{folder}/received.xml", _payload(hub, message.received_bytes, message.payload_path),
                 (timeline.RECEIVED, timeline.DUPLICATE), None),
                (f"{folder}/canonical.xml", message.canonical_bytes, (timeline.MAPPED_IN, timeline.VERIFIED), None),
                (f"{folder}/receipt.xml", message.receipt, (timeline.ACCEPTED,), None)]
            used: set[str] = set()
            for delivery in (d for d in deliveries if d.message_pk == message.id):
                label = delivery.partner if delivery.partner not in used else f"{delivery.partner}-{delivery.id}"
                used.add(delivery.partner)
                candidates.append((f"{folder}/sent-{label}.xml", _payload(hub, delivery.sent_bytes, delivery.sent_path),
                                   (timeline.SENT,), delivery.id))
                candidates.append((f"{folder}/partner-receipt-{label}.xml", delivery.partner_receipt,
                                   (timeline.PARTNER_RECEIPT, timeline.ANSWERED), delivery.id))
            present = [(path, data, kinds, delivery_id, _sha256(data))
                       for path, data, kinds, delivery_id in candidates if data is not None]
            first_vouched: dict[str, dt.datetime] = {}  # path -> time of the first entry vouching for it
            for seq, kind, delivery_id, at, digest in vouching.get(message.id, []):
                # the file this entry's digest is: the one of its kind (and delivery) first, else any file of
                # the message with those bytes; none when they were purged (verify.sh then wants the PURGED entry)
                same = [f for f in present if f[4] == digest]
                own = [f for f in same if kind in f[2] and f[3] in (None, delivery_id)]
                chosen = (own or same or [None])[0]
                if chosen is not None:
                    file_entries.append((seq, chosen[0]))
                    first_vouched.setdefault(chosen[0], at)
            for path, data, _kinds, _delivery, _digest in present:
                # a file goes in when the chain seals its bytes (chain/files.txt) or a known party signed it
                # as it is (chain/signatures.txt); a signed document inside an envelope goes in as
                # *.document.xml. Bytes nothing vouches for stay out: verify.sh refuses a file nothing names.
                if path in first_vouched:
                    files[path] = data
                signed, der = _signed_file(data) if isinstance(data, Path) else _signed_part(data)
                name = certificates.name_for(der) if der else None
                if signed is not None and name is not None:
                    signed_path = path if signed is data else path[:-4] + ".document.xml"
                    files[signed_path] = signed
                    signatures.append((signed_path, name, first_vouched.get(path, utcnow())))
    issued_at = utcnow()
    files["chain/entries.txt"] = ("\n".join(lines) + "\n").encode("ascii")
    files["chain/files.txt"] = "".join(f"{seq} {path}\n" for seq, path in sorted(file_entries)).encode()
    files["chain/signatures.txt"] = "".join(
        f"{path} {name}.crt {when.astimezone(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {int(when.timestamp())} "
        f"{'ca' if certificates.ca_issued.get(name) else 'pinned'}\n"
        for path, name, when in signatures).encode()
    certificates.name_for(hub.signer.certificate.public_bytes(serialization.Encoding.DER))
    for name, pem in certificates.files.items():
        files[f"certificates/{name}.crt"] = pem
    files["certificates/ca-bundle.pem"] = certificates.ca_bundle()
    files["verify.sh"] = VERIFY_SH.encode()
    files["README.txt"] = _readme(case, len(messages), first, last).encode()
    covered = sorted(path for path in files if path.startswith(("chain/", "certificates/"))) + ["README.txt",
                                                                                              "verify.sh"]
    statement = _statement(case=case, first=first, last=last, previous=previous_hash, last_hash=last_hash,
                           head_seq=head_seq, head_hash=head_hash, issued_at=issued_at,
                           covered={path: hashlib.sha256(files[path]).hexdigest() for path in covered})
    files["chain/statement.txt"] = statement
    files["chain/statement.sig"] = sign_detached(hub.signer.key, statement)
    sums = "".join(f"{_sha256(data)}  {path}\n" for path, data in sorted(files.items()))
    files["SHA256SUMS"] = sums.encode()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    root = f"evidence-{_safe(case)}"
    target = output_dir / f"{root}.zip"
    temporary = output_dir / f".{root}.zip.part"  # written to disk as it goes: a file member is never held whole
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, data in sorted(files.items()):
                info = zipfile.ZipInfo(f"{root}/{path}", date_time=issued_at.timetuple()[:6])
                info.external_attr = (0o755 if path == "verify.sh" else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                if isinstance(data, Path):
                    with open(data, "rb") as source, archive.open(info, "w", force_zip64=True) as member:
                        while chunk := source.read(store.CHUNK):
                            member.write(chunk)
                else:
                    archive.writestr(info, data)
        digest, size = store.sha256_of(temporary)
        with hub.sessions.begin() as session:
            audit.record(session, actor=actor or audit.cli_actor(), action=EVIDENCE_EXPORTED, subject=case,
                         detail=f"evidence bundle {target.name}: {len(messages)} message(s), {case_entries} entries "
                                f"of the case in timeline entries {first}..{last}, statement issued "
                                f"{issued_at.isoformat(timespec='seconds')}, {size} bytes",
                         digest=digest)
            temporary.replace(target)  # in the transaction: no audit entry for a zip that could not be written
    finally:
        temporary.unlink(missing_ok=True)
    return ExportResult(target, len(messages), case_entries, (first, last), digest)


def _payload(hub, data: bytes | None, stored: str | None) -> bytes | Path | None:
    """A message's or delivery's bytes: the column, or the file of the engine's file store it names."""
    if stored is not None:
        path = store.resolve(hub, stored)
        return path if path.is_file() else None
    return data


def _sha256(data: bytes | Path) -> str:
    return store.sha256_of(data)[0] if isinstance(data, Path) else hashlib.sha256(data).hexdigest()


def _signed_file(path: Path) -> tuple[Path | None, bytes | None]:
    """(the file, DER of its signer's certificate) when the file's root carries a signature with one; read
    as a stream (a document kept in a file is too large to parse whole), elements cleared as they end."""
    x509_tag = f"{{{DS_NS}}}X509Certificate"
    signature_tag = f"{{{DS_NS}}}Signature"
    der = None
    try:
        for _event, element in etree.iterparse(str(path), events=("end",), resolve_entities=False, load_dtd=False,
                                               no_network=True, huge_tree=False):
            if element.tag == x509_tag and der is None and (element.text or "").strip():
                signature = next((a for a in element.iterancestors() if a.tag == signature_tag), None)
                if signature is not None and signature.getparent() is not None \
                        and signature.getparent().getparent() is None:
                    der = base64.b64decode("".join(element.text.split()))
            parent = element.getparent()
            if parent is not None and not element.tag.startswith(f"{{{DS_NS}}}"):  # the signature is kept
                element.clear(keep_tail=True)
                while (previous := element.getprevious()) is not None and previous.tag != signature_tag:
                    parent.remove(previous)
    except etree.XMLSyntaxError:
        return None, None
    return (path, der) if der else (None, None)


STATEMENT_HEADER = "consular-hub evidence statement 1"


def _statement(*, case: str, first: int, last: int, previous: str, last_hash: str, head_seq: int,
               head_hash: str, issued_at: dt.datetime, covered: dict[str, str]) -> bytes:
    """The hub's statement of the span: ASCII `key=value` lines, each key once, signed as these exact
    bytes (chain/statement.sig). verify.sh reads its values from the bytes whose signature it checked:
    there is no canonicalisation between what is signed and what is read."""
    values = [("statement", STATEMENT_HEADER), ("chain", "timeline"), ("case", case),
              ("issued_at", issued_at.isoformat(timespec="seconds")), ("issued_at_gmt", _gmt(issued_at)),
              ("first_seq", first), ("previous_chain_hash", previous), ("last_seq", last),
              ("last_chain_hash", last_hash), ("head_seq", head_seq), ("head_chain_hash", head_hash)]
    values += [(f"sha256:{path}", digest) for path, digest in covered.items()]
    out = []
    for key, value in values:
        value = str(value)
        if not all(" " <= c <= "~" for c in key + value) or "=" in key:
            raise HubError(f"exporting the evidence of case {case}: {key} {value!r} is not printable ASCII, "
                           f"the hub will not put it in its signed statement")
        out.append(f"{key}={value}\n")
    return "".join(out).encode("ascii")


def _readme(case: str, messages: int, first: int, last: int) -> str:
    return f"""Evidence of case {case}: {messages} message(s), timeline chain entries {first} to {last}.

To check it, offline, with standard tools only (sh, sha256sum, openssl, xmlsec1):

    sh verify.sh

It exits 0 when everything verifies and names each file or entry that does not. What it checks:
  1. chain/statement.txt, the hub's statement of the span, against its detached signature
     chain/statement.sig with the public key of certificates/hub.crt:
       openssl x509 -pubkey -noout -in certificates/hub.crt > hub.pub
       openssl dgst -sha256 -verify hub.pub -signature chain/statement.sig chain/statement.txt
     every value verify.sh uses is read from those signed bytes (one key=value line each);
  2. the files the statement covers (its sha256:PATH=HASH lines): chain/entries.txt, chain/files.txt,
     chain/signatures.txt, every certificate, this README.txt and verify.sh;
  3. every file against SHA256SUMS;
  4. the chain: each canonical line hashes to its content hash, each chain hash is
     sha256(previous chain hash + content hash), from the statement's previous_chain_hash to its
     last_chain_hash;
  5. each message file's sha256 equals the digest sealed in its entry (chain/files.txt); every entry
     of the case that seals a digest has its file, unless the chain holds the message's PURGED entry
     (retention) and the entry's bytes are ones a purge removes; every file under messages/ is named in
     chain/files.txt or chain/signatures.txt;
  6. each signature with xmlsec1 against the certificate named in chain/signatures.txt, and that
     certificate against certificates/ca-bundle.pem with openssl, at the time the entry was recorded.

Compare the fingerprint of certificates/hub.crt (openssl x509 -noout -fingerprint -sha256 -in
certificates/hub.crt) with the one the hub's operator publishes: the bundle proves nothing against a
hub certificate you have not checked yourself.
"""
