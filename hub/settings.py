"""Process settings, read once from the environment.

Every setting has a safe default so that `hub serve` and `hub demo` work on a fresh clone:
the database is an SQLite file under `var/`, keys live under `var/pki/`, configuration under `config/`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"setting {name}={raw!r} is not a whole number") from None


def _path(name: str) -> Path | None:
    raw = os.environ.get(name)
    return Path(raw).resolve() if raw else None


@dataclass(frozen=True)
class Settings:
    home: Path = PROJECT_ROOT
    var_dir: Path = PROJECT_ROOT / "var"
    config_dir: Path = PROJECT_ROOT / "config"
    schemas_dir: Path = PROJECT_ROOT / "schemas"
    mappings_dir: Path = PROJECT_ROOT / "mappings"
    database_url: str = ""
    max_message_bytes: int = 1_048_576
    max_xml_depth: int = 64                  # element nesting refused beyond this, before validation
    max_xml_elements: int = 50_000           # elements in one document refused beyond this
    signing_algorithm: str = "rsa-sha256"    # the hub's own key: rsa-sha256 (RSA-2048) or ecdsa-sha256 (P-256)
    certificate_warning_days: int = 30       # certificates expiring sooner are reported
    default_retention_days: int = 365        # payload bytes kept this long when a route names no retention
    tls_certificate: Path | None = None      # `hub serve` speaks HTTPS when both are set
    tls_key: Path | None = None
    tls_client_ca: Path | None = None        # mutual TLS: client certificates must chain to this CA
    tls_client_certificate: str = "none"     # none | optional | required (with tls_client_ca)
    delivery_workers: int = 4
    lease_seconds: int = 60
    poll_interval_seconds: float = 0.5
    partner_concurrency: int = 2             # deliveries in flight to one partner, per hub process
    breaker_failures: int = 5                # consecutive transient failures that open a partner's circuit
    breaker_seconds: int = 30                # how long an open circuit waits before one trial delivery
    max_outbox_depth: int = 10_000           # pending deliveries for one partner past which intake answers 429
    leader_retry_seconds: float = 2.0        # how often a follower tries to become the leader (scheduler, sealer)
    pki_dir: Path = PROJECT_ROOT / "var" / "pki"
    environment: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        home = Path(os.environ.get("HUB_HOME", PROJECT_ROOT)).resolve()
        var_dir = Path(os.environ.get("HUB_VAR_DIR", home / "var")).resolve()
        values = dict(
            home=home,
            var_dir=var_dir,
            config_dir=Path(os.environ.get("HUB_CONFIG_DIR", home / "config")).resolve(),
            schemas_dir=home / "schemas",
            mappings_dir=home / "mappings",
            pki_dir=Path(os.environ.get("HUB_PKI_DIR", var_dir / "pki")).resolve(),
            database_url=os.environ.get("HUB_DATABASE_URL") or f"sqlite:///{var_dir / 'hub.sqlite'}",
            max_message_bytes=_int("HUB_MAX_MESSAGE_BYTES", 1_048_576),
            max_xml_depth=_int("HUB_MAX_XML_DEPTH", 64),
            max_xml_elements=_int("HUB_MAX_XML_ELEMENTS", 50_000),
            signing_algorithm=os.environ.get("HUB_SIGNING_ALGORITHM") or "rsa-sha256",
            certificate_warning_days=_int("HUB_CERTIFICATE_WARNING_DAYS", 30),
            default_retention_days=_int("HUB_DEFAULT_RETENTION_DAYS", 365),
            tls_certificate=_path("HUB_TLS_CERT"),
            tls_key=_path("HUB_TLS_KEY"),
            tls_client_ca=_path("HUB_TLS_CLIENT_CA"),
            tls_client_certificate=os.environ.get("HUB_TLS_CLIENT_CERT") or "none",
            delivery_workers=_int("HUB_DELIVERY_WORKERS", 4),
            lease_seconds=_int("HUB_LEASE_SECONDS", 60),
            partner_concurrency=_int("HUB_PARTNER_CONCURRENCY", 2),
            breaker_failures=_int("HUB_BREAKER_FAILURES", 5),
            breaker_seconds=_int("HUB_BREAKER_SECONDS", 30),
            max_outbox_depth=_int("HUB_MAX_OUTBOX_DEPTH", 10_000),
            leader_retry_seconds=float(os.environ.get("HUB_LEADER_RETRY_SECONDS") or 2.0),
            environment=dict(os.environ),
        )
        if "var_dir" in overrides and "pki_dir" not in overrides and "HUB_PKI_DIR" not in os.environ:
            values["pki_dir"] = Path(overrides["var_dir"]) / "pki"
        values.update(overrides)
        return cls(**values)
