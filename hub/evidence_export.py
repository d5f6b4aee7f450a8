"""`hub evidence export CASE`: one zip per case that a third party checks offline with standard tools.

    evidence-<case>/
      README.txt              what is inside and how to check it
      verify.sh               the check: sh, sha256sum, openssl, xmlsec1 (plus sed, grep, cut)
      SHA256SUMS              sha256 of every other file (`sha256sum -c SHA256SUMS`)
      certificates/           hub.crt, each party's pinned certificate(s) <PARTY>.crt, ca-bundle.pem
      messages/NN-<id>/       received.xml (as received), canonical.xml (a partner document mapped in),
                              receipt.xml (the hub's signed receipt), sent-<PARTNER>.xml (as sent),
                              partner-receipt-<PARTNER>.xml (the partner's answer as it arrived), and
                              *.document.xml: a signed business document taken out of its envelope,
                              because xmlsec1 resolves Reference URI="" to the whole file
      chain/entries.txt       the timeline chain from the case's first entry to its last, one line each:
                              "seq content_hash chain_hash [canonical line]"; the canonical line (see
                              hub/evidence.py) only for the case's own entries, other cases' entries
                              appear by their hashes alone
      chain/files.txt         "seq path": the file whose sha256 is that entry's digest
      chain/signatures.txt    "path certificate time epoch": which certificate signed which file, and when
      chain/head.xml          the hub's signed statement: the hash before the span, the span's last hash,
                              and the chain's head when the bundle was made

A purged message (retention) has no payload files; its entries and receipts are still there.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from sqlalchemy import func, select

from hub import evidence, pki, timeline
from hub.db import utcnow
from hub.errors import HubError, NotFound
from hub.evidence_verify import VERIFY_SH
from hub.models import Delivery, Event, Message
from hub.signing import DS_NS
from hub.xmlsafe import to_bytes

EVIDENCE_NS = "urn:ma:gov:consular:hub:evidence:1"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    messages: int
    entries: int          # entries of the case in the span
    span: tuple[int, int]


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


def export_case(hub, case: str, output_dir: Path) -> ExportResult:
    """Write `<output_dir>/evidence-<case>.zip`; refuses when the chains do not verify."""
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
        entries_by_key: dict[tuple, tuple[int, dt.datetime]] = {}  # (message pk, kind, delivery id) -> last entry
        for event, message_id, sender, correlation_id, partner in evidence.chain_entries(session, Event, first, last):
            seq = event.chain_seq
            if event.message_pk in pks:
                line = evidence.event_line(seq, event, message_id, sender, correlation_id, partner)
                lines.append(f"{seq} {event.content_hash} {event.chain_hash} {line}")
                case_entries += 1
                if event.digest:
                    entries_by_key[(event.message_pk, event.kind, event.delivery_id)] = (seq, event.at, event.digest)
            else:
                lines.append(f"{seq} {event.content_hash} {event.chain_hash}")
        last_hash = evidence.chain_hash_at(session, Event, last)
        deliveries = session.scalars(select(Delivery).where(Delivery.message_pk.in_(pks))
                                     .order_by(Delivery.id)).all()

        def add(path: str, data: bytes | None, key: tuple) -> None:
            if data is None:
                return
            files[path] = data
            entry = entries_by_key.get(key)
            if entry and entry[2] == hashlib.sha256(data).hexdigest():
                file_entries.append((entry[0], path))
            signed, der = _signed_part(data)
            name = certificates.name_for(der) if der else None
            if signed is not None and name is not None:
                signed_path = path if signed is data else path[:-4] + ".document.xml"
                if signed is not data:
                    files[signed_path] = signed
                signatures.append((signed_path, name, entry[1] if entry else utcnow()))

        for n, message in enumerate(messages, 1):
            folder = f"messages/{n:02d}-{_safe(message.message_id)}"
            add(f"{folder}/received.xml", message.received_bytes, (message.id, timeline.RECEIVED, None))
            canonical_entry = timeline.MAPPED_IN if (message.id, timeline.MAPPED_IN, None) in entries_by_key \
                else timeline.VERIFIED
            add(f"{folder}/canonical.xml", message.canonical_bytes, (message.id, canonical_entry, None))
            add(f"{folder}/receipt.xml", message.receipt, (message.id, timeline.ACCEPTED, None))
            used: set[str] = set()
            for delivery in (d for d in deliveries if d.message_pk == message.id):
                label = delivery.partner if delivery.partner not in used else f"{delivery.partner}-{delivery.id}"
                used.add(delivery.partner)
                add(f"{folder}/sent-{label}.xml", delivery.sent_bytes, (message.id, timeline.SENT, delivery.id))
                add(f"{folder}/partner-receipt-{label}.xml", delivery.partner_receipt,
                    (message.id, timeline.PARTNER_RECEIPT, delivery.id))
    issued_at = utcnow()
    files["chain/entries.txt"] = ("\n".join(lines) + "\n").encode("ascii")
    files["chain/files.txt"] = "".join(f"{seq} {path}\n" for seq, path in sorted(file_entries)).encode()
    files["chain/signatures.txt"] = "".join(
        f"{path} {name}.crt {when.astimezone(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {int(when.timestamp())} "
        f"{'ca' if certificates.ca_issued.get(name) else 'pinned'}\n"
        for path, name, when in signatures).encode()
    files["chain/head.xml"] = _statement(hub, case=case, first=first, last=last, previous=previous_hash,
                                         last_hash=last_hash, head_seq=head_seq, head_hash=head_hash,
                                         issued_at=issued_at)
    certificates.name_for(hub.signer.certificate.public_bytes(serialization.Encoding.DER))
    for name, pem in certificates.files.items():
        files[f"certificates/{name}.crt"] = pem
    files["certificates/ca-bundle.pem"] = certificates.ca_bundle()
    files["verify.sh"] = VERIFY_SH.encode()
    files["README.txt"] = _readme(case, len(messages), first, last).encode()
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data in sorted(files.items()))
    files["SHA256SUMS"] = sums.encode()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    root = f"evidence-{_safe(case)}"
    target = output_dir / f"{root}.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in sorted(files.items()):
            info = zipfile.ZipInfo(f"{root}/{path}", date_time=issued_at.timetuple()[:6])
            info.external_attr = (0o755 if path == "verify.sh" else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    target.write_bytes(buffer.getvalue())
    return ExportResult(target, len(messages), case_entries, (first, last))


def _statement(hub, *, case: str, first: int, last: int, previous: str, last_hash: str, head_seq: int,
               head_hash: str, issued_at: dt.datetime) -> bytes:
    """The hub's signed statement of the span; each value on a line of its own, once (verify.sh reads them)."""
    e = lambda tag: f"{{{EVIDENCE_NS}}}{tag}"  # noqa: E731
    root = etree.Element(e("ChainStatement"), nsmap={None: EVIDENCE_NS})
    root.text = "\n"
    for tag, value in (("Chain", "timeline"), ("Case", case), ("IssuedAt", issued_at.isoformat(timespec="seconds")),
                       ("IssuedAtGmt", _gmt(issued_at)), ("FirstSeq", first), ("PreviousChainHash", previous),
                       ("LastSeq", last), ("LastChainHash", last_hash), ("HeadSeq", head_seq),
                       ("HeadChainHash", head_hash)):
        element = etree.SubElement(root, e(tag))
        element.text, element.tail = str(value), "\n"
    return to_bytes(hub.signer.sign(root))


def _readme(case: str, messages: int, first: int, last: int) -> str:
    return f"""Evidence of case {case}: {messages} message(s), timeline chain entries {first} to {last}.

To check it, offline, with standard tools only (sh, sha256sum, openssl, xmlsec1):

    sh verify.sh

It exits 0 when everything verifies and names each file or entry that does not. What it checks:
  1. every file against SHA256SUMS;
  2. chain/head.xml, the hub's signed statement of the span, with xmlsec1 and certificates/hub.crt;
  3. the chain: each canonical line hashes to its content hash, each chain hash is
     sha256(previous chain hash + content hash), from the statement's PreviousChainHash to its LastChainHash;
  4. each message file's sha256 equals the digest sealed in its entry (chain/files.txt);
  5. each signature with xmlsec1 against the certificate named in chain/signatures.txt, and that
     certificate against certificates/ca-bundle.pem with openssl, at the time the entry was recorded.

Compare the fingerprint of certificates/hub.crt (openssl x509 -noout -fingerprint -sha256 -in
certificates/hub.crt) with the one the hub's operator publishes: the bundle proves nothing against a
hub certificate you have not checked yourself.
"""
