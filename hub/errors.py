"""The hub's one exception tree.

    HubError
    ├── ConfigError                 configuration file is wrong: names the file and the key
    ├── InputError                  a message was refused at intake (HTTP 4xx); carries `problems`
    │   ├── MalformedXml            not well-formed, or forbidden constructs (DOCTYPE, entities) -> 400
    │   ├── SchemaInvalid           well-formed but not valid against its XSD                   -> 400
    │   ├── SignatureInvalid        missing, altered or not from the expected signer             -> 400
    │   ├── HeaderMismatch          a header field differs from what the signature covers (its   -> 400
    │   │                           signed Binding, the document's case reference), or no Binding
    │   ├── UnknownCorrelation      an answer to a message the hub never sent                    -> 400
    │   ├── NotRoutable             no route for this message type                               -> 400
    │   ├── UnfitCharacter          a parameter or field holds a character the hub refuses (NUL) -> 400
    │   ├── NotUnderstood           a SOAP header entry marked mustUnderstand the hub does not process -> 400
    │   ├── NotAllowed              this sender may not send this message type                   -> 403
    │   ├── MessageTooLarge         over the size cap, refused before parsing                    -> 413
    │   ├── UnsupportedMediaType    not application/xml                                          -> 415
    │   ├── DuplicateConflict       same sender and message id, other bytes                      -> 409
    │   ├── RecordConflict          a registry record's state refuses the action (a CNIE already held,
    │   │                           a deceased citizen, a post's code taken, a post still serving) -> 409
    │   ├── ValueRefused            a value a registry record cannot take, the field named       -> 400
    │   ├── PayloadPurged           a resend of a message whose payload retention removed         -> 409
    │   ├── SearchRefused           a citizen search too short, too long or with a cursor not its own -> 400
    │   ├── StylesheetRefused       a mapping's stylesheet that does not compile or reaches too far -> 400
    │   ├── ActivationConflict      a mapping version missing, already active, or beaten to it        -> 409
    │   ├── BadCursor               a list's cursor this list did not give                        -> 400
    │   ├── BadTarget               a case action names a post or citizen it cannot go to         -> 400
    │   └── ActionRefused           a case's status does not allow this action (cancel a final one) -> 409
    ├── TryLater                    nothing wrong with the input, but the hub cannot take it now: send the
    │   │                           same bytes again after `retry_after` seconds (Retry-After header)
    │   └── OutboxFull              the outbox for a partner it routes to is at HUB_MAX_OUTBOX_DEPTH -> 429
    ├── DeliveryError               a connector could not deliver; `retryable` says what the engine does
    │   ├── TransientDeliveryError  retry later with backoff (5xx, 429, timeouts, refused connections)
    │   │   └── AnswerDeferred      the partner answered, but the answer cannot be taken in now (not the
    │   │                           partner's fault: the circuit breaker does not count it)
    │   └── PermanentDeliveryError  dead-letter now (4xx, a partner's refusal, a mapping failure)
    ├── NotFound                    an API lookup found nothing                                  -> 404
    ├── HeadRefused                 an HTTP request head over a server limit (size, fields) -> 431
    ├── AuthError                   the API caller is not who may do this                        -> 401
    │   ├── Unauthenticated         no valid token: missing, malformed, unknown, expired, revoked -> 401
    │   └── Forbidden               a valid token whose role or scope does not allow this         -> 403
    ├── TokenRequestInvalid         a token cannot be created as asked (unknown role, agent without post)
    ├── TransitionRefused           a registry case may not move to that status from where it is
    └── NotificationFailed          an alert's e-mail or webhook could not be sent (tried again later)

TryLater is not an InputError on purpose: the input is not refused for what it is, so no door records
it as a refusal, the registry does not fail the case it belongs to (the stalled-case job submits it
again), and a polled file stays where it is for the next poll.

Connectors translate their library's exceptions into DeliveryError subclasses at the boundary:
nothing from httpx, zeep or paramiko leaks into the engine.

Outside the tree, because it never reaches a caller: WriteAlone, which a batch writer of group commit
raises when its items cannot be written together this time (hub/store/group_commit.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: what, and where when known."""

    message: str
    line: int | None = None
    path: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in (("message", self.message), ("line", self.line), ("path", self.path)) if v is not None}


class HubError(Exception):
    retryable = False


class ConfigError(HubError):
    def __init__(self, file, key: str, reason: str):
        self.file, self.key, self.reason = str(file), key, reason
        super().__init__(f"{self.file}: {key}: {reason}")


class NotFound(HubError):
    status = 404


class PreloadRefused(HubError):
    """A bulk preload (hub/evidence/bulk.py) refused: the database is not in a state to continue its chain."""


class InputError(HubError):
    status = 400
    title = "Message refused"

    def __init__(self, detail: str, problems: list[Problem] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.problems = problems or []


class MalformedXml(InputError):
    title = "Malformed XML"


class SchemaInvalid(InputError):
    title = "Schema validation failed"


class SignatureInvalid(InputError):
    title = "Signature verification failed"


class HeaderMismatch(InputError):
    """The envelope header says what the signed document does not: a field differs from the document's signed
    Binding (or the Binding is missing), or the CorrelationId from the document's own case reference.
    Each problem's path names the header field (/Message/Header/<Field>)."""
    title = "Header not covered by the signature"


class UnknownCorrelation(InputError):
    title = "Unknown correlation"


class NotRoutable(InputError):
    title = "No route"


class UnfitCharacter(InputError):
    """A path or query parameter, or a JSON field, holding a character the hub refuses; `where` names it."""
    title = "Character not accepted"

    def __init__(self, where: str, character: str):
        super().__init__(f"{where} holds {character}, a character the hub does not accept",
                         [Problem(f"{character} is not accepted here", path=where)])
        self.where, self.character = where, character


class NotUnderstood(InputError):
    """A SOAP header entry marked mustUnderstand="1" that the hub does not process (a soap:MustUnderstand fault)."""
    title = "Header not understood"


class HeadRefused(HubError):
    """An HTTP request head the server refuses before any application code runs (hub/api/server.py)."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


class NotAllowed(InputError):
    status = 403
    title = "Not allowed"


class MessageTooLarge(InputError):
    status = 413
    title = "Message too large"


class UnsupportedMediaType(InputError):
    status = 415
    title = "Unsupported media type"


class DuplicateConflict(InputError):
    status = 409
    title = "Message id already used with other content"


class RecordConflict(InputError):
    """A registry record's state refuses the action (registry/citizens.py): a CNIE already held by a live record,
    a deceased citizen, a citizen whose identity is not confirmed, a consular post's code already taken, a post
    closed twice or still serving citizens."""
    status = 409
    title = "Refused by the record"


class ValueRefused(InputError):
    """A value a registry record cannot take (a birth after the death, a closed post), `field` named."""
    title = "Value refused"

    def __init__(self, field: str, detail: str):
        super().__init__(detail, [Problem(detail, path=field)])


class PayloadPurged(InputError):
    """A resend of a message whose payload the retention purge removed: the message exists, but there is
    nothing left to send (409, not 404)."""
    status = 409
    title = "Payload purged"


class SearchRefused(InputError):
    """A citizen search (registry/citizen_search.py) that cannot be answered as asked (400, naming the parameter), nothing read."""
    title = "Search refused"

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}", [Problem(detail, path=field)])


class StylesheetRefused(InputError):
    """A mapping's stylesheet refused (hub/mappings/safe.py): it does not compile, reaches outside its folder,
    calls an extension, runs too long or writes too much; the detail names the line and the reason."""
    title = "Stylesheet refused"


class ActivationConflict(InputError):
    """A mapping activation refused (hub/mappings/store.py): the version does not exist or is already active,
    another activation won the race, or the version fails its sample cases or the personal-data policy."""
    status = 409
    title = "Activation refused"


class BadCursor(InputError):
    """A list's `cursor` that list did not give (made by hand, or for another sort): named, nothing read."""
    title = "Bad cursor"


class BadTarget(InputError):
    """A person's action on a registry case names a post or citizen it cannot go to (closed, unknown, inactive)."""
    title = "Bad target"


class ActionRefused(InputError):
    """A person's action on a registry case that its status does not allow (cancelling a final case, retrying
    one that has not failed): nothing changed."""
    status = 409
    title = "Action refused"


class TryLater(HubError):
    """The hub cannot take this input right now; the same bytes sent again after `retry_after` seconds will
    be. `extensions` are extra members of the problem+json body (machine-readable details)."""

    status = 503
    title = "Try again later"
    retryable = True

    def __init__(self, detail: str, *, retry_after: float, extensions: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.extensions = extensions or {}

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (RFC 9110 delay-seconds)."""
        return str(max(1, math.ceil(self.retry_after)))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after_header}


class OutboxFull(TryLater):
    """Back-pressure: `partner` already has `depth` deliveries waiting, at or over the configured `limit`."""

    status = 429
    title = "Partner outbox full"

    def __init__(self, partner: str, depth: int, limit: int, *, retry_after: float):
        super().__init__(f"{depth} deliveries are waiting for {partner} (limit {limit}); nothing was stored: "
                         f"send the same message again in {max(1, math.ceil(retry_after))} s",
                         retry_after=retry_after,
                         extensions={"partner": partner, "depth": depth, "limit": limit,
                                     "retry_after": max(1, math.ceil(retry_after))})
        self.partner, self.depth, self.limit = partner, depth, limit


class DeliveryError(HubError):
    def __init__(self, reason: str, *, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TransientDeliveryError(DeliveryError):
    retryable = True


class AnswerDeferred(TransientDeliveryError):
    """The partner took the message, but the hub could not take its answer in now (the outbox of the
    answer's own recipient is full): sent again later, the partner answers again. Not the partner's fault."""


class PermanentDeliveryError(DeliveryError):
    retryable = False


def first_line(exc: BaseException) -> str:
    """An exception in one line for a log (a database error's message spans its SQL and more)."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class AuthError(HubError):
    status = 401
    title = "Authentication required"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Unauthenticated(AuthError):
    """No valid token: missing, malformed, unknown, expired or revoked (401). `invalid_token` is True when
    a token was presented (RFC 6750: the client should get a new one rather than just add one)."""

    def __init__(self, detail: str, *, invalid_token: bool = False):
        super().__init__(detail)
        self.invalid_token = invalid_token


class SignInRequired(Unauthenticated):
    """A console page asked for without a live session (the console sends the browser to its sign-in page)."""


class Forbidden(AuthError):
    """A valid token whose role or scope does not allow this (403)."""
    status = 403
    title = "Forbidden"


class TokenRequestInvalid(HubError):
    """A token cannot be created as asked (unknown role, an agent without a post, ...)."""


class AccountRequestInvalid(HubError):
    """A console account cannot be created or changed as asked (unknown role, a weak password, ...)."""


class TransitionRefused(HubError):
    """A registry case asked to move to a status its service's machine does not allow from where it is."""


class WriteAlone(Exception):
    """Raised by a batch writer whose items cannot be written together this time (a row changed since it was
    read): group commit rolls the batch back and writes each item in a transaction of its own. A writer given
    one item never raises it."""


class NotificationFailed(HubError):
    """An alert notification (e-mail, webhook) could not be sent; the next evaluation tries again
    (hub/monitor/notify.py). Its message never holds a password or token."""


# -- documents printed for citizens (registry/printing/) --------------------------------------------------------

class NothingToPrint(InputError):
    """A citizen or case that holds no printable document (yet): a registration not ACTIVE, a case not answered."""
    status = 409
    title = "Nothing to print"


class AlreadyRevoked(InputError):
    """A printed document revoked before: revoked once, its verification already says so."""
    status = 409
    title = "Already revoked"


class PrintingUnavailable(TryLater):
    """This machine cannot lay out the documents (Pango, or a font with Arabic, is missing): 503 until an operator
    installs it; the detail names the packages."""
    status = 503
    title = "Printing unavailable"

    def __init__(self, detail: str):
        super().__init__(detail, retry_after=300)


class TooManyLookups(TryLater):
    """A public lookup (the verification of a printed document) asked too often from one address (429)."""
    status = 429
    title = "Too many requests"
