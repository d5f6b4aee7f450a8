"""Partners and routes, loaded from `config/` and validated before anything else starts.

The models below are the documentation of every key. Validation is pure apart from checking that
the files a key names exist: unknown keys, unknown partners in routes, a REST partner without an
endpoint, a missing mapping or schema are all errors naming the file and the key.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.errors import ConfigError
from hub.settings import Settings

_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    max_attempts: int = Field(8, ge=1, le=100, description="Deliveries tried before the message is dead-lettered.")
    base_delay_seconds: float = Field(2.0, gt=0, description="First retry delay; doubles each attempt, with jitter.")
    max_delay_seconds: float = Field(300.0, gt=0, description="Ceiling of one retry delay (Retry-After may exceed it).")


class Party(_Strict):
    name: str = Field(description="The administration's name, for people.")
    transport: Literal["rest", "local"] = Field(description="How the hub delivers to it: `rest` (XML over HTTP) "
                                                            "or `local` (an in-process consumer: the registry).")
    endpoint: str | None = Field(None, description="URL the REST connector posts to.")
    certificate: Path = Field(description="The party's pinned signing certificate (PEM).")
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Connect/read timeout of one delivery.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class RouteTarget(_Strict):
    partner: str
    mapping: str | None = Field(None, description="XSLT under mappings/ from the canonical envelope to the "
                                                  "partner's document.")
    schema_: str | None = Field(None, alias="schema", description="Partner XSD under schemas/ the mapped "
                                                                  "document must satisfy.")


class Route(_Strict):
    type: str = Field(description="Canonical message type (the header's Type).")
    from_: list[str] = Field(alias="from", min_length=1, description="Parties allowed to send this type.")
    to: list[RouteTarget] = Field(min_length=1, description="Recipients: one delivery each (fan-out).")


class InboundRoute(_Strict):
    partner: str
    root: str = Field(description="Clark name of the partner document's root element, {namespace}Name.")
    schema_: str = Field(alias="schema")
    mapping: str


class HubConfig(_Strict):
    parties: dict[str, Party]
    routes: list[Route]
    inbound: list[InboundRoute] = []

    def route_for(self, message_type: str) -> Route | None:
        return next((r for r in self.routes if r.type == message_type), None)

    def inbound_for(self, partner: str, root_tag: str) -> InboundRoute | None:
        return next((r for r in self.inbound if r.partner == partner and r.root == root_tag), None)


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
        return _VAR.sub(substitute, value)
    return value


def _read(path: Path, env: dict) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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


def load_config(settings: Settings) -> HubConfig:
    env = {**os.environ, **settings.environment, "HUB_VAR_DIR": str(settings.var_dir),
           "HUB_PKI_DIR": str(settings.pki_dir), "HUB_HOME": str(settings.home)}
    partners_file = settings.config_dir / "partners.yaml"
    routes_file = settings.config_dir / "routes.yaml"
    parties_raw = _read(partners_file, env)
    routes_raw = _read(routes_file, env)
    for file, raw, allowed in ((partners_file, parties_raw, {"parties"}), (routes_file, routes_raw, {"routes", "inbound"})):
        for key in raw:
            if key not in allowed:
                raise ConfigError(file, key, f"unknown key (expected {', '.join(sorted(allowed))})")
    parties_section = parties_raw.get("parties") or {}
    if not isinstance(parties_section, dict):
        raise ConfigError(partners_file, "parties", "expected a mapping of party code to settings")
    parties = {}
    for code, body in parties_section.items():
        try:
            parties[code] = Party.model_validate(body)
        except ValidationError as exc:
            _raise_first(exc, partners_file, "parties", code)
    try:
        config = HubConfig.model_validate({"parties": parties, "routes": routes_raw.get("routes") or [],
                                           "inbound": routes_raw.get("inbound") or []})
    except ValidationError as exc:
        _raise_first(exc, routes_file)
    _check_consistency(config, settings, partners_file, routes_file)
    return config


def _check_consistency(config: HubConfig, settings: Settings, partners_file: Path, routes_file: Path) -> None:
    def known(code: str, key: str) -> None:
        if code not in config.parties:
            raise ConfigError(routes_file, key, f"unknown party {code!r} (known: {', '.join(sorted(config.parties))})")

    for code, party in config.parties.items():
        if party.transport == "rest" and not party.endpoint:
            raise ConfigError(partners_file, f"parties.{code}.endpoint", "a rest partner needs an endpoint")
    seen = set()
    for i, route in enumerate(config.routes):
        if route.type in seen:
            raise ConfigError(routes_file, f"routes[{i}].type", f"{route.type!r} is routed twice")
        seen.add(route.type)
        for code in route.from_:
            known(code, f"routes[{i}].from")
        for j, target in enumerate(route.to):
            known(target.partner, f"routes[{i}].to[{j}].partner")
            if target.mapping and not (settings.mappings_dir / target.mapping).is_file():
                raise ConfigError(routes_file, f"routes[{i}].to[{j}].mapping", f"no file mappings/{target.mapping}")
            if target.schema_ and not (settings.schemas_dir / target.schema_).is_file():
                raise ConfigError(routes_file, f"routes[{i}].to[{j}].schema", f"no file schemas/{target.schema_}")
    for i, inbound in enumerate(config.inbound):
        known(inbound.partner, f"inbound[{i}].partner")
        if not (settings.mappings_dir / inbound.mapping).is_file():
            raise ConfigError(routes_file, f"inbound[{i}].mapping", f"no file mappings/{inbound.mapping}")
        if not (settings.schemas_dir / inbound.schema_).is_file():
            raise ConfigError(routes_file, f"inbound[{i}].schema", f"no file schemas/{inbound.schema_}")
