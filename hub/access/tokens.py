"""Identities of the HTTP API: tokens, roles, what each role may do, and the post a consular agent is bound to.

A token is `hub_<token id>_<secret>`. The token id is public (lists, logs, the audit log); only the
SHA-256 of the secret is stored, compared in constant time; the whole token is shown once, when it is
created. Tokens expire (90 days unless told otherwise) and can be revoked; either ends them at once.

Roles and permissions (PERMISSIONS below is the one table; the README shows it):

    consular_agent   bound to one post: that post's citizens and cases, read and act
    integration      integration staff: messages (metadata, payloads), resend, poll now, batch now
    supervisor       reads every case and citizen, and the messages' metadata; may resend
    partner          a partner system, bound to its party code: submits its own documents and reads
                     its own traffic (GET /api/v1/partner/...)
    administrator    everything, including tokens

`Identity.require(permission, doing=...)` raises Forbidden (403); `Identity.check_post(post, doing=...)`
adds the post scope of a consular agent. Unauthenticated (401) is raised for a missing, malformed,
unknown, expired or revoked token, with the same words for each (a caller learns nothing about which
tokens exist).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from hub.store.db import utcnow
from hub.errors import Forbidden, TokenRequestInvalid, Unauthenticated
from hub.store.models import ApiToken

CONSULAR_AGENT, INTEGRATION, SUPERVISOR, PARTNER, ADMINISTRATOR = (
    "consular_agent", "integration", "supervisor", "partner", "administrator")
ROLES = (CONSULAR_AGENT, INTEGRATION, SUPERVISOR, PARTNER, ADMINISTRATOR)
HUMAN_ROLES = (CONSULAR_AGENT, INTEGRATION, SUPERVISOR, ADMINISTRATOR)
DEFAULT_EXPIRY_DAYS = 90
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
TOKEN_PREFIX = "hub_"
_TOKEN = re.compile(r"^hub_([0-9a-f]{16})_([A-Za-z0-9_\-]{20,100})$")

# permission -> (roles that have it, what it covers). Scoped roles: a consular agent only for the
# citizens and cases of their post; a partner only for its own party code (checked where it applies).
PERMISSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "posts:read": (HUMAN_ROLES, "consular posts (reference data)"),
    "posts:manage": ((ADMINISTRATOR,), "create and close consular posts (a post closes once no citizen is left "
                                       "there)"),
    "registry:read": ((CONSULAR_AGENT, SUPERVISOR, ADMINISTRATOR),
                      "citizens and cases, read (a consular agent: their post only)"),
    "registry:act": ((CONSULAR_AGENT, ADMINISTRATOR),
                     "register citizens, open cases, record a post's actions (handover, judicial outcome, "
                     "life certificates) (a consular agent: their post only)"),
    "messages:read": ((INTEGRATION, SUPERVISOR, ADMINISTRATOR),
                      "messages' metadata and timelines, life-certificate batches"),
    "messages:payload": ((INTEGRATION, ADMINISTRATOR),
                         "a message's bytes as received or sent (each view is in the audit log)"),
    "messages:resend": ((INTEGRATION, SUPERVISOR, ADMINISTRATOR), "put dead deliveries back in the outbox"),
    "operations:run": ((INTEGRATION, ADMINISTRATOR), "poll a partner now, send the life-certificate batch now"),
    "messages:submit": ((PARTNER, ADMINISTRATOR),
                        "submit a signed canonical message (a partner: with its own code as Sender)"),
    "partner-documents:submit": ((PARTNER, ADMINISTRATOR),
                                 "submit a partner's own-format document (a partner: its own code only)"),
    "partner-messages:read": ((PARTNER, ADMINISTRATOR),
                              "a partner's own traffic: its messages' state and deliveries, its refusals and why "
                              "(a partner: its own code only; another's message is 404)"),
    "tokens:manage": ((ADMINISTRATOR,), "create, list and revoke API tokens"),
    "console:overview": (HUMAN_ROLES, "the monitor's overview (a consular agent: their post's service tiles only)"),
    "refusals:read": ((INTEGRATION, SUPERVISOR, ADMINISTRATOR), "inputs the hub refused: who, at which door, why"),
    "alerts:read": ((INTEGRATION, SUPERVISOR, ADMINISTRATOR), "the alerts raised and cleared"),
    "audit:read": ((SUPERVISOR, ADMINISTRATOR), "the audit log"),
    "users:manage": ((ADMINISTRATOR,), "create, disable and reset the console's accounts"),
    "mappings:read": ((INTEGRATION, ADMINISTRATOR), "the XSLT mappings, their versions and activations; run their "
                                                    "checks (preview, replay), which change nothing"),
    "mappings:manage": ((INTEGRATION, ADMINISTRATOR), "add a mapping version, activate one, roll back"),
}


@dataclass(frozen=True)
class Identity:
    """Who is calling: the token's public id (or, for a person signed in to the console, `user`, their
    username), its name and role, and the post or party it is bound to."""

    token_id: str
    name: str
    role: str
    post_code: str | None = None
    partner: str | None = None
    user: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        scope = f", {self.post_code}" if self.post_code else f", {self.partner}" if self.partner else ""
        who = f"user {self.user}" if self.user else f"token {self.token_id}"
        return f"{who} ({self.name}, {self.role}{scope})"[:120]

    @property
    def submitter(self) -> str:
        """How a message's timeline names the token that submitted it (its id and role; the secret never)."""
        return f"user {self.user} ({self.role})" if self.user else f"token {self.token_id} ({self.role})"

    @property
    def case_actor(self) -> str:
        """How a case's history names this caller (short: the token id or username finds the rest)."""
        return f"{self.role} {self.user or self.token_id}"[:40]

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission][0]

    def require(self, permission: str, *, doing: str) -> None:
        if not self.may(permission):
            raise Forbidden(f"{doing}: the {self.role} role may not ({PERMISSIONS[permission][1]}; allowed to "
                            f"{', '.join(PERMISSIONS[permission][0])})")

    @property
    def post_scope(self) -> str | None:
        """The one post this caller is limited to (a consular agent), or None for every post."""
        return self.post_code if self.role == CONSULAR_AGENT else None

    def check_post(self, post_code: str | None, *, doing: str) -> None:
        """A consular agent may touch only what belongs to their own post."""
        if self.role == CONSULAR_AGENT and post_code != self.post_code:
            raise Forbidden(f"{doing}: a consular agent of {self.post_code} acts only on the citizens and cases "
                            f"of {self.post_code}")

    def check_partner(self, partner: str, *, doing: str) -> None:
        """A partner system speaks only for its own party code."""
        if self.role == PARTNER and partner != self.partner:
            raise Forbidden(f"{doing}: this token belongs to partner {self.partner}, not {partner}")


# -- tokens --------------------------------------------------------------------------------------

def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_status(token: ApiToken, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    return "active"


def create_token(session: Session, *, role: str, name: str, created_by: str, post_code: str | None = None,
                 partner: str | None = None, expires_in_days: float = DEFAULT_EXPIRY_DAYS,
                 known_posts: set[str] | None = None, known_partners: set[str] | None = None) -> tuple[ApiToken, str]:
    """A new token (stored hashed) and the token string, which is never available again.

    Raises TokenRequestInvalid when the role is unknown, an agent has no (known) post, a partner no
    (known) party code, a scope is given to a role that takes none, or the expiry is not in the future."""
    if role not in ROLES:
        raise TokenRequestInvalid(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise TokenRequestInvalid("a token needs a name of 1 to 120 characters (who or what uses it)")
    if role == CONSULAR_AGENT:
        if not post_code:
            raise TokenRequestInvalid("a consular_agent token is bound to one post: give --post CODE")
        if known_posts is not None and post_code not in known_posts:
            raise TokenRequestInvalid(f"no consular post with code {post_code!r} is open "
                                      "(config/reference/posts.csv, or one an administrator created)")
    elif post_code:
        raise TokenRequestInvalid(f"only a consular_agent token is bound to a post, not a {role} token")
    if role == PARTNER:
        if not partner:
            raise TokenRequestInvalid("a partner token is bound to one party: give --partner CODE")
        if known_partners is not None and partner not in known_partners:
            raise TokenRequestInvalid(f"no partner with code {partner!r}; partners: {', '.join(sorted(known_partners))}")
    elif partner:
        raise TokenRequestInvalid(f"only a partner token is bound to a party, not a {role} token")
    if not expires_in_days or expires_in_days <= 0:
        raise TokenRequestInvalid(f"the expiry must be in the future, not {expires_in_days} days")
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(token_id=token_id, name=name, role=role, post_code=post_code, partner=partner,
                     secret_hash=_hash(secret), created_at=now, created_by=created_by[:120],
                     expires_at=now + dt.timedelta(days=expires_in_days))
    session.add(token)
    session.flush()
    return token, f"{TOKEN_PREFIX}{token_id}_{secret}"


def authenticate(hub, presented: str | None) -> Identity:
    """The identity of a presented token; Unauthenticated when there is none that is valid now.

    Every request reads the token's row (a revocation takes effect at the next request), in a read
    session; the token is marked used at most once a minute, the only time a request writes."""
    if not presented:
        raise Unauthenticated("an API token is required: send Authorization: Bearer hub_<id>_<secret>")
    match = _TOKEN.fullmatch(presented.strip())
    token = None
    if match:
        with hub.read_engine.connect() as connection:  # a plain connection: no ORM session for one row
            token = connection.execute(_BY_TOKEN_ID, {"token_id": match.group(1)}).first()
    expected = token.secret_hash if token is not None else _hash("no such token")
    given = _hash(match.group(2)) if match else _hash("")
    valid = hmac.compare_digest(expected, given) and token is not None
    now = utcnow()
    if not valid or token_status(token, now) != "active":
        raise Unauthenticated("the API token is not valid (unknown, expired or revoked)", invalid_token=True)
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        with hub.sessions.begin() as session:
            session.execute(update(ApiToken).where(ApiToken.token_id == token.token_id).values(last_used_at=now))
    return Identity(token_id=token.token_id, name=token.name, role=token.role, post_code=token.post_code,
                    partner=token.partner)


_TOKENS = ApiToken.__table__
_BY_TOKEN_ID = select(_TOKENS.c.token_id, _TOKENS.c.name, _TOKENS.c.role, _TOKENS.c.post_code, _TOKENS.c.partner,
                      _TOKENS.c.secret_hash, _TOKENS.c.expires_at, _TOKENS.c.revoked_at,
                      _TOKENS.c.last_used_at).where(_TOKENS.c.token_id == bindparam("token_id"))


def parse_authorization(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: str) -> ApiToken:
    """Revoke a token (idempotent: an already revoked token keeps its first revocation time)."""
    token = session.scalars(select(ApiToken).where(ApiToken.token_id == token_id)).first()
    if token is None:
        raise TokenRequestInvalid(f"no token with id {token_id!r} (hub tokens list shows them)")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token
