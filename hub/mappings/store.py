"""A mapping's versions and which one is active, in the database.

A mapping is named by its path under mappings/ (`narsa/licence-request.to-narsa.xsl`); its partner is the folder.
Its versions are numbered from 1; the newest activation names the active one. Adding a version compiles it with
hub/mappings/safe.py first, so a stored version always compiles; activating one requires the activation checks
(hub/mappings/gate.py) to pass; rollback activates the version that was active before, in one step. Both are
audited (who, from which version to which, why).

The files under mappings/ at start (`load_files`, idempotent): a mapping with no version gets its file as
version 1, activated by FILES_ACTOR. A file changed on disk becomes a new version, activated, only while the
files rule that mapping, that is while its newest activation is by FILES_ACTOR; once someone has activated a
version through the API or the CLI, the file is left alone (logged) and `hub mappings export` writes the active
versions back as files.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.errors import ActivationConflict, NotFound
from hub.mappings import safe
from hub.store.db import utcnow
from hub.evidence import audit
from hub.store.models import MappingActivation, MappingReplay, MappingVersion, PartnerSchema

log = logging.getLogger("hub.mappings")

FILES_ACTOR = "files under mappings/"
MAPPING_ACTIVATED = "MAPPING_ACTIVATED"
MAPPING_ROLLED_BACK = "MAPPING_ROLLED_BACK"
MAPPING_VERSION_ADDED = "MAPPING_VERSION_ADDED"


@dataclass(frozen=True)
class Version:
    mapping: str
    number: int
    sha256: str
    xslt: bytes
    author: str
    comment: str
    created_at: dt.datetime
    active: bool

    def as_dict(self, *, with_xslt: bool = False) -> dict:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        if with_xslt:
            data["xslt"] = self.xslt.decode("utf-8", "replace")
        else:
            del data["xslt"]
        return data


@dataclass(frozen=True)
class Activation:
    mapping: str
    sequence: int
    number: int
    from_number: int | None
    actor: str
    reason: str
    at: dt.datetime

    def as_dict(self) -> dict:
        return {**asdict(self), "at": self.at.isoformat()}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def partner_of(mapping: str) -> str:
    return mapping.split("/", 1)[0]


def direction_of(mapping: str) -> str:
    """`to` a partner or `from` one, from the file name (`x.to-narsa.xsl`)."""
    stem = Path(mapping).stem
    return "from" if ".from-" in stem else "to"


def folder_of(mappings_dir: Path, mapping: str) -> Path:
    return Path(mappings_dir) / partner_of(mapping)


def _latest_activation(session: Session, mapping: str) -> MappingActivation | None:
    return session.scalars(select(MappingActivation).where(MappingActivation.mapping == mapping)
                           .order_by(MappingActivation.sequence.desc()).limit(1)).first()


def _version(row: MappingVersion, active_number: int | None) -> Version:
    return Version(row.mapping, row.number, row.sha256, bytes(row.xslt), row.author, row.comment, row.created_at,
                   row.number == active_number)


def names(session: Session) -> list[str]:
    return list(session.scalars(select(MappingVersion.mapping).distinct().order_by(MappingVersion.mapping)))


def versions(session: Session, mapping: str) -> list[Version]:
    """The mapping's versions, oldest first; NotFound for a mapping with none."""
    rows = session.scalars(select(MappingVersion).where(MappingVersion.mapping == mapping)
                           .order_by(MappingVersion.number)).all()
    if not rows:
        raise NotFound(f"no mapping {mapping!r}")
    latest = _latest_activation(session, mapping)
    return [_version(row, latest.number if latest else None) for row in rows]


def active(session: Session, mapping: str) -> Version:
    latest = _latest_activation(session, mapping)
    if latest is None:
        raise NotFound(f"no active version of mapping {mapping!r}")
    return get(session, mapping, latest.number)


def get(session: Session, mapping: str, number_or_sha: int | str) -> Version:
    """A version by its number or its sha256 (or a prefix of at least 8 hex digits of it)."""
    query = select(MappingVersion).where(MappingVersion.mapping == mapping)
    if isinstance(number_or_sha, int) or (isinstance(number_or_sha, str) and number_or_sha.isdigit()
                                          and len(number_or_sha) < 8):
        query = query.where(MappingVersion.number == int(number_or_sha))
    elif isinstance(number_or_sha, str) and len(number_or_sha) >= 8:
        query = query.where(MappingVersion.sha256.startswith(number_or_sha.lower(), autoescape=True))
    else:
        raise NotFound(f"no version {number_or_sha!r} of mapping {mapping!r}")
    rows = session.scalars(query.limit(2)).all()
    if len(rows) != 1:
        raise NotFound(f"no version {number_or_sha!r} of mapping {mapping!r}")
    latest = _latest_activation(session, mapping)
    return _version(rows[0], latest.number if latest else None)


def activations(session: Session, mapping: str) -> list[Activation]:
    rows = session.scalars(select(MappingActivation).where(MappingActivation.mapping == mapping)
                           .order_by(MappingActivation.sequence)).all()
    return [Activation(r.mapping, r.sequence, r.number, r.from_number, r.actor, r.reason, r.at) for r in rows]


def generation(session: Session) -> int:
    """Changes whenever any mapping is activated: what every hub process polls."""
    return session.scalar(select(func.max(MappingActivation.id))) or 0


def active_sources(session: Session) -> dict[str, tuple[str, bytes]]:
    """mapping -> (sha256, xslt) of every active version, in one read."""
    newest = (select(MappingActivation.mapping, func.max(MappingActivation.sequence).label("sequence"))
              .group_by(MappingActivation.mapping).subquery())
    rows = session.execute(
        select(MappingVersion.mapping, MappingVersion.sha256, MappingVersion.xslt)
        .join(MappingActivation, (MappingActivation.mapping == MappingVersion.mapping)
              & (MappingActivation.number == MappingVersion.number))
        .join(newest, (newest.c.mapping == MappingActivation.mapping)
              & (newest.c.sequence == MappingActivation.sequence)))
    return {mapping: (digest, bytes(xslt)) for mapping, digest, xslt in rows}


def add_version(session: Session, mapping: str, xslt: bytes, *, author: str, comment: str = "",
                mappings_dir: Path | None = None) -> Version:
    """A new version of `mapping` (compiled by hub/mappings/safe.py first: StylesheetRefused, naming the line and
    the reason, when it may not be stored); the same XSLT as an existing version returns that version."""
    from hub.settings import Settings
    folder = folder_of(mappings_dir or Settings.from_env().mappings_dir, mapping)
    safe.compile_stylesheet(xslt, folder=folder)
    digest = sha256(xslt)
    existing = session.scalars(select(MappingVersion).where(MappingVersion.mapping == mapping,
                                                            MappingVersion.sha256 == digest)).first()
    latest = _latest_activation(session, mapping)
    if existing is not None:
        return _version(existing, latest.number if latest else None)
    number = (session.scalar(select(func.max(MappingVersion.number)).where(MappingVersion.mapping == mapping))
              or 0) + 1
    row = MappingVersion(mapping=mapping, number=number, sha256=digest, xslt=xslt, author=author[:120],
                         comment=comment, created_at=utcnow())
    try:
        with session.begin_nested():  # another version of the mapping stored at the same moment took the number
            session.add(row)
    except IntegrityError:
        raise ActivationConflict(f"another version of {mapping} was stored at the same moment; send it again") \
            from None
    if author != FILES_ACTOR:
        audit.record(session, actor=author, action=MAPPING_VERSION_ADDED, subject=mapping,
                     detail=f"version {number}: {comment}", digest=digest)
    return _version(row, latest.number if latest else None)


def record_replay(session: Session, mapping: str, number: int, *, actor: str, messages: int, identical: int,
                  different: int, invalid: int) -> None:
    """Keep a replay's result (hub/mappings/checks.py replay) so that the version's activation shows it."""
    session.add(MappingReplay(mapping=mapping, number=number, at=utcnow(), actor=actor[:120], messages=messages,
                              identical=identical, different=different, invalid=invalid))


def replay(hub, mapping: str, xslt: bytes, *, actor: str, **window):
    """hub/mappings/checks.py `replay` of `xslt` by `actor` (audited), its counts kept with the stored version it
    is (`keep_replay`), so that the version's activation shows them."""
    from hub.mappings import checks
    report = checks.replay(hub, mapping, xslt, actor=actor, **window)
    with hub.sessions.begin() as session:
        keep_replay(session, mapping, xslt, report, actor=actor)
    return report


def keep_replay(session: Session, mapping: str, xslt: bytes, report, *, actor: str) -> None:
    """A replay's counts (hub/mappings/checks.py `ReplayReport`) kept with the stored version whose XSLT was
    replayed; a draft that is no stored version is only in the audit log."""
    row = session.scalars(select(MappingVersion).where(MappingVersion.mapping == mapping,
                                                       MappingVersion.sha256 == hashlib.sha256(xslt).hexdigest())
                          .limit(1)).first()
    if row is not None and report.refused is None:
        record_replay(session, mapping, row.number, actor=actor, messages=report.messages,
                      identical=report.identical, different=report.different, invalid=report.invalid)


def last_replay(session: Session, mapping: str, number: int) -> dict | None:
    """The newest replay of that version, or None when it was never replayed."""
    row = session.scalars(select(MappingReplay).where(MappingReplay.mapping == mapping, MappingReplay.number == number)
                          .order_by(MappingReplay.id.desc()).limit(1)).first()
    if row is None:
        return None
    return {"at": row.at.isoformat(), "actor": row.actor, "messages": row.messages, "identical": row.identical,
            "different": row.different, "invalid": row.invalid}


def _write_activation(session: Session, mapping: str, number: int, from_number: int | None, sequence: int, *,
                      actor: str, reason: str) -> None:
    """The activation row, in a savepoint: another activation of the same mapping committed first -> ActivationConflict."""
    try:
        with session.begin_nested():
            session.add(MappingActivation(mapping=mapping, sequence=sequence, number=number,
                                          from_number=from_number, actor=actor[:120], reason=reason, at=utcnow()))
    except IntegrityError:
        raise ActivationConflict(f"another activation of {mapping} happened at the same time; look again and retry") from None


def activate(session: Session, mapping: str, number: int, *, actor: str, reason: str,
             settings=None, expected_active: int | None = None) -> Version:
    """Make version `number` the active one, after the activation checks pass (hub/mappings/gate.py).

    ActivationConflict (409) for a version that does not exist or is already active, or when another activation of the
    mapping wins the race (or `expected_active`, the version the caller saw active, is no longer it)."""
    from hub.mappings import gate
    try:
        version = get(session, mapping, number)
    except NotFound:
        raise ActivationConflict(f"mapping {mapping!r} has no version {number}") from None
    latest = _latest_activation(session, mapping)
    current = latest.number if latest else None
    if version.number == current:
        raise ActivationConflict(f"version {version.number} of {mapping} is already active")
    if expected_active is not None and expected_active != current:
        raise ActivationConflict(f"version {current} of {mapping} is active now, not {expected_active}; look again")
    gate.require_checks(mapping, version.xslt, settings)
    _write_activation(session, mapping, version.number, current, (latest.sequence if latest else 0) + 1,
                      actor=actor, reason=reason)
    audit.record(session, actor=actor, action=MAPPING_ACTIVATED, subject=mapping,
                 detail=f"version {current} -> {version.number}: {reason}", digest=version.sha256)
    return Version(**{**asdict(version), "active": True})


def rollback(session: Session, mapping: str, *, actor: str, reason: str, settings=None,
             expected_active: int | None = None) -> Version:
    """Activate the version that was active before the current one (one step back in the activation history);
    ActivationConflict when there is none, or when `expected_active`, the version the caller saw active, is no
    longer it (a form sent twice must not roll the rollback back)."""
    history = activations(session, mapping)
    if not history:
        raise NotFound(f"no mapping {mapping!r}")
    current = history[-1]
    if expected_active is not None and expected_active != current.number:
        raise ActivationConflict(f"version {current.number} of {mapping} is active now, not {expected_active}; "
                                 "look again before rolling back")
    if current.from_number is None:
        raise ActivationConflict(f"{mapping} has no earlier active version to roll back to")
    version = get(session, mapping, current.from_number)
    _write_activation(session, mapping, version.number, current.number, current.sequence + 1,
                      actor=actor, reason=reason)
    audit.record(session, actor=actor, action=MAPPING_ROLLED_BACK, subject=mapping,
                 detail=f"version {current.number} -> {version.number}: {reason}", digest=version.sha256)
    return Version(**{**asdict(version), "active": True})


def load_files(session: Session, mappings_dir: Path) -> list[str]:
    """The files under mappings/ as versions (see the module's docstring for the rule); returns the mappings
    whose active version changed."""
    mappings_dir = Path(mappings_dir)
    changed = []
    for path in sorted(mappings_dir.glob("*/*.xsl")):
        mapping = path.relative_to(mappings_dir).as_posix()
        data = path.read_bytes()
        latest = _latest_activation(session, mapping)
        if latest is not None:
            active_sha = session.scalar(select(MappingVersion.sha256).where(
                MappingVersion.mapping == mapping, MappingVersion.number == latest.number))
            if active_sha == sha256(data):
                continue
            if latest.actor != FILES_ACTOR:
                log.info("%s differs from its active version %s, activated by %s: the file is not loaded "
                         "(hub mappings export writes the active versions back)", path, latest.number, latest.actor)
                continue
        version = add_version(session, mapping, data, author=FILES_ACTOR, comment=f"from {path.name}",
                              mappings_dir=mappings_dir)
        _write_activation(session, mapping, version.number, latest.number if latest else None,
                          (latest.sequence if latest else 0) + 1, actor=FILES_ACTOR, reason="the file changed"
                          if latest else "the file as first version")
        changed.append(mapping)
    return changed


def load_schemas(session: Session, schemas_dir: Path) -> None:
    """The XSDs under schemas/ with their sha256 (read-only: listed, not edited)."""
    stored = dict(session.execute(select(PartnerSchema.name, PartnerSchema.sha256)).all())
    for path in sorted(Path(schemas_dir).rglob("*.xsd")):
        name = path.relative_to(schemas_dir).as_posix()
        digest = sha256(path.read_bytes())
        if stored.get(name) == digest:
            continue
        row = session.get(PartnerSchema, name) or PartnerSchema(name=name)
        row.sha256, row.loaded_at = digest, utcnow()
        session.add(row)


def schemas(session: Session) -> list[dict]:
    """The partner schemas as loaded at the last start: name, sha256, when."""
    return [{"name": name, "sha256": digest, "loaded_at": at.isoformat()} for name, digest, at in
            session.execute(select(PartnerSchema.name, PartnerSchema.sha256, PartnerSchema.loaded_at)
                            .order_by(PartnerSchema.name))]


def export(session: Session, mappings_dir: Path) -> list[Path]:
    """Write each active version back as its file (so a team keeps them in git); returns the files rewritten."""
    written = []
    for mapping, (_, xslt) in sorted(active_sources(session).items()):
        path = Path(mappings_dir) / mapping
        if path.exists() and path.read_bytes() == xslt:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(xslt)
        written.append(path)
    return written
