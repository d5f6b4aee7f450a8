"""The connector contract.

A connector moves bytes between the hub and one party over one transport. Its class carries
`Config`, the pydantic model of the party's `connection:` settings (the documentation of every key),
and is built as `cls(party, config, timeout_seconds=..., settings=...)` without any I/O. The engine calls:

    open()          once, before the first send or poll; opens pools/sessions (constructors do no I/O)
    send(outbound)  from delivery workers, possibly from several threads at once; returns a SendResult
                    when the party acknowledged the message (its `answer` is what the party answered:
                    when an inbound route matches its root element, the engine takes it in through the
                    "answer" door as the party's synchronous answer), or raises:
                      TransientDeliveryError  the engine retries later with backoff (its `retry_after`,
                                              when the party gave one, is honoured)
                      PermanentDeliveryError  the engine dead-letters the delivery with the reason
                    Any other exception is a bug in the connector; the engine treats it as transient.
    poll()          from the scheduler, for transports where the hub fetches (SFTP); yields InboundItems
                    that the engine acks once stored durably, or nacks with a reason
    check()         from /readyz and the monitor; cheap, never raises; returns a Health
    close()         once, at shutdown

Connectors translate their library's exceptions at this boundary: nothing from httpx, zeep or
paramiko reaches the engine. Credentials never appear in repr() or in error texts.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol
from urllib.parse import urlsplit


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


class Connector(Protocol):
    party: str

    def open(self) -> None: ...

    def send(self, outbound: Outbound) -> SendResult: ...

    def poll(self) -> Iterable[InboundItem]: ...

    def check(self) -> Health: ...

    def close(self) -> None: ...


def url_reachable(url: str, timeout: float = 2) -> Health:
    """A cheap check for HTTP-based connectors: can a TCP connection to the URL's host and port be opened?"""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return Health(True, f"{parts.hostname}:{port} reachable")
    except OSError as exc:
        return Health(False, f"{parts.hostname}:{port} unreachable ({exc.strerror or exc})")
