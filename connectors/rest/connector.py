"""REST with XML bodies over one urllib3 connection pool per partner (keep-alive): a Sender (connectors/base.py).

The pool holds as many connections as the partner may have deliveries in flight from this process
(HUB_PARTNER_CONCURRENCY, `Settings.partner_concurrency`): each delivery worker reuses an open
connection, and no more are kept than can be used at once. urllib3 rather than httpx: the same
keep-alive posts cost about a quarter of the client CPU (httpx ~517 µs a request, http.client, which
urllib3 wraps thinly, ~149 µs), and a delivery is nothing but a POST and its answer.

    2xx                                   SendResult(answer=<the body, byte for byte, or None when empty>)
    408, 425, 429, 5xx in RETRYABLE_STATUS TransientDeliveryError (retry_after from Retry-After)
    any other status                      PermanentDeliveryError("partner answered <status>: <excerpt>")
    timeout (connect or read)             TransientDeliveryError("no answer within <timeout> s")
    refused or unreachable                TransientDeliveryError("connection refused or unreachable")
    any other transport failure           TransientDeliveryError("transport error: <urllib3 exception name>")

urllib3 never retries or follows redirects here (the engine owns retries). HTTPS is verified against
the system's trust store (OpenSSL's defaults: SSL_CERT_FILE, SSL_CERT_DIR); credentials in the
endpoint's URL (https://user:password@host/...) are sent as HTTP Basic and never shown.
"""
from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

import urllib3
from pydantic import BaseModel, ConfigDict, Field
from urllib3.exceptions import ConnectTimeoutError, HTTPError as TransportFailure, NewConnectionError, ReadTimeoutError

from connectors.base import Health, Outbound, SendResult, url_reachable
from connectors.http import RETRYABLE_STATUS, parse_retry_after
from hub.errors import PermanentDeliveryError, TransientDeliveryError

DEFAULT_CONCURRENCY = 2  # Settings.partner_concurrency's default, for a connector built without settings


class RestConnector:
    class Config(BaseModel):
        """`connection:` of a `transport: rest` party: XML bodies posted over HTTP(S)."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        endpoint: str = Field(pattern=r"^https?://", description="Base URL; the route's `operation` is appended "
                                                                  "as a path (none: the URL itself).")

    def __init__(self, party: str, config: "RestConnector.Config", *, timeout_seconds: float, settings=None):
        self.party = party
        self.endpoint = config.endpoint.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.connections = getattr(settings, "partner_concurrency", None) or DEFAULT_CONCURRENCY
        parts = urlsplit(self.endpoint)
        self._path = parts.path
        self._query = f"?{parts.query}" if parts.query else ""
        self._headers = {"User-Agent": "consular-exchange-hub"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers.update(urllib3.util.make_headers(basic_auth=credentials))
        self._lock = threading.Lock()
        self._pool: urllib3.HTTPConnectionPool | None = None

    def __repr__(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"RestConnector({self.party}, {parts.scheme}://{parts.hostname}:{parts.port}{parts.path})"

    def open(self) -> None:
        """The connection pool (no connection is made until the first send)."""
        with self._lock:
            if self._pool is None:
                parts = urlsplit(self.endpoint)
                pool_class = urllib3.HTTPSConnectionPool if parts.scheme == "https" else urllib3.HTTPConnectionPool
                # block=False: a caller beyond `connections` gets a connection of its own, closed after use
                self._pool = pool_class(parts.hostname, parts.port, maxsize=self.connections, block=False,
                                        timeout=urllib3.Timeout(connect=self.timeout_seconds,
                                                                read=self.timeout_seconds),
                                        retries=False, headers=self._headers)

    def url_path(self, operation: str | None) -> str:
        """The path (and query) posted to: the endpoint's, with the route's operation appended."""
        path = f"{self._path}/{operation.lstrip('/')}" if operation else (self._path or "/")
        return path + self._query

    def send(self, outbound: Outbound) -> SendResult:
        if self._pool is None:
            self.open()
        headers = {"Content-Type": outbound.content_type, "X-Message-Id": outbound.message_id}
        try:
            response = self._pool.urlopen("POST", self.url_path(outbound.operation), body=outbound.body,
                                          headers={**self._headers, **headers}, redirect=False,
                                          assert_same_host=False)
        except NewConnectionError:  # before ConnectTimeoutError, which it subclasses (so does NameResolutionError)
            raise TransientDeliveryError("connection refused or unreachable") from None
        except (ConnectTimeoutError, ReadTimeoutError):
            raise TransientDeliveryError(f"no answer within {self.timeout_seconds:g} s") from None
        except TransportFailure as exc:
            raise TransientDeliveryError(f"transport error: {type(exc).__name__}") from None
        status, content = response.status, response.data
        if 200 <= status < 300:
            return SendResult(answer=content or None, detail=f"HTTP {status}")
        excerpt = content[:300].decode("utf-8", "replace").replace("\n", " ")
        reason = f"partner answered {status}" + (f": {excerpt}" if excerpt else "")
        if status in RETRYABLE_STATUS:
            raise TransientDeliveryError(reason, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise PermanentDeliveryError(reason)

    def check(self) -> Health:
        return url_reachable(self.endpoint)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
