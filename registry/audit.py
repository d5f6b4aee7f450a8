"""Who did what in the registry, written to the hub's audit log (`Hub.audit`, sealed into its hash chain).

    CITIZEN_REGISTERED          a citizen registered (POST /citizens, a NEW consular registration); subject: the
                                registration id, detail: the post
    CASE_OPENED                 a case opened by a user; subject: the case, detail: its service and post
    PASSPORT_HANDED_OVER        a post's actions on a case; subject: the case, detail: what was recorded
    JUDICIAL_OUTCOME_RECORDED
    CITIZEN_VIEWED              a full record read (GET /citizens/{id}, GET /cases/{ref}); subject: which one
    CASE_VIEWED
    DOCUMENT_VIEWED             a case document's bytes shown in the console (personal data, like a payload);
                                subject: the case, detail: the document's kind, source message and size
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
CITIZEN_VIEWED = "CITIZEN_VIEWED"
CASE_VIEWED = "CASE_VIEWED"
DOCUMENT_VIEWED = "DOCUMENT_VIEWED"
POST_CREATED = "POST_CREATED"
POST_CLOSED = "POST_CLOSED"


def record(hub, session, identity: Identity, action: str, subject: str, detail: str = "") -> None:
    """One audit entry for `identity`'s `action` on `subject`, in `session`'s transaction."""
    hub.audit(session, actor=identity.actor, action=action, subject=subject, detail=detail)
