"""Who did what in the registry, written to the hub's audit log (`Hub.audit`, sealed into its hash chain).

    CITIZEN_REGISTERED          a citizen registered, PENDING DGSN's identity check (POST /citizens, a NEW consular
                                registration); subject: the registration id, detail: the post
    CASE_OPENED                 a case opened by a user; subject: the case, detail: its service and post
    PASSPORT_HANDED_OVER        a post's actions on a case; subject: the case, detail: what was recorded
    JUDICIAL_OUTCOME_RECORDED
    CITIZEN_CORRECTED           a citizen's civil data or contacts corrected; subject: the registration id, detail:
                                the fields (old and new values are in the citizen's history, registry/citizens.py)
    CITIZEN_DECEASED            a citizen's death recorded by an agent; detail: the date
    CITIZEN_TRANSFERRED         a citizen moved to another post; detail: from and to
    CITIZEN_VIEWED              a full record read (GET /citizens/{id}, GET /cases/{ref}); subject: which one
    CASE_VIEWED
    CASE_CANCELLED              people's actions on a case (registry/case_actions.py); subject: the case, detail:
    CASE_RETRIED                the reason, the attempt, the posts, the citizen matched
    CASE_REASSIGNED
    ADDRESSEE_MATCHED
    DOCUMENT_VIEWED             a case document's bytes shown in the console (personal data, like a payload);
                                subject: the case, detail: the document's kind, source message and size
    DOCUMENT_ISSUED             a document printed for a citizen (registry/printing/); subject: the registration
                                id or case, detail: its kind, language and the start of its code's digest
    DOCUMENT_REVOKED            a printed document revoked; subject and detail as issued, with the reason
    POST_CREATED                an administrator created a consular post (POST /posts); subject: its code,
                                detail: its kind and city
    POST_CLOSED                 an administrator closed one; subject: its code, detail: the reason given

The actor is the API token (`Identity.actor`: its id, name, role and post; never its secret). An action's
entry is written in the transaction that makes the change; a read's in the transaction that reads the record,
once the reader was allowed (a refused read shows nothing, so records nothing). Lists are masked and not
audited; cases opened by a partner (a judicial request) are in the message's timeline.
"""
from __future__ import annotations

from hub.access.tokens import Identity

CITIZEN_REGISTERED = "CITIZEN_REGISTERED"
CASE_OPENED = "CASE_OPENED"
PASSPORT_HANDED_OVER = "PASSPORT_HANDED_OVER"
JUDICIAL_OUTCOME_RECORDED = "JUDICIAL_OUTCOME_RECORDED"
CITIZEN_CORRECTED = "CITIZEN_CORRECTED"
CITIZEN_DECEASED = "CITIZEN_DECEASED"
CITIZEN_TRANSFERRED = "CITIZEN_TRANSFERRED"
CITIZEN_VIEWED = "CITIZEN_VIEWED"
CASE_VIEWED = "CASE_VIEWED"
DOCUMENT_VIEWED = "DOCUMENT_VIEWED"
DOCUMENT_ISSUED = "DOCUMENT_ISSUED"
DOCUMENT_REVOKED = "DOCUMENT_REVOKED"
POST_CREATED = "POST_CREATED"
POST_CLOSED = "POST_CLOSED"


def record(hub, session, identity: Identity, action: str, subject: str, detail: str = "") -> None:
    """One audit entry for `identity`'s `action` on `subject`, in `session`'s transaction."""
    hub.audit(session, actor=identity.actor, action=action, subject=subject, detail=detail)
