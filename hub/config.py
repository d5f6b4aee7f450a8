"""Partners and routes, loaded from `config/` and validated before anything else starts.

    config/partners/<CODE>.yaml   one party each: the file name is its code
    config/routes/<flow>.yaml     `namespaces`, `routes` and `inbound` of one flow

The models below are the documentation of every key; each connector's `Config` model documents its
`connection` settings. Validation is pure apart from checking that the files a key names exist:
unknown keys, unknown transports or partners, bad `when` expressions, a missing mapping or schema
are all errors naming the file and the key.
"""
from __future__ import annotations

import difflib
import re
import threading
from pathlib import Path
from typing import Any

import yaml
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.errors import ConfigError
from hub.settings import Settings

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it: ~10x faster

VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")  # ${NAME} or ${NAME:-default}, in any value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    max_attempts: int = Field(8, ge=1, le=100, description="Deliveries tried before the message is dead-lettered.")
    base_delay_seconds: float = Field(2.0, gt=0, description="First retry delay; doubles each attempt, with jitter.")
    max_delay_seconds: float = Field(300.0, gt=0, description="Ceiling of one retry delay (Retry-After may exceed it).")


class Party(_Strict):
    name: str = Field(description="The administration's name, for people.")
    transport: str = Field(description="How the hub exchanges with it: `rest`, `soap`, `sftp`, or `local` "
                                       "(an in-process consumer: the registry). See connectors/.")
    certificates: list[Path] = Field(default_factory=list, description="The party's pinned signing certificates "
                                     "(PEM). During a key rotation list the old and the new one: both are accepted "
                                     "while valid.")
    ca: Path | None = Field(None, description="A CA certificate (PEM): any valid certificate it issued whose "
                                              "subject CN is the party's code is accepted for this party.")
    may_send: list[str] = Field(default_factory=list, description="Canonical message types this party may send "
                                                                  "to the hub; anything else is refused (403).")
    may_receive: list[str] = Field(default_factory=list, description="Canonical message types the hub may deliver "
                                                                     "to this party.")
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Connect/read timeout of one delivery.")
    max_in_flight: int | None = Field(None, ge=1, le=256, description="Deliveries in flight to this party from "
                                      "one hub process, at most (default `HUB_PARTNER_CONCURRENCY`): lower it for a "
                                      "partner that cannot answer that many requests at once.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="How failed deliveries to this party "
                                                                       "are tried again (keys below).")
    connection: Any = Field(default_factory=dict, description="Transport settings, validated by the "
                                                              "connector's own `Config` model.")


class RouteTarget(_Strict):
    partner: str = Field(description="The recipient's party code (a file under config/partners/).")
    mapping: str | None = Field(None, description="XSLT under mappings/ from the canonical envelope to the "
                                                  "partner's document.")
    schema_: str | None = Field(None, alias="schema", description="Partner XSD under schemas/ the mapped "
                                                                  "document must satisfy.")
    operation: str | None = Field(None, description="SOAP: the WSDL operation; REST: the path under the "
                                                    "partner's endpoint.")
    when: str | None = Field(None, description="XPath 1.0 boolean over the canonical envelope (prefixes from "
                                               "the file's `namespaces`): deliver only when it is true.")
    namespaces: dict[str, str] = Field(default_factory=dict, exclude=True)

    def applies_to(self, envelope) -> bool:
        return self.when is None or bool(_xpath(self.when, self.namespaces)(envelope))  # checked at load


class Route(_Strict):
    type: str = Field(description="Canonical message type (the header's Type).")
    from_: list[str] = Field(alias="from", min_length=1, description="Parties allowed to send this type.")
    to: list[RouteTarget] = Field(min_length=1, description="Recipients: one delivery each (fan-out).")
    answer: bool = Field(False, description="Messages of this type answer one the hub delivered to their "
                                            "sender: on every door they must carry InReplyTo naming a message "
                                            "the hub delivered to that sender, in the same case.")
    retention_days: int | None = Field(None, ge=1, description="Days a message of this type keeps its payload "
                                                               "bytes once final; then they are purged (hashes "
                                                               "stay). Default: HUB_DEFAULT_RETENTION_DAYS.")


class InboundRoute(_Strict):
    partner: str = Field(description="The party whose own documents (answers, callbacks, files) this entry reads.")
    root: str = Field(description="Clark name of the partner document's root element, {namespace}Name.")
    schema_: str = Field(alias="schema", description="Partner XSD under schemas/ the document must satisfy "
                                                     "before it is mapped.")
    mapping: str = Field(description="XSLT under mappings/ from the partner's document to the canonical "
                                     "envelope.")


class RoutesFile(_Strict):
    namespaces: dict[str, str] = Field(default_factory=dict, description="Prefixes usable in `when`.")
    routes: list[Route] = Field([], description="Where each canonical message type may come from and go to "
                                                "(keys below).")
    inbound: list[InboundRoute] = Field([], description="Partners' own documents that the hub turns into "
                                                        "canonical messages (keys below).")


class HubConfig(_Strict):
    parties: dict[str, Party]
    routes: list[Route]
    inbound: list[InboundRoute] = []

    def route_for(self, message_type: str) -> Route | None:
        return next((r for r in self.routes if r.type == message_type), None)

    def inbound_for(self, partner: str, root_tag: str) -> InboundRoute | None:
        return next((r for r in self.inbound if r.partner == partner and r.root == root_tag), None)


_xpaths = threading.local()


def _xpath(expression: str, namespaces: dict[str, str]) -> etree.XPath:
    """Compiled once per thread (lxml XPath objects are not shared between threads)."""
    cache = _xpaths.__dict__.setdefault("cache", {})
    key = (expression, tuple(sorted(namespaces.items())))
    if key not in cache:
        cache[key] = etree.XPath(f"boolean({expression})", namespaces=namespaces)
    return cache[key]


def _interpolate(value, env: dict, file: Path, key: str):
    if isinstance(value, dict):
        return {k: _interpolate(v, env, file, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):
        def substitute(match):
            name, default = match.group(1), match.group(2)
            if env.get(name):
                return env[name]
            if default is not None:
                return default
            raise ConfigError(file, key, f"${{{name}}} is not set and has no default")
        return VARIABLE.sub(substitute, value)
    return value


def _read(path: Path, env: dict) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
    except FileNotFoundError:
        raise ConfigError(path, "-", "file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "-", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "-", "expected a mapping at the top level")
    return _interpolate(data, env, path, "")


def _key(parts) -> str:
    """routes[0].to[1].partner: names joined by dots, list positions in brackets."""
    key = ""
    for part in parts:
        if part == "":
            continue
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "-"


def _raise_first(exc: ValidationError, file: Path, *prefix) -> None:
    err = exc.errors()[0]
    reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    raise ConfigError(file, _key((*prefix, *err["loc"])), reason)


PARTY_CODE = re.compile(r"^[A-Z][A-Z_]{1,19}$")


def load_config(settings: Settings) -> HubConfig:
    """Every `config/partners/<CODE>.yaml` and `config/routes/*.yaml`, validated together."""
    env = {**settings.environment, "HUB_VAR_DIR": str(settings.var_dir),
           "HUB_PKI_DIR": str(settings.pki_dir), "HUB_HOME": str(settings.home)}
    partners_dir, routes_dir = settings.config_dir / "partners", settings.config_dir / "routes"
    parties: dict[str, Party] = {}
    party_files: dict[str, Path] = {}
    for file in _yaml_files(partners_dir):
        code = file.stem
        if not PARTY_CODE.match(code):
            raise ConfigError(file, "-", f"the file name is the party code: {code!r} is not one "
                                         "(capitals and underscores, e.g. ETAT_CIVIL.yaml)")
        parties[code] = _party(file, _read(file, env))
        party_files[code] = file
    routes, inbound, route_files = [], [], {}
    for file in _yaml_files(routes_dir):
        try:
            content = RoutesFile.model_validate(_read(file, env))
        except ValidationError as exc:
            _raise_first(exc, file)
        for i, route in enumerate(content.routes):
            targets = [t.model_copy(update={"namespaces": content.namespaces}) for t in route.to]
            for j, target in enumerate(targets):
                if target.when:
                    try:  # evaluated once: an undeclared prefix only shows when the expression runs
                        _xpath(target.when, content.namespaces)(etree.Element("probe"))
                    except etree.XPathError as exc:
                        raise ConfigError(file, f"routes[{i}].to[{j}].when", f"not a valid XPath: {exc}") from None
            routes.append(route.model_copy(update={"to": targets}))
            route_files[len(routes) - 1] = (file, i)
        inbound.extend((file, i, entry) for i, entry in enumerate(content.inbound))
    config = HubConfig(parties=parties, routes=routes, inbound=[entry for _, _, entry in inbound])
    _check_consistency(config, settings, party_files, route_files, inbound)
    return config


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ConfigError(directory, "-", "folder not found")
    return sorted(directory.glob("*.yaml"))


def _party(file: Path, raw: dict) -> Party:
    from connectors import connector_class

    try:
        party = Party.model_validate(raw)
    except ValidationError as exc:
        _raise_first(exc, file)
    try:
        cls = connector_class(party.transport)
    except KeyError as exc:
        raise ConfigError(file, "transport", exc.args[0]) from None
    if not isinstance(party.connection, dict):
        raise ConfigError(file, "connection", "expected a mapping of transport settings")
    try:
        connection = cls.Config.model_validate(party.connection)
    except ValidationError as exc:
        _raise_first(exc, file, "connection")
    return party.model_copy(update={"connection": connection})


def _check_consistency(config: HubConfig, settings: Settings, party_files: dict, route_files: dict,
                       inbound: list) -> None:
    def known(code: str, file: Path, key: str) -> None:
        if code not in config.parties:
            raise ConfigError(file, key, f"unknown party {code!r} (known: {', '.join(sorted(config.parties))})")

    for code, party in config.parties.items():  # connection settings naming a file under schemas/
        for name, field in type(party.connection).model_fields.items():
            value = getattr(party.connection, name)
            if (field.json_schema_extra or {}).get("file_under") == "schemas" and value \
                    and not (settings.schemas_dir / value).is_file():
                raise ConfigError(party_files[code], f"connection.{name}", f"no file schemas/{value}")
    seen: dict[str, Path] = {}
    for n, route in enumerate(config.routes):
        file, i = route_files[n]
        if route.type in seen:
            raise ConfigError(file, f"routes[{i}].type", f"{route.type!r} is already routed in {seen[route.type].name}")
        seen[route.type] = file
        for code in route.from_:
            known(code, file, f"routes[{i}].from")
        for j, target in enumerate(route.to):
            known(target.partner, file, f"routes[{i}].to[{j}].partner")
            if target.mapping and not (settings.mappings_dir / target.mapping).is_file():
                raise ConfigError(file, f"routes[{i}].to[{j}].mapping", f"no file mappings/{target.mapping}")
            if target.schema_ and not (settings.schemas_dir / target.schema_).is_file():
                raise ConfigError(file, f"routes[{i}].to[{j}].schema", f"no file schemas/{target.schema_}")
    for file, i, entry in inbound:
        known(entry.partner, file, f"inbound[{i}].partner")
        if not (settings.mappings_dir / entry.mapping).is_file():
            raise ConfigError(file, f"inbound[{i}].mapping", f"no file mappings/{entry.mapping}")
        if not (settings.schemas_dir / entry.schema_).is_file():
            raise ConfigError(file, f"inbound[{i}].schema", f"no file schemas/{entry.schema_}")
    _check_access_lists(config, settings, party_files, route_files, inbound)


def _check_access_lists(config: HubConfig, settings: Settings, party_files: dict, route_files: dict,
                        inbound: list) -> None:
    """The parties' access lists (`may_send`, `may_receive`) and the routes say the same thing.

    A route's `from` party must list the type in its `may_send`, a route's recipient in its `may_receive`;
    every type an access list names must be routed, from or to that party (a typo gets a "did you mean");
    an inbound mapping that writes a fixed canonical Type must write one its partner may send."""
    routed = {route.type: n for n, route in enumerate(config.routes)}

    def where(n: int) -> tuple[Path, int]:
        return route_files[n]

    for n, route in enumerate(config.routes):
        file, i = where(n)
        for k, code in enumerate(route.from_):
            if route.type not in config.parties[code].may_send:
                raise ConfigError(file, f"routes[{i}].from[{k}]",
                                  f"{code} may not send {route.type}: its may_send in {party_files[code].name} "
                                  f"does not list it (add it there, or remove {code} from this route)")
        for j, target in enumerate(route.to):
            if route.type not in config.parties[target.partner].may_receive:
                raise ConfigError(file, f"routes[{i}].to[{j}].partner",
                                  f"{target.partner} may not receive {route.type}: its may_receive in "
                                  f"{party_files[target.partner].name} does not list it (add it there, or remove "
                                  "this recipient)")
    for code, party in config.parties.items():
        for key, types in (("may_send", party.may_send), ("may_receive", party.may_receive)):
            for k, message_type in enumerate(types):
                n = routed.get(message_type)
                if n is None:
                    close = difflib.get_close_matches(message_type, list(routed), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ConfigError(party_files[code], f"{key}[{k}]",
                                      f"no route has message type {message_type!r}{hint}")
                route, (file, i) = config.routes[n], where(n)
                if key == "may_send" and code not in route.from_:
                    raise ConfigError(party_files[code], f"{key}[{k}]",
                                      f"{code} may send {message_type}, but {file.name} routes[{i}].from does not "
                                      f"name {code}: both must say the same")
                if key == "may_receive" and code not in {t.partner for t in route.to}:
                    raise ConfigError(party_files[code], f"{key}[{k}]",
                                      f"{code} may receive {message_type}, but no recipient of {file.name} "
                                      f"routes[{i}] is {code}: both must say the same")
    for file, i, entry in inbound:
        for message_type in _fixed_types(settings.mappings_dir / entry.mapping):
            if message_type not in config.parties[entry.partner].may_send:
                raise ConfigError(file, f"inbound[{i}].mapping",
                                  f"{entry.mapping} makes a {message_type}, which {entry.partner} may not send "
                                  f"(its may_send: {', '.join(config.parties[entry.partner].may_send) or 'nothing'})")


_ENVELOPE_TYPE = "{urn:ma:gov:consular:hub:envelope:1}Type"


def _fixed_types(mapping: Path) -> set[str]:
    """The canonical message types an XSLT writes as literal text of env:Type (none when it computes them)."""
    try:
        tree = etree.parse(str(mapping), etree.XMLParser(resolve_entities=False, no_network=True))
    except (OSError, etree.XMLSyntaxError):
        return set()  # reported when the mapping is compiled
    return {node.text.strip() for node in tree.iter(_ENVELOPE_TYPE) if node.text and node.text.strip()}
