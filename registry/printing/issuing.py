"""Issuing, revoking and verifying the documents printed for citizens, over the registry's database.

Issuing reads the citizen or case and checks who asks (a consular agent prints only for their post) in one
transaction, lays the PDF out outside any transaction, then records the document (its code's digest and the
registry's signed record: registry/printing/records.py) with its audit entry (DOCUMENT_ISSUED) in another: a
refused or failed issue leaves nothing behind, and a PDF is handed over only once it is recorded. Every print is
a new document with a code of its own.

Verifying answers one of:

    genuine          the registry issued it, the signature over its record holds, and it is still valid
    revoked          revoked by a post (lost, issued in error...), or, for a registration certificate, the
                     registration it certifies no longer stands (the citizen is no longer ACTIVE at that post)
    not_genuine      a record is there but its signature does not hold: altered in the database
    unknown          no document has that code (or it is mistyped: the check symbols catch most typos)

and, for a genuine or revoked document, only what the signed record holds: its kind, reference, the holder as an
initial and family name, the post, the day it was issued, and the SHA-256 of the PDF (whoever holds the file can
compare). Nothing else about the citizen or the case.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select

from hub.access.tokens import Identity
from hub.errors import AlreadyRevoked, NotFound, SignatureInvalid
from hub.store.db import utcnow
from registry import audit, service
from registry.models import Citizen, IssuedDocument
from registry.printing import codes, records, render
from registry.printing.documents import REGISTRATION_CERTIFICATE, Printable, for_case, registration_certificate

VERIFY_PATH = "/verify"
GENUINE, REVOKED, NOT_GENUINE, UNKNOWN = "genuine", "revoked", "not_genuine", "unknown"


@dataclass(frozen=True)
class Issued:
    """A document issued: its PDF, and the name it is offered under."""

    pdf: bytes
    filename: str
    kind: str
    reference: str


def verification_for(code: str, base_url: str) -> render.Verification:
    base = base_url.rstrip("/")
    return render.Verification(code=code, url=f"{base}{VERIFY_PATH}/{codes.normalise(code)}",
                               page=f"{base}{VERIFY_PATH}")


def issue_certificate(registry, identity: Identity, registration_id: str, *, lang: str, base_url: str) -> Issued:
    """The registration certificate of an ACTIVE citizen, as a new document."""
    with registry.hub.sessions() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        identity.check_post(citizen.post_code, doing=f"printing the registration certificate of {registration_id}")
        printable = registration_certificate(citizen)
    return _issue(registry, identity, printable, lang=lang, base_url=base_url)


def issue_case_document(registry, identity: Identity, reference: str, *, lang: str, base_url: str) -> Issued:
    """The printable form of what the case holds, as a new document."""
    with registry.hub.sessions() as session:
        case = service.get_case(session, reference=reference)
        identity.check_post(case.post_code, doing=f"printing the document of case {reference}")
        printable = for_case(case)
    return _issue(registry, identity, printable, lang=lang, base_url=base_url)


def _issue(registry, identity: Identity, printable: Printable, *, lang: str, base_url: str) -> Issued:
    code = codes.new_code()
    issued_at = utcnow().replace(microsecond=0)
    pdf = render.pdf(printable, lang, verification_for(code, base_url), issued_at)
    digest = codes.digest(code)
    record = records.Record(code_digest=digest, kind=printable.kind, reference=printable.reference,
                            holder=printable.holder, post_code=printable.post_code, issued_at=issued_at,
                            language=lang, pdf_digest=hashlib.sha256(pdf).hexdigest())
    with registry.hub.sessions.begin() as session:
        session.add(IssuedDocument(code_digest=digest, kind=printable.kind, subject=printable.reference,
                                   citizen_id=printable.citizen_id, case_id=printable.case_id,
                                   post_code=printable.post_code, language=lang, issued_at=issued_at,
                                   issued_by=identity.actor, record=records.sign(record, registry.signer)))
        audit.record(registry.hub, session, identity, audit.DOCUMENT_ISSUED, printable.reference,
                     f"{printable.kind} in {lang}, code digest {digest[:12]}")
    return Issued(pdf=pdf, filename=f"{printable.kind.lower().replace('_', '-')}-{printable.reference}-{lang}.pdf",
                  kind=printable.kind, reference=printable.reference)


def _find(session, typed: str, *, for_update: bool = False) -> IssuedDocument | None:
    compact = codes.normalise(typed)
    if compact is None:
        return None
    query = select(IssuedDocument).where(IssuedDocument.code_digest == codes.digest(compact))
    return session.scalars(query.with_for_update() if for_update else query).first()


def revoke(registry, identity: Identity, typed_code: str, *, reason: str) -> dict:
    """Revoke the document with this code (a consular agent: their post's); audited. NotFound for an unknown
    code, AlreadyRevoked (409) for a document revoked before."""
    with registry.hub.sessions.begin() as session:
        document = _find(session, typed_code, for_update=True)
        if document is None:
            raise NotFound("no issued document has this verification code")
        identity.check_post(document.post_code, doing=f"revoking a document of {document.subject}")
        if document.revoked_at is not None:
            raise AlreadyRevoked(f"this {document.kind} of {document.subject} was revoked on "
                                 f"{document.revoked_at.date().isoformat()}")
        document.revoked_at, document.revoked_by, document.revoked_reason = utcnow(), identity.actor, reason
        audit.record(registry.hub, session, identity, audit.DOCUMENT_REVOKED, document.subject,
                     f"{document.kind}, code digest {document.code_digest[:12]}: {reason}")
        return {"kind": document.kind, "reference": document.subject, "status": REVOKED,
                "revoked_at": document.revoked_at.isoformat()}


def verify(registry, typed_code: str) -> dict:
    """The public answer for a typed code (see the module's doc)."""
    with registry.hub.reads() as session:
        document = _find(session, typed_code)
        if document is None:
            return {"status": UNKNOWN, "genuine": False, "valid": False}
        try:
            record = records.read_verified(document.record, registry.signer.certificate)
        except SignatureInvalid:
            return {"status": NOT_GENUINE, "genuine": False, "valid": False}
        if (record.code_digest, record.kind, record.reference, record.post_code) != (
                document.code_digest, document.kind, document.subject, document.post_code):
            return {"status": NOT_GENUINE, "genuine": False, "valid": False}  # a record moved onto another row
        revoked = document.revoked_at is not None or _registration_ended(session, document)
    shown = {"kind": record.kind, "reference": record.reference, "holder": record.holder,
             "post_code": record.post_code, "issued_on": record.issued_at.date().isoformat(),
             "language": record.language, "pdf_sha256": record.pdf_digest}
    return {"status": REVOKED if revoked else GENUINE, "genuine": True, "valid": not revoked, **shown}


def _registration_ended(session, document: IssuedDocument) -> bool:
    """A registration certificate stops being valid when the registration it certifies does: the citizen is no
    longer ACTIVE, or is now registered at another post."""
    if document.kind != REGISTRATION_CERTIFICATE or document.citizen_id is None:
        return False
    citizen = session.get(Citizen, document.citizen_id)
    return citizen is None or citizen.status != "ACTIVE" or citizen.post_code != document.post_code
