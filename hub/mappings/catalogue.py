"""What the hub knows of one mapping without running it: its partner, direction, the routes that use it, the
schema its output must satisfy, its sample cases, and the stylesheet now in force.

`active_stylesheet` is the one place the checks read "the active version": today the file under mappings/,
once versions are stored, `hub.mappings.store.active(session, name).xslt`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hub.errors import NotFound

ENVELOPE_NS = "urn:ma:gov:consular:hub:envelope:1"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*/[A-Za-z0-9][A-Za-z0-9.-]*\.(to|from)-[a-z0-9-]+\.xsl$")


@dataclass(frozen=True)
class Case:
    name: str
    input: Path
    expected: Path


@dataclass(frozen=True)
class MappingInfo:
    name: str                    # its path under mappings/, e.g. narsa/licence-request.to-narsa.xsl
    direction: str               # "to" (canonical -> partner) or "from" (partner -> canonical)
    partner: str                 # the party code its output goes to ("to") or its input comes from ("from")
    folder: Path                 # the mapping's own folder: the only place its stylesheet may read from
    schema: str                  # the schema its output must satisfy: the partner's XSD, or "canonical"
    message_types: tuple[str, ...] = ()   # "to": the canonical types whose route targets use it
    roots: tuple[str, ...] = ()           # "from": the partner document roots its inbound entries read
    targets: tuple = field(default=(), compare=False)  # "to": the RouteTarget entries (their `when`)

    @property
    def cases_dir(self) -> Path:
        return self.folder / "cases" / self.name.rsplit("/", 1)[1].removesuffix(".xsl")

    def cases(self) -> list[Case]:
        return [Case(p.name.removesuffix(".input.xml"), p, p.with_name(p.name.replace(".input.xml", ".expected.xml")))
                for p in sorted(self.cases_dir.glob("*.input.xml"))]

    def applies_to(self, document) -> bool:
        """Whether a delivery would map `document` with this mapping (a route target's `when`, an inbound root)."""
        if self.direction == "from":
            return document.tag in self.roots
        kind = document.findtext(f"{{{ENVELOPE_NS}}}Header/{{{ENVELOPE_NS}}}Type")
        if self.message_types and kind not in self.message_types:
            return False
        return any(target.applies_to(document) for target in self.targets) if self.targets else True


def describe(config, settings, name: str) -> MappingInfo:
    """The mapping called `name`; NotFound when it is not a mapping under mappings/ (nothing outside is read)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise NotFound(f"no mapping {name!r} (a mapping is named by its path under mappings/, "
                       "e.g. narsa/licence-request.to-narsa.xsl)")
    path = (settings.mappings_dir / name).resolve()
    if not path.is_file() or settings.mappings_dir.resolve() not in path.parents:
        raise NotFound(f"no mapping {name!r}")
    direction = _NAME.match(name).group(1)
    folder = path.parent
    if direction == "to":
        uses = [(route.type, target) for route in config.routes for target in route.to if target.mapping == name]
        partner = uses[0][1].partner if uses else _party_of(folder)
        schema = next((t.schema_ for _, t in uses if t.schema_), None) or "canonical"
        return MappingInfo(name, direction, partner, folder, schema,
                           message_types=tuple(dict.fromkeys(t for t, _ in uses)),
                           targets=tuple(t for _, t in uses))
    entries = [entry for entry in config.inbound if entry.mapping == name]
    partner = entries[0].partner if entries else _party_of(folder)
    return MappingInfo(name, direction, partner, folder, "canonical", roots=tuple(e.root for e in entries))


_configs: dict[int, tuple] = {}


def config_of(settings):
    """The routes and partners of `settings`, loaded once per settings object."""
    from hub.config import load_config
    held = _configs.get(id(settings))
    if held is None or held[0] is not settings:
        held = _configs[id(settings)] = (settings, load_config(settings))
    return held[1]


def all_mappings(config, settings) -> list[MappingInfo]:
    root = settings.mappings_dir.resolve()
    return [describe(config, settings, str(p.relative_to(root))) for p in sorted(root.glob("*/*.xsl"))]


def _party_of(folder: Path) -> str:
    return folder.name.upper().replace("-", "_")


def active_stylesheet(hub, info: MappingInfo) -> bytes:
    """The XSLT of the mapping's active version, as the hub's deliveries use it (hub/xml/mapping.py)."""
    return hub.mappings.source(info.name)
