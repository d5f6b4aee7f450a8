"""XSLT mappings between the canonical format and each partner's own: the active version of each, compiled once
per version and thread.

Until the hub's database is attached the files under mappings/ are the mappings; once attached
(`attach`, at start, after migrating), the active versions stored in the database are (hub/mappings/store.py),
and an activation in any hub process is seen here within POLL_SECONDS: every so often one cheap read of the
activations' generation, and the active versions re-read only when it moved. A caller that needs one version
from start to end (a delivery) takes it once with `version(name)` and applies that.

Stylesheets are compiled by hub/mappings/safe.py: they read nothing outside their partner's folder, call no
extension and write nothing, so a mapping is a pure function of its input document.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from hub.errors import ConfigError, PermanentDeliveryError, StylesheetRefused
from hub.xml import stylesheets as safe

log = logging.getLogger("hub.mappings")
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class ActiveMapping:
    """One version of a mapping, compiled: what maps one message from start to end."""
    name: str
    sha256: str
    xslt: etree.XSLT

    def apply(self, document: etree._Element) -> etree._Element:
        """Transform `document`; a failure is permanent (retrying maps the same bytes)."""
        try:
            result = self.xslt(document)
        except etree.XSLTApplyError as exc:
            raise PermanentDeliveryError(f"mapping {self.name} failed: {exc}") from None
        root = result.getroot()
        if root is None:
            raise PermanentDeliveryError(f"mapping {self.name} produced no document")
        return root


class MappingSet:
    def __init__(self, mappings_dir: Path, *, poll_seconds: float = POLL_SECONDS):
        self.mappings_dir = Path(mappings_dir).resolve()
        self.poll_seconds = poll_seconds
        self._local = threading.local()
        self._refreshing = threading.Lock()
        self._sessions = None
        self._generation: int | None = None
        self._checked_at = 0.0
        sources = {}
        for path in sorted(self.mappings_dir.rglob("*.xsl")):
            data = path.read_bytes()
            sources[path.relative_to(self.mappings_dir).as_posix()] = (hashlib.sha256(data).hexdigest(), data)
        self._sources: dict[str, tuple[str, bytes]] = sources
        for name in sources:
            self.version(name)  # a file that does not compile stops the start, named

    def attach(self, sessions, store, *, schemas_dir: Path | None = None, reads=None) -> None:
        """From now on the active versions in the database rule: the files are loaded as versions first
        (`store` is hub/mappings/store.py, handed over by the engine since XML handling imports no storage:
        load_files is idempotent), with the partner schemas' digests. `reads`: sessions that only read, for
        the look at the activations every few seconds (on SQLite a writing session takes the write lock,
        which a sender would then wait for behind intake)."""
        with sessions.begin() as session:
            changed = store.load_files(session, self.mappings_dir)
            store.load_schemas(session, schemas_dir or self.mappings_dir.parent / "schemas")
        if changed:
            log.info("mappings loaded from files as new active versions: %s", ", ".join(changed))
        self._sessions, self._store = reads or sessions, store
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the active versions if an activation happened since the last look."""
        if self._sessions is None:
            return
        if not self._refreshing.acquire(blocking=force):
            return  # another thread is looking; this one uses what is known
        try:
            self._checked_at = time.monotonic()
            with self._sessions() as session:
                generation = self._store.generation(session)
                if generation != self._generation or force:
                    sources = self._store.active_sources(session)
                    self._sources = {**self._sources, **sources}
                    self._generation = generation
        except Exception:  # the database away for a moment: keep mapping with the versions known
            log.exception("reading the active mapping versions")
        finally:
            self._refreshing.release()

    @property
    def names(self) -> list[str]:
        return sorted(self._sources)

    def version(self, name: str) -> ActiveMapping:
        """The active version of mapping `name`, compiled (once per version and thread)."""
        if self._sessions is not None and time.monotonic() - self._checked_at > self.poll_seconds:
            self.refresh()
        try:
            digest, data = self._sources[name]
        except KeyError:
            raise ConfigError(self.mappings_dir / name, "xslt", "no such mapping") from None
        cache = self._local.__dict__.setdefault("xslt", {})
        compiled = cache.get((name, digest))
        if compiled is None:
            folder = self.mappings_dir / name.split("/", 1)[0]
            try:
                xslt = safe.compile_stylesheet(data, folder=folder)
            except StylesheetRefused as exc:
                raise ConfigError(self.mappings_dir / name, "xslt", exc.detail) from None
            compiled = cache[(name, digest)] = ActiveMapping(name, digest, xslt)
        return compiled

    def source(self, name: str) -> bytes:
        """The XSLT of mapping `name`'s active version as it is now (an activation just made included)."""
        self.refresh(force=True)
        try:
            return self._sources[name][1]
        except KeyError:
            raise ConfigError(self.mappings_dir / name, "xslt", "no such mapping") from None

    def apply(self, name: str, document: etree._Element) -> etree._Element:
        """Transform `document` with the active version of mapping `name`."""
        return self.version(name).apply(document)
