"""Process settings: one spec, read once from the environment.

Each setting below is declared once, with its type, default, environment variable (HUB_ and the name in
capitals unless the field says otherwise) and description; docs/configuration.md is generated from it
(`hub config docs`). Every setting has a safe default so that `hub serve` and `hub demo` work on a fresh
clone: the database is an SQLite file under `var/`, keys live under `var/pki/`, configuration under
`config/`.

    Settings.from_env()                                  the process's environment
    Settings.from_env(var_dir=..., environment={...})    keyword overrides win over the mapping read

A value that does not fit its type or range, or a HUB_ variable that is a near miss of a setting's
name, is a ConfigError naming the variable. Nothing else in the hub reads the environment: the
mapping read is kept as `environment`, where the `${VAR}`s of config/ are looked up.
"""
from __future__ import annotations

import difflib
import os
import re
from contextvars import ContextVar
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from hub.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "HUB_"
SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")
_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+")

_environ: ContextVar[Mapping[str, str] | None] = ContextVar("hub_settings_environ", default=None)


def _derived(shown: str) -> dict:
    """Extra schema of a setting whose default follows from another one (shown as such in the docs)."""
    return {"default_shown": shown}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False, frozen=True, extra="forbid",
                                      populate_by_name=True, env_ignore_empty=True)

    # -- where things are -------------------------------------------------------------------------------
    home: Path = Field(PROJECT_ROOT, description="The hub's folder: the other folders default to places "
                                                 "under it.", json_schema_extra=_derived("the folder holding `hub/`"))
    var_dir: Path = Field(None, validate_default=False, json_schema_extra=_derived("`$HUB_HOME/var`"),
                          description="Working files: the SQLite database, the sandboxes' files, the demo's "
                                      "report, CDG batch files.")
    config_dir: Path = Field(None, validate_default=False, json_schema_extra=_derived("`$HUB_HOME/config`"),
                             description="`partners/<CODE>.yaml`, `routes/<flow>.yaml` and `reference/posts.csv`.")
    schemas_dir: Path = Field(None, validate_default=False, json_schema_extra=_derived("`$HUB_HOME/schemas`"),
                              description="XSDs of the canonical messages and of the partners' documents.")
    mappings_dir: Path = Field(None, validate_default=False, json_schema_extra=_derived("`$HUB_HOME/mappings`"),
                               description="XSLT mappings between the canonical envelope and partners' documents.")
    pki_dir: Path = Field(None, validate_default=False, json_schema_extra=_derived("`$HUB_VAR_DIR/pki`"),
                          description="Keys and certificates; a development CA, keys and SSH keys are created "
                                      "there on first run when missing.")
    database_url: str = Field(None, validate_default=False,
                              json_schema_extra=_derived("`sqlite:///$HUB_VAR_DIR/hub.sqlite`"),
                              description="SQLAlchemy URL of the database: `postgresql://user@host/db` for "
                                          "PostgreSQL (the password, if any, is never shown).")

    # -- what comes in ----------------------------------------------------------------------------------
    max_message_bytes: int = Field(1_048_576, ge=1, description="Size cap of one message or answer, checked "
                                                                "before parsing (413 beyond it).")
    max_xml_depth: int = Field(64, ge=1, description="Element nesting refused beyond this, before validation "
                                                     "(a SOAP envelope gets 2 more levels).")
    max_xml_elements: int = Field(50_000, ge=1, description="Elements in one document refused beyond this, "
                                                            "before validation.")
    max_json_bytes: int = Field(65_536, ge=1, description="Size cap of a JSON request body, checked before "
                                                         "parsing (413 beyond it).")
    max_header_bytes: int = Field(16_384, ge=1024, description="Size cap of a request's line and headers "
                                                               "(431 beyond it, the connection closed).")
    max_header_count: int = Field(100, ge=10, description="Header fields in one request refused beyond this "
                                                          "(431).")
    header_timeout_seconds: float = Field(10.0, gt=0, description="Time a client has to send a request's line "
                                                                  "and headers, from its first byte or from "
                                                                  "connecting (408 and closed after it).")
    body_timeout_seconds: float = Field(60.0, gt=0, description="Time a client has to send a request's body "
                                                               "once its headers are in (408 and closed after it).")
    max_connections: int = Field(1_000, ge=1, description="Open HTTP connections per process; one more is "
                                                          "answered 503 and closed.")

    # -- trust ------------------------------------------------------------------------------------------
    signing_algorithm: Literal["rsa-sha256", "ecdsa-sha256"] = Field(
        "rsa-sha256", description="The hub's own key and signature method: `rsa-sha256` (RSA-2048) or "
                                  "`ecdsa-sha256` (P-256).")
    certificate_warning_days: int = Field(30, ge=0, description="Certificates expiring sooner are reported "
                                                                "(`/readyz`, `/metrics`, `hub certificates`).")
    tls_certificate: Path | None = Field(None, validation_alias="HUB_TLS_CERT",
                                         description="PEM certificate (chain) of the hub: with `HUB_TLS_KEY`, "
                                                     "`hub serve` speaks HTTPS only.")
    tls_key: Path | None = Field(None, description="PEM private key of `HUB_TLS_CERT`.")
    tls_client_ca: Path | None = Field(None, description="PEM CA that issues partner systems' client "
                                                         "certificates (mutual TLS).")
    tls_client_certificate: Literal["none", "optional", "required"] = Field(
        "none", validation_alias="HUB_TLS_CLIENT_CERT",
        description="`optional`: a presented client certificate must chain to `HUB_TLS_CLIENT_CA`; "
                    "`required`: a client without one is refused at the handshake.")

    # -- storage ----------------------------------------------------------------------------------------
    default_retention_days: int = Field(365, ge=1, description="Days a final message keeps its payload bytes "
                                                               "when its route names no `retention_days`.")

    # -- evidence ---------------------------------------------------------------------------------------
    evidence_checkpoint_seconds: float = Field(300, gt=0, description="How often the leading process appends a "
                                               "hub-signed checkpoint of every evidence chain's head to "
                                               "`HUB_EVIDENCE_CHECKPOINT_FILE` (and the copy).")
    evidence_checkpoint_file: Path = Field(None, validate_default=False,
                                           json_schema_extra=_derived("`$HUB_VAR_DIR/evidence/checkpoints.log`"),
                                           description="The file the evidence checkpoints are appended to; "
                                                       "`hub evidence verify` checks the chains against its last "
                                                       "line.")
    evidence_checkpoint_copy: Path | None = Field(None, description="A second file the checkpoints are appended "
                                                  "to, on storage the database's administrators cannot rewrite "
                                                  "(another host's mount, append-only or WORM storage); "
                                                  "`hub evidence verify` checks against both.")
    evidence_unsealed_seconds: float = Field(60, gt=0, description="An evidence row still unsealed this long "
                                             "after it was written fails `hub evidence verify` (`hub serve` "
                                             "seals new rows within a second; verify never seals).")

    # -- delivery ---------------------------------------------------------------------------------------
    delivery_workers: int = Field(4, ge=1, description="Delivery threads per process, at least (raised to "
                                                       "`HUB_PARTNER_CONCURRENCY` × parties).")
    lease_seconds: int = Field(60, ge=1, description="How long a worker's claim on a delivery lasts before "
                                                     "another worker, or process, may take it.")
    poll_interval_seconds: float = Field(0.5, gt=0, description="How long an idle delivery worker waits "
                                                                "before looking at the outbox again.")
    partner_concurrency: int = Field(16, ge=1, description="Deliveries in flight to one partner, per process (a "
                                     "party's `max_in_flight` may lower it for that party).")
    commit_linger_ms: float = Field(2, ge=0, le=50, description="How long a write (a message taken in, a "
                                    "delivery's outcome) may wait for others to share its commit, until three "
                                    "wait: fewer commits and less CPU under load, a receipt up to this much later "
                                    "on a nearly idle hub (0: each committed at once).")
    delivery_niceness: int = Field(15, ge=0, le=19, description="How much lower the CPU priority of the delivery "
                                   "processes (`--delivery-processes`) is than the API's: when the machine is busy, "
                                   "taking messages in (what senders wait for) goes first, sending them on after "
                                   "(0: the same priority).")
    cpu_scheduling: Literal["batch", "normal"] = Field("batch", description="How Linux schedules the threads of "
                                                      "`hub serve` and its processes: `batch` (SCHED_BATCH: a thread "
                                                      "woken does not preempt the running one, which in a Python "
                                                      "process holds the interpreter lock the woken one needs; less "
                                                      "CPU per message under load) or `normal` (the system's "
                                                      "default). Ignored where the platform has no such policy.")
    delivery_processes: int = Field(0, ge=0, description="With `hub serve --processes N`: processes that only "
                                    "deliver, beside the N that serve the API and then deliver nothing "
                                    "(`--delivery-processes` overrides it; 0: every process does both).")
    breaker_failures: int = Field(5, ge=0, description="Consecutive transient failures that open a partner's "
                                                       "circuit (0: no breaker).")
    breaker_seconds: int = Field(30, ge=0, description="How long an open circuit waits before one trial "
                                                       "delivery.")
    max_outbox_depth: int = Field(10_000, ge=0, description="Pending deliveries for one partner at which "
                                                            "intake answers 429 (0: no limit).")

    # -- API tokens ---------------------------------------------------------------------------------------
    token_cache_seconds: float = Field(1.0, ge=0, le=5, description="How long a process reuses an API token's "
                                       "successful check without reading its row again: a revocation takes "
                                       "effect within this long (0: every request reads it).")

    # -- several processes ------------------------------------------------------------------------------
    processes: int = Field(1, ge=1, description="`hub serve` processes sharing the port (`--processes` "
                                                "overrides it).")
    leader_retry_seconds: float = Field(2.0, gt=0, description="How often a follower tries to lead the "
                                                               "scheduled jobs, and the leader checks its lock.")

    # -- the registry's services ------------------------------------------------------------------------
    repatriation_deadline_seconds: float = Field(6 * 3600, gt=0, description="How long a repatriation "
                                                 "waits for an authority's clearance before it is escalated.")

    # -- alerts (hub/monitor/alerts.py, hub/monitor/notify.py) ---------------------------------------------
    alert_evaluate_seconds: float = Field(60, gt=0, description="How often the leading process evaluates the "
                                          "alert rules and sends the notifications still owed.")
    alert_unreachable_minutes: float = Field(5, ge=0, description="A partner is alerted as unreachable once its "
                                             "connection check (as in `/readyz`) has failed, or its deliveries "
                                             "have been failing with transient errors, for this long.")
    alert_certificate_days: int = Field(30, ge=0, description="A certificate the hub relies on (its own, a "
                                        "partner's, a CA) is alerted once it expires within this many days.")
    alert_smtp_url: str | None = Field(None, description="Where alert e-mails are sent: `smtp://host:25`, "
                                       "`smtp+starttls://user@host:587` or `smtps://user@host:465` (a user "
                                       "signs in with `HUB_ALERT_SMTP_PASSWORD`; no password in the URL). "
                                       "Unset: no e-mail.")
    alert_smtp_password: SecretStr | None = Field(None, description="The password of the SMTP URL's user "
                                                  "(never shown or logged).")
    alert_smtp_from: str = Field("consular-hub@localhost", description="The sender address of alert e-mails.")
    alert_email_to: str | None = Field(None, validate_default=True, description="Who receives alert e-mails: "
                                       "addresses separated by commas (required with `HUB_ALERT_SMTP_URL`).")
    alert_webhook_url: str | None = Field(None, description="An `http(s)://` address each new alert is POSTed "
                                          "to as JSON. Unset: no webhook.")
    alert_webhook_token: SecretStr | None = Field(None, description="Sent to the webhook as `Authorization: "
                                                  "Bearer <token>` (never shown or logged).")
    alert_notify_timeout_seconds: float = Field(10, gt=0, description="How long one e-mail or webhook call "
                                                "may take; a failed one is tried again at the next evaluation.")
    alert_console_url: str | None = Field(None, description="The hub's address as the alerts' recipients "
                                          "reach it (`https://hub.example.ma`): notifications link to its "
                                          "`/monitor/alerts` page.")
    public_url: str | None = Field(None, description="The hub's public address as citizens and those they show "
                                   "a document to reach it (`https://consulat.example.ma`): the QR code and the "
                                   "verification address printed on documents for citizens point to its `/verify` "
                                   "page. Unset: the address the printing request came to.")
    alert_keep_days: int = Field(90, ge=1, description="Cleared alerts are deleted this many days after they "
                                 "cleared.")

    environment: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False,
                                        description="The environment the settings were read from; the "
                                                    "`${VAR}`s of config/ are looked up there.")

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environment: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """The settings read from `environment` (default: the process's), keyword overrides winning.

        Raises ConfigError naming the variable for a value that does not fit, or for an unknown HUB_
        variable that is a near miss of a setting's."""
        environ = dict(os.environ if environment is None else environment)
        _refuse_near_misses(environ)
        token = _environ.set(environ)
        try:
            return cls(environment=environ, **overrides)
        except ValidationError as exc:
            raise _config_error(exc, environ, overrides) from None
        finally:
            _environ.reset(token)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with `changes` (by field name), validated like the original; nothing is read again."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        try:
            return type(self).model_validate({**values, **changes})
        except ValidationError as exc:
            raise _config_error(exc, self.environment, changes) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, _MappingSource(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _derive_folders(cls, values: Any) -> Any:
        """Folders not given live where the spec says: under HUB_HOME, and the keys, the SQLite file and the
        evidence checkpoints under HUB_VAR_DIR (so a test's own var_dir brings its own keys and database along)."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        home = Path(values.get("home") or PROJECT_ROOT).resolve()
        values["home"] = home
        for name, default in (("var_dir", home / "var"), ("config_dir", home / "config"),
                              ("schemas_dir", home / "schemas"), ("mappings_dir", home / "mappings")):
            values[name] = values.get(name) or default
        var_dir = Path(values["var_dir"]).resolve()
        values["pki_dir"] = values.get("pki_dir") or var_dir / "pki"
        values["database_url"] = values.get("database_url") or f"sqlite:///{var_dir / 'hub.sqlite'}"
        values["evidence_checkpoint_file"] = (values.get("evidence_checkpoint_file")
                                              or var_dir / "evidence" / "checkpoints.log")
        return values

    @field_validator("home", "var_dir", "config_dir", "schemas_dir", "mappings_dir", "pki_dir", "tls_certificate",
                     "tls_key", "tls_client_ca", "evidence_checkpoint_file", "evidence_checkpoint_copy")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.resolve()

    @field_validator("alert_smtp_url")
    @classmethod
    def _smtp_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
            raise ValueError(f"expected {', '.join(s + '://host[:port]' for s in SMTP_SCHEMES)}")
        if parts.password is not None:
            raise ValueError("no password in the URL: set HUB_ALERT_SMTP_PASSWORD")
        return url

    @field_validator("alert_webhook_url", "alert_console_url", "public_url")
    @classmethod
    def _http_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// address")
        if parts.username is not None or parts.password is not None:
            raise ValueError("no credentials in the URL")
        return url.rstrip("/") if info.field_name in ("alert_console_url", "public_url") else url

    @field_validator("alert_smtp_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _ADDRESS.fullmatch(parseaddr(value)[1]):
            raise ValueError("expected an e-mail address (or `Name <address>`)")
        return value

    @field_validator("alert_email_to")
    @classmethod
    def _addresses(cls, value: str | None, info: ValidationInfo) -> str | None:
        smtp = info.data.get("alert_smtp_url")
        if value is None:
            if smtp:
                raise ValueError("HUB_ALERT_SMTP_URL is set: say who receives the alerts")
            return None
        if not smtp:
            raise ValueError("alert e-mails need HUB_ALERT_SMTP_URL")
        addresses = [a.strip() for a in value.split(",") if a.strip()]
        bad = [a for a in addresses if not _ADDRESS.fullmatch(a)]
        if bad or not addresses:
            raise ValueError(f"not an e-mail address: {bad[0] if bad else value!r}")
        return ", ".join(addresses)

    @field_validator("signing_algorithm", "tls_client_certificate", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            yield name, (_hide_password(value) if name == "database_url" else value)

    # -- the spec, for the documentation and the checks ---------------------------------------------------

    @classmethod
    def env_name(cls, field: str) -> str:
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()

    @classmethod
    def spec(cls) -> list[tuple[str, str, str, str]]:
        """(field, environment variable, default as shown, description) of every setting, in order."""
        rows = []
        for name, field in cls.model_fields.items():
            if name == "environment":
                continue
            shown = (field.json_schema_extra or {}).get("default_shown")
            if shown is None:
                shown = "unset" if field.default is None else f"`{field.default}`"
            rows.append((name, cls.env_name(name), shown, field.description or ""))
        return rows


class _MappingSource(EnvSettingsSource):
    """The HUB_ variables of the mapping `Settings.from_env` was given, instead of os.environ."""

    def get_field_value(self, field, field_name: str):
        if field_name == "environment":  # the mapping itself, never a variable
            return None, field_name, False
        return super().get_field_value(field, field_name)

    def _extract_field_info(self, field, field_name, *args, **kwargs):
        found = super()._extract_field_info(field, field_name, *args, **kwargs)
        return found[:1] if isinstance(field.validation_alias, str) else found  # HUB_TLS_CERT only, not its name

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _environ.get()
        environ = os.environ if environ is None else environ
        return {name if self.case_sensitive else name.lower(): value for name, value in environ.items()
                if name.startswith(ENV_PREFIX) and value != ""}


def _known_fields() -> list[str]:
    return [name for name in Settings.model_fields if name != "environment"]


def _known_names() -> set[str]:
    return {Settings.env_name(name) for name in _known_fields()}


def _refuse_near_misses(environ: Mapping[str, str]) -> None:
    """A HUB_ variable that is not a setting may be one of config/'s `${VAR}`s; one that is a near miss
    of a setting's name (HUB_LEASE_SECOND) is a typo that would otherwise be silently ignored."""
    known = _known_names()
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            field = name.removeprefix(ENV_PREFIX).lower()
            renamed = [Settings.env_name(field)] if field in _known_fields() else []
            close = renamed or difflib.get_close_matches(name, known, n=1, cutoff=0.9)
            if close:
                raise ConfigError("environment", name, f"is not a setting; did you mean {close[0]}?")


def _config_error(exc: ValidationError, environ: Mapping[str, str], overrides: Mapping[str, Any]) -> ConfigError:
    err = exc.errors()[0]
    loc = str(err["loc"][0]) if err["loc"] else "-"
    field = next((n for n in Settings.model_fields if loc in (n, Settings.env_name(n))), None)
    if field is None:
        return ConfigError("settings", loc, "unknown setting" if err["type"] == "extra_forbidden" else err["msg"])
    variable = Settings.env_name(field)
    source = "settings" if field in overrides else "environment"
    value = overrides[field] if field in overrides else environ.get(variable, err.get("input"))
    if field in _SECRETS:
        return ConfigError(source, variable, err["msg"])  # a secret is never shown
    shown = _hide_password(value) if isinstance(value, str) and "://" in value else value
    return ConfigError(source, variable, f"{shown!r}: {err['msg']}")


_SECRETS = {"alert_smtp_password", "alert_webhook_token"}


def _hide_password(url: Any) -> Any:
    if not isinstance(url, str) or "@" not in url:
        return url
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: shown without its credentials
        return url.split("@", 1)[-1]
