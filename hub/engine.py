"""The assembled hub: settings, configuration, schemas, mappings, keys, database and connectors.

Everything expensive is loaded once here (keys ~40 ms each, schemas, stylesheets); the rest of the
engine receives a `Hub` and never loads anything per message.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Iterable

from connectors import connector_class
from connectors.base import Connector, KeyFiles, LocalConsumer
from hub.trust import pki
from hub.intake.backpressure import OutboxDepths
from hub.trust.certificates import TrustStore
from hub.config import HubConfig, load_config
from hub.store.db import make_engine, make_read_sessionmaker, make_sessionmaker, migrate, read_only
from hub.errors import ConfigError
from hub.store.group_commit import GroupCommitter
from hub.xml.mapping import MappingSet
from hub.mappings import store as mapping_versions
from hub.intake.door import Arrival, Receipt, take_in
from hub.mappings.personal_data import load_policy_if_present
from hub.xml.schemas import SchemaSet
from hub.settings import Settings
from hub.trust.signing import Signer

log = logging.getLogger("hub")
HUB_PARTY = "hub"


class Hub:
    def __init__(self, settings: Settings | None = None, *, engine=None):
        self.settings = settings or Settings.from_env()
        self.config: HubConfig = load_config(self.settings)
        # the personal-data policy every new mapping version is checked against: a bad file stops the hub, named
        self.personal_data = load_policy_if_present(self.settings)
        algorithm = self.settings.signing_algorithm
        if algorithm not in pki.ALGORITHMS:
            raise ConfigError("environment", "HUB_SIGNING_ALGORITHM",
                              f"{algorithm!r} is not a signing algorithm the hub knows "
                              f"(expected {' or '.join(pki.ALGORITHMS)})")
        # keys are never made here: a missing one stops the hub, named (`hub dev init` makes development keys)
        self.signer = self._load_signer(algorithm)
        self.trust = TrustStore(self.config, config_dir=self.settings.config_dir)
        self.connectors: dict[str, Connector] = {code: self._build_connector(code) for code in self.config.parties}
        # asked for every target of every message: an isinstance of a Protocol costs microseconds, so it is asked once
        self._local_consumers = {code for code, connector in self.connectors.items()
                                 if isinstance(connector, LocalConsumer)}
        self._check_key_files()
        self.schemas = SchemaSet(self.settings.schemas_dir)
        self.mappings = MappingSet(self.settings.mappings_dir)
        self.engine = engine or make_engine(self.settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.reads = make_read_sessionmaker(self.engine)  # sessions that only read (no write lock on SQLite)
        self.streamed_reads = make_read_sessionmaker(self.engine, transaction=True)  # reads with yield_per
        self.read_engine = read_only(self.engine)          # plain connections that only read (token checks)
        # the writes every message makes (accepted, delivered), batched on both databases (hub/store/group_commit.py)
        self.committer = GroupCommitter(self.engine, linger=self.settings.commit_linger_ms / 1000)
        self.outbox_depths = OutboxDepths(self.reads, limit=self.settings.max_outbox_depth)  # for back-pressure
        self._wake = threading.Condition()
        self._wake_count = 0
        self._woken_for: set[str] | None = set()  # partners named by wake-ups not yet seen; None: anyone
        self.wake_elsewhere: Callable[[Iterable[str] | None], None] | None = None  # the delivery processes, when separate (hub/cluster/wake.py)
        self.dead_letter_listeners: list[Callable[[str, str, str, str], None]] = []
        self.resend_listeners: list[Callable[[str, str, str, str], None]] = []  # after a resend (hub/apps.py)
        self.last_polls: dict = {}  # partner -> how its last poll in this process ended (hub/intake/polling.py)
        self.chained_histories: list = []  # the apps' tables sealed into chains of their own (hub/apps.py)

    @property
    def signer_certificate_path(self):
        return self.settings.pki_dir / f"{HUB_PARTY}.crt"

    def _load_signer(self, algorithm: str) -> Signer:
        """The hub's key (loaded once: ~40 ms) and certificate; the key must be of HUB_SIGNING_ALGORITHM's kind."""
        key_path = self.settings.pki_dir / f"{HUB_PARTY}.key"
        pki.require_files(key_path, self.signer_certificate_path, whose="the hub's signing")
        key = pki.load_key(str(key_path))
        certificate = pki.load_certificate(str(self.signer_certificate_path))
        if pki.key_algorithm(key) != algorithm:
            raise ConfigError(key_path, "HUB_SIGNING_ALGORITHM",
                              f"the hub's key is {pki.key_algorithm(key)} but HUB_SIGNING_ALGORITHM is {algorithm}: "
                              "set the setting to match the key, or replace hub.key and hub.crt")
        if certificate.public_key().public_numbers() != key.public_key().public_numbers():
            raise ConfigError(self.signer_certificate_path, "-", f"this certificate does not match the hub's key "
                                                                 f"{key_path}")
        return Signer(key, certificate)

    def _check_key_files(self) -> None:
        """Every key file a connector needs (the hub's SSH key, a partner's pinned host key) is there."""
        for code, connector in self.connectors.items():
            if isinstance(connector, KeyFiles):
                for key, path in connector.key_files().items():
                    if not Path(path).is_file():
                        raise ConfigError(self.settings.config_dir / "partners" / f"{code}.yaml", key,
                                          f"no file {path} (development keys: `hub dev init`)")

    def _build_connector(self, code: str) -> Connector:
        party = self.config.parties[code]
        return connector_class(party.transport)(code, party.connection, timeout_seconds=party.timeout_seconds,
                                                 settings=self.settings)

    def migrate(self, *, metadata=()) -> None:
        """Bring the schema to the newest revision; `metadata`: the apps' tables (hub.store.db.migrate)."""
        migrate(self.engine, metadata=metadata)
        # from now on the active mapping versions are read from the database
        self.mappings.attach(self.sessions, mapping_versions, schemas_dir=self.settings.schemas_dir, reads=self.reads)

    def attach_local_consumer(self, party: str, handler=None, *, files=None) -> None:
        """Deliveries to `party` (a `local` transport) are handed to `handler(Outbound)` in this process; those
        of messages kept in a file (hub/intake/files.py) to `files(OutboundFile)`, which reads the file."""
        connector = self.connectors.get(party)
        if not isinstance(connector, LocalConsumer):
            what = "is not a party" if connector is None else f"has transport {self.config.parties[party].transport}"
            raise ConfigError(self.settings.config_dir / "partners" / f"{party}.yaml", "transport",
                              f"an app consumes {party}'s deliveries in the hub's process, but {party} {what}; "
                              "it needs `transport: local`")
        if handler is not None:
            connector.attach(handler)
        if files is not None:
            connector.attach_files(files)

    def consumes_here(self, party: str) -> bool:
        """Whether `party`'s deliveries (in bytes) are consumed in this process (`attach_local_consumer`)."""
        return party in self._local_consumers and self.connectors[party].attached

    # -- the public interface used by API views, the registry and the CLI --------------------------
    def receive(self, arrival: Arrival) -> Receipt:
        """Take in what arrived through one of the doors (REST, SOAP, SFTP, the registry, a synchronous
        answer): intake, the refusal recorded and the metrics counted once (hub/intake/door.py).
        Returns the hub's signed receipt; raises InputError (refused) or TryLater (send again later)."""
        return take_in(self, arrival)

    def poll(self, partner: str) -> dict[str, int]:
        """Take in now what `partner` (a polling transport) left for the hub; counts of accepted, refused,
        already-seen and failed files (hub/intake/polling.py)."""
        from hub.intake.polling import poll_partner
        return poll_partner(self, partner)

    def deliver_due(self, *, owner: str, limit: int = 8) -> int:
        """Deliver what is due now, in the calling thread (tools, benchmarks: no pool, no per-partner limits);
        returns how many deliveries were attempted (hub/delivery/workers.py)."""
        from hub.delivery.workers import deliver_due_messages
        return deliver_due_messages(self, owner=owner, limit=limit)

    def message_files(self, message_id: str, *, sender: str) -> dict:
        """Where a message kept in a file has its bytes: {"received": path or None (a message kept in a
        column), "size", "sha256", "sent": {partner: path of the file as sent}}; NotFound when there is no
        such message."""
        from hub.intake.files import message_files
        return message_files(self, message_id, sender=sender)

    def case_messages(self, correlation_ids: list[str], *, limit: int = 500) -> list[dict]:
        """The messages of a case (their CorrelationId one of `correlation_ids`), oldest first, with their
        deliveries and timelines and without payload bytes, as plain dicts (hub/store/exchanges.py): how an app
        shows a case's whole conversation."""
        from hub.store.exchanges import case_messages
        with self.reads() as session:
            return case_messages(session, correlation_ids, limit=limit)

    def audit(self, session, *, actor: str, action: str, subject: str = "", detail: str = "") -> None:
        """Record who did what in the audit log, in the caller's transaction (`session`, one of `sessions`),
        sealed into its hash chain later like every entry (hub/evidence/audit.py): how the apps record
        their users' actions and reads. `action` is UPPER_SNAKE; `actor` names the user (Identity.actor)."""
        from hub.evidence import audit
        audit.record(session, actor=actor, action=action, subject=subject, detail=detail)

    @staticmethod
    def preload_history(database_url: str, count: int, *, pki_dir, message: bytes, message_id: str,
                        reference: str, tag: str | None = None, on_progress=None) -> dict:
        """Store `count` messages copied from `message` (a signed canonical LicenceAuthenticationRequest from
        REGISTRY, with that id and case), with their deliveries and sealed timeline, in bulk, before any hub
        runs on `database_url` (hub/evidence/bulk.py; for benchmarks); the hub's receipt is signed with its
        key in `pki_dir`. Returns what was written and how long it took. PreloadRefused when the timeline
        has unsealed rows (a hub ran and did not seal them)."""
        from hub.evidence import bulk
        template = bulk.Template.build(pki_dir, message, message_id, reference)
        return bulk.preload(database_url, count, template, tag=tag, on_progress=on_progress)

    # -- worker wake-ups: intake tells the delivery workers there is work --------------------------
    def wake_workers(self, partners: Iterable[str] | None = None) -> None:
        """Tell the delivery workers there may be work: for `partners` (new deliveries to them), or, None, for
        anyone (a resend, a retry). No partners (an empty collection): nothing new, only this process's
        dispatcher looks at its own state again (one of its lanes finished, hub/delivery/workers.py)."""
        partners = None if partners is None else frozenset(partners)  # read twice below: not a generator
        with self._wake:
            self._wake_count += 1
            if partners is None:
                self._woken_for = None
            elif self._woken_for is not None:
                self._woken_for.update(partners)
            self._wake.notify_all()
        if self.wake_elsewhere is not None and (partners is None or partners):
            self.wake_elsewhere(partners)

    @property
    def work_generation(self) -> int:
        """How many times the workers were woken so far: read it before looking for work, then pass it to
        `wait_for_work` so that a wake-up in between is not missed."""
        return self._wake_count

    def wait_for_work(self, timeout: float, *, seen: int | None = None,
                      stop: threading.Event | None = None) -> tuple[int, set[str] | None]:
        """Wait until the workers are woken (after generation `seen`), `stop` is set, or `timeout` passes.
        Returns the generation seen now (pass it to the next call: nothing woken in between is missed) and
        the partners the wake-ups since the last call named, or None when any may have work (or none woke)."""
        with self._wake:
            seen = self._wake_count if seen is None else seen
            self._wake.wait_for(lambda: self._wake_count != seen or (stop is not None and stop.is_set()),
                                timeout=timeout)
            woken, self._woken_for = self._woken_for, set()
            return self._wake_count, None if woken is None or self._wake_count == seen else woken

    def close(self) -> None:
        self.committer.close()
        for connector in self.connectors.values():
            connector.close()
        self.engine.dispose()
