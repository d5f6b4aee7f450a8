"""The audit log of human actions (resend, cancel, token changes, configuration changes, payload views).

Each entry is written in the same transaction as the action it records, and later sealed into its
hash chain like the message timeline (hub/evidence/chains.py). Actions are UPPER_SNAKE: RESEND,
TOKEN_CREATED, TOKEN_REVOKED, PAYLOAD_VIEWED, CONFIG_CHANGED, PURGE, ... Actors read
"token <id> (<name>, <role>)", "cli <os user>", or "hub <os user>@<host>" for what the hub notices itself."""
from __future__ import annotations

import getpass
import hashlib
import socket

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.store.db import utcnow
from hub.store.models import AuditEntry

CONFIG_CHANGED = "CONFIG_CHANGED"


def record(session: Session, *, actor: str, action: str, subject: str = "", detail: str = "",
           digest: str | None = None) -> AuditEntry:
    """Add an (unsealed) audit entry in the caller's transaction; `digest`: sha256 of bytes the action concerns."""
    entry = AuditEntry(at=utcnow(), actor=actor[:120], action=action, subject=subject[:200], detail=detail,
                       digest=digest)
    session.add(entry)
    return entry


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without /etc/passwd entry
        return "unknown"


def cli_actor() -> str:
    return f"cli {os_user()}"


def configuration_manifest(settings) -> dict[str, str]:
    """sha256 of every file under the configuration folder, by path relative to it."""
    root = settings.config_dir
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def _manifest_digest(manifest: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{k} {v}\n" for k, v in manifest.items()).encode()).hexdigest()


def _parse_manifest(detail: str) -> dict[str, str]:
    lines = detail.splitlines()[1:]
    return dict(line.rsplit(" ", 1) for line in lines if " " in line)


def record_configuration(hub) -> AuditEntry | None:
    """At start: a CONFIG_CHANGED entry when the configuration differs from the last one recorded.

    Its digest is the sha256 of the manifest (one "path sha256" line per file, sorted); its detail's
    first line says which files changed, were added or removed, the rest is the manifest itself."""
    manifest = configuration_manifest(hub.settings)
    digest = _manifest_digest(manifest)
    with hub.sessions.begin() as session:
        last = session.scalars(select(AuditEntry).where(AuditEntry.action == CONFIG_CHANGED)
                               .order_by(AuditEntry.id.desc()).limit(1)).first()
        if last is not None and last.digest == digest:
            return None
        before = _parse_manifest(last.detail) if last is not None else {}
        if last is None:
            summary = f"first configuration recorded: {len(manifest)} files"
        else:
            changed = [p for p in manifest if p in before and before[p] != manifest[p]]
            added = [p for p in manifest if p not in before]
            removed = [p for p in before if p not in manifest]
            summary = "; ".join(f"{label}: {', '.join(paths)}" for label, paths in
                                (("changed", changed), ("added", added), ("removed", removed)) if paths) or "reordered"
        detail = summary + "\n" + "".join(f"{k} {v}\n" for k, v in manifest.items())
        return record(session, actor=f"hub {os_user()}@{socket.gethostname()}", action=CONFIG_CHANGED,
                      subject=str(hub.settings.config_dir), detail=detail, digest=digest)
