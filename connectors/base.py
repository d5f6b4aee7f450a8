"""The connector contract.

A connector moves bytes between the hub and one party over one transport. Its class carries
`Config`, the pydantic model of the party's `connection:` settings (the documentation of every key),
and is built as `cls(party, config, timeout_seconds=..., settings=...)` without any I/O.

Every connector is a `Connector`: the engine calls

    open()          once, before the first send or poll; opens pools/sessions (constructors do no I/O)
    check()         from /readyz and the monitor; cheap, never raises; returns a Health
    close()         once, at shutdown

What else it can do, it declares by implementing capability protocols; the engine finds them with
`isinstance(connector, Sender)` and the like, never by transport names or attribute probing:

    Sender          send(outbound), from delivery workers, possibly from several threads at once;
                    returns a SendResult when the party acknowledged the message (its `answer` is what the
                    party answered: when an inbound route matches its root element, the engine takes it
                    in through the "answer" door as the party's synchronous answer), or raises:
                      TransientDeliveryError  the engine retries later with backoff (its `retry_after`,
                                              when the party gave one, is honoured)
                      PermanentDeliveryError  the engine dead-letters the delivery with the reason
                    Any other exception is a bug in the connector; the engine treats it as transient.
    Poller          poll(), from the scheduler every `poll_interval_seconds` (transports where the hub
                    fetches: SFTP); yields InboundItems that the engine acks once stored durably, or
                    nacks with a reason; an item too large to hold comes as a local file (`path`),
                    taken in as a message kept in a file. A file the connector handled itself (set
                    aside, or read by a stream taker) is yielded too, with `handled` set, so that
                    the poll's counts tell every file it met. An item's ack or nack raising DeliveryError
                    is that item's trouble (it stays with the party, the engine takes the next one);
                    poll() raising ends the poll (the party unreachable, the connection lost)
    InboundRoutes   inbound_router(), once when the HTTP app is built: an APIRouter serving the
                    transport's own inbound endpoint (SOAP's /soap/{CODE}); the same router object
                    returned by several parties of one transport is mounted once
    LocalConsumer   attach(handler): deliveries are handed to a consumer in the hub's own process
                    (an app's, e.g. the registry's), attached when the service is composed
    FileSender      send_file(message_id, message_type, path, sha256=...): a message whose bytes are kept
                    in a file (too large for a column), sent from disk; the same retries and errors as send
    KeyFiles        key_files(): the key files the connection needs ({"connection.private_key": path, ...});
                    the engine refuses to start, naming the file, when one is missing (no key is ever made)

Connectors translate their library's exceptions at this boundary: nothing from the HTTP client,
zeep or paramiko reaches the engine. Credentials never appear in repr() or in error texts.
docs/howto/add-a-transport.md walks through adding one.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, runtime_checkable
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from fastapi import APIRouter

    from hub.errors import InputError


@dataclass(frozen=True)
class Outbound:
    message_id: str
    message_type: str
    body: bytes
    operation: str | None = None     # the route's operation: WSDL operation (SOAP), path (REST)
    content_type: str = "application/xml"


@dataclass(frozen=True)
class SendResult:
    answer: bytes | None = None      # what the party answered, kept as evidence
    detail: str = ""


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


@dataclass
class InboundItem:
    name: str
    body: bytes
    ack: Callable[[], None] = field(repr=False)
    nack: Callable[[str], None] = field(repr=False)
    path: Path | None = None         # a file too large to hold, downloaded to this local path (body is b"")
    # A file the connector handled itself, yielded so that the poll counts it (nothing left to take in, ack or
    # nack): "accepted" (a stream taker read it and it was acked), "refused" (set aside in the party's failed
    # folder, `refusal` saying why: too large, unreadable, or the stream taker's refusal), "failed" (it could
    # not even be set aside: it stays with the party for the next poll).
    handled: str | None = None
    refusal: "InputError | None" = None
    streamed: bool = False           # read as a stream by a stream taker, never held


@runtime_checkable
class Connector(Protocol):
    """What every connector is: built without I/O, opened, checked, closed."""

    party: str

    def open(self) -> None: ...

    def check(self) -> Health: ...

    def close(self) -> None: ...


@runtime_checkable
class Sender(Protocol):
    """Delivers one message to the party (thread-safe); see the module docstring for what it raises."""

    def send(self, outbound: Outbound) -> SendResult: ...


@runtime_checkable
class Poller(Protocol):
    """Fetches what the party left for the hub; the scheduler calls `poll()` every `poll_interval_seconds`."""

    poll_interval_seconds: float

    def poll(self) -> Iterable[InboundItem]: ...


@runtime_checkable
class InboundRoutes(Protocol):
    """Serves the transport's inbound endpoint in the hub's HTTP API (parties that call the hub)."""

    def inbound_router(self) -> "APIRouter": ...


@runtime_checkable
class LocalConsumer(Protocol):
    """Hands deliveries to a consumer living in the hub's process (an app's `local_consumers`)."""

    def attach(self, handler: Callable[[Outbound], None]) -> None: ...

    @property
    def attached(self) -> bool:
        """Whether a consumer of messages in bytes is attached in this process."""


@runtime_checkable
class KeyFiles(Protocol):
    """Names the key files its connection needs (by the setting naming each), checked when the hub starts."""

    def key_files(self) -> dict[str, Path]: ...


# -- files too large to hold (the claim check: a message whose bytes stay in a file) ---------------------

@dataclass(frozen=True)
class OutboundFile:
    """A message whose bytes are kept in a file, as a consumer in the hub's process is given it."""
    message_id: str
    message_type: str
    path: Path
    sha256: str


@runtime_checkable
class FileSender(Protocol):
    """A connector that can send a file from disk without reading it whole (32 KiB at a time, say).

    The engine calls it instead of `send` for a message whose bytes are kept in a file, with the same
    retry policy and circuit breaker: the same exceptions mean the same (TransientDeliveryError,
    PermanentDeliveryError), and sending the same message id with the same `sha256` again must be
    idempotent (a lease that expired during a long upload sends it twice)."""

    def send_file(self, message_id: str, message_type: str, path: Path, *, sha256: str) -> SendResult: ...


def url_reachable(url: str, timeout: float = 2) -> Health:
    """A cheap check for HTTP-based connectors: can a TCP connection to the URL's host and port be opened?"""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return Health(True, f"{parts.hostname}:{port} reachable")
    except OSError as exc:
        return Health(False, f"{parts.hostname}:{port} unreachable ({exc.strerror or exc})")
