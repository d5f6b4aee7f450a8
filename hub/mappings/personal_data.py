"""The personal-data policy (law 09-08, data minimisation) and the check every mapping version must pass.

`config/personal-data.yaml` says, for each personal field of the canonical messages (by local name), which
partners may receive it. A version of a mapping to a partner is refused when it would give that partner a field
the policy does not allow it, in either of two ways:
  1. its XPaths (select, test, match, use) name the field: it reads it;
  2. its output on the sample cases of the message types it maps carries a value of the field (4 characters or
     more: a code like 'F' says nothing).
Mappings from a partner to the canonical form give the hub, not a partner, their output: nothing to check."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from lxml import etree

from hub.errors import ConfigError, StylesheetRefused
from hub.mappings import safe
from hub.mappings.catalogue import config_of, describe

POLICY_FILE = "personal-data.yaml"
XSL = "http://www.w3.org/1999/XSL/Transform"
ENVELOPE_NS = "urn:ma:gov:consular:hub:envelope:1"
_FIELD = re.compile(r"^[A-Z][A-Za-z0-9]{0,79}$")
_READS = re.compile(r"(?:\w+:)?([A-Z]\w*)")
MIN_VALUE_LENGTH = 4


@dataclass(frozen=True)
class Policy:
    fields: dict[str, frozenset[str]]   # field local name -> the party codes that may receive it

    def allows(self, field: str, partner: str) -> bool:
        return field not in self.fields or partner in self.fields[field]


def load_policy(settings) -> Policy:
    """config/personal-data.yaml, validated: ConfigError names the file and the key at fault."""
    path = settings.config_dir / POLICY_FILE
    if not path.is_file():
        raise ConfigError(path, "-", "the personal-data policy is missing (fields: field -> partners allowed)")
    return parse_policy(path.read_text(encoding="utf-8"), path=path,
                        parties={p.stem for p in (settings.config_dir / "partners").glob("*.yaml")})


def load_policy_if_present(settings) -> Policy | None:
    """The policy, validated, when the configuration has one (a hub may run without: then every mapping version
    to a partner is refused by `personal_data_violations`, which needs it)."""
    return load_policy(settings) if (settings.config_dir / POLICY_FILE).is_file() else None


def parse_policy(text: str, *, path: Path, parties: set[str]) -> Policy:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, "-", f"not YAML: {exc}") from None
    if not isinstance(raw, dict) or set(raw) != {"fields"}:
        raise ConfigError(path, "-", "expected exactly one key at the top level: fields")
    if not isinstance(raw["fields"], dict) or not raw["fields"]:
        raise ConfigError(path, "fields", "expected a mapping of field -> list of party codes")
    fields = {}
    for name, partners in raw["fields"].items():
        key = f"fields.{name}"
        if not isinstance(name, str) or not _FIELD.match(name):
            raise ConfigError(path, key, "a field is an element's local name starting with a capital, e.g. Cause")
        if not isinstance(partners, list) or not all(isinstance(p, str) for p in partners):
            raise ConfigError(path, key, "expected a list of party codes (an empty list: no partner)")
        unknown = sorted(set(partners) - parties)
        if unknown:
            raise ConfigError(path, key, f"unknown party {unknown[0]!r} (no file config/partners/{unknown[0]}.yaml)")
        fields[name] = frozenset(partners)
    return Policy(fields)


def fields_read(xslt: bytes) -> set[str]:
    """Capitalised names the stylesheet's XPaths mention (the canonical messages' elements are capitalised)."""
    tree = etree.fromstring(xslt, etree.XMLParser(resolve_entities=False, no_network=True))
    expressions = [value for node in tree.iter() if isinstance(node.tag, str) and node.tag.startswith(f"{{{XSL}}}")
                   for name, value in node.attrib.items() if name in ("select", "test", "match", "use")]
    return {name for expression in expressions for name in _READS.findall(expression)}


def personal_values(root, policy: Policy) -> dict[str, set[str]]:
    """field -> the text values it carries in `root` (MIN_VALUE_LENGTH characters or more)."""
    values: dict[str, set[str]] = {}
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname in policy.fields:
            for text in element.itertext():
                if len(text.strip()) >= MIN_VALUE_LENGTH:
                    values.setdefault(etree.QName(element).localname, set()).add(text.strip())
    return values


@lru_cache(maxsize=4)
def _samples(mappings_dir: Path) -> tuple[tuple[str, Path], ...]:
    """(message type, path) of every sample case input that is a canonical message."""
    found = []
    for path in sorted(mappings_dir.glob("*/cases/*/*.input.xml")):
        root = etree.parse(str(path)).getroot()
        found.append((root.findtext(f"{{{ENVELOPE_NS}}}Header/{{{ENVELOPE_NS}}}Type") or "", path))
    return tuple(found)


def samples(settings, message_types) -> list[Path]:
    return [path for kind, path in _samples(settings.mappings_dir.resolve()) if kind in message_types]


def personal_data_violations(mapping: str, xslt: bytes, settings, *, config=None,
                             policy: Policy | None = None) -> list[str]:
    """Why this version would give its partner personal data it may not receive; empty when it would not."""
    config = config or config_of(settings)
    info = describe(config, settings, mapping)
    if info.direction != "to":
        return []
    policy = policy or load_policy(settings)
    partners = {t.partner for t in info.targets} or {info.partner}
    violations = []
    try:
        read = fields_read(xslt)
    except etree.XMLSyntaxError as exc:
        return [f"the stylesheet is not XML: {exc}"]
    for field in sorted(read & set(policy.fields)):
        for partner in sorted(partners):
            if not policy.allows(field, partner):
                violations.append(f"{field}: {partner} may not receive it, and the stylesheet reads it")
    try:
        compiled = safe.compile_stylesheet(xslt, folder=info.folder)
    except StylesheetRefused as exc:
        return violations + [f"the stylesheet is refused: {exc}"]
    for path in samples(settings, info.message_types):
        canonical = etree.parse(str(path)).getroot()
        for target in info.targets:
            if not target.applies_to(canonical):
                continue
            try:
                output = etree.tostring(safe.transform(compiled, canonical), encoding="unicode")
            except StylesheetRefused:
                continue  # a failing stylesheet is the sample cases' business
            for field, values in sorted(personal_values(canonical, policy).items()):
                if policy.allows(field, target.partner):
                    continue
                leaked = sorted(v for v in values if v in output)
                if leaked:
                    violations.append(f"{field}: {target.partner} may not receive it, and the output on "
                                      f"{path.name} carries {leaked[0]!r}")
    return list(dict.fromkeys(violations))
