"""REST with XML bodies over one kept-alive connection pool per partner: a Sender (connectors/base.py).

The pool (connectors/partner_pool.py) holds as many connections as the partner may have
deliveries in flight from this process (HUB_PARTNER_CONCURRENCY).

    2xx                                    SendResult(answer=<the body, byte for byte, or None when empty>)
    408, 425, 429, 500, 502, 503, 504      TransientDeliveryError (retry_after from Retry-After)
    any other status                       PermanentDeliveryError("partner answered <status>: <excerpt>")
    timeout (connect or read)              TransientDeliveryError("no answer within <timeout> s")
    refused or unreachable                 TransientDeliveryError("connection refused or unreachable")
    any other transport failure            TransientDeliveryError(<what happened>: closed without an answer,
                                           reset, not HTTP, a TLS certificate not trusted...)
"""
from __future__ import annotations

import threading
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Health, Outbound, SendResult, url_reachable
from connectors.http import RETRYABLE_STATUS, parse_retry_after
from connectors.partner_pool import PartnerPool, connections_for
from hub.errors import PermanentDeliveryError, TransientDeliveryError


class RestConnector:
    class Config(BaseModel):
        """`connection:` of a `transport: rest` party: XML bodies posted over HTTP(S)."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        endpoint: str = Field(pattern=r"^https?://[^\s/]+", description="Base URL; the route's `operation` is appended "
                                                                  "as a path (none: the URL itself).")

    def __init__(self, party: str, config: "RestConnector.Config", *, timeout_seconds: float, settings=None):
        self.party = party
        self.endpoint = config.endpoint.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.connections = connections_for(settings)
        parts = urlsplit(self.endpoint)
        self._path, self._query = parts.path, (f"?{parts.query}" if parts.query else "")
        self._lock = threading.Lock()
        self._pool: PartnerPool | None = None

    def __repr__(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"RestConnector({self.party}, {parts.scheme}://{parts.hostname}:{parts.port}{parts.path})"

    def open(self) -> None:
        """The connection pool (no connection is made until the first send)."""
        with self._lock:
            if self._pool is None:
                self._pool = PartnerPool(self.endpoint, connections=self.connections,
                                         timeout_seconds=self.timeout_seconds)

    def url_path(self, operation: str | None) -> str:
        """The path (and query) posted to: the endpoint's, with the route's operation appended."""
        path = f"{self._path}/{operation.lstrip('/')}" if operation else (self._path or "/")
        return path + self._query

    def send(self, outbound: Outbound) -> SendResult:
        if self._pool is None:
            self.open()
        headers = {"Content-Type": outbound.content_type, "X-Message-Id": outbound.message_id}
        # TransientDeliveryError when no answer came (connectors/partner_pool.py)
        response = self._pool.post(outbound.body, headers, path=self.url_path(outbound.operation))
        status, content = response.status, response.data
        if 200 <= status < 300:
            return SendResult(answer=content or None, detail=f"HTTP {status}")
        excerpt = content[:300].decode("utf-8", "replace").replace("\n", " ")
        reason = f"partner answered {status}" + (f": {excerpt}" if excerpt else "")
        if status in RETRYABLE_STATUS:
            raise TransientDeliveryError(reason, retry_after=parse_retry_after(response.headers.get("retry-after")))
        raise PermanentDeliveryError(reason)

    def check(self) -> Health:
        return url_reachable(self.endpoint)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
