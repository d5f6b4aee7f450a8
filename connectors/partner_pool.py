"""One kept-alive HTTP connection pool per partner endpoint, for the connectors that POST (REST, SOAP).

The pool holds as many connections as the partner may have deliveries in flight from this process
(HUB_PARTNER_CONCURRENCY, `Settings.partner_concurrency`): each delivery worker reuses an open
connection, and no more are kept than can be used at once. urllib3 rather than httpx or requests: a
delivery is nothing but a POST and its answer, and urllib3 wraps http.client thinly (http.client ~149
µs of client CPU a request, httpx ~517 µs); `python -m sandbox.load` measures a connector's CPU per
message.

urllib3 never retries nor follows redirects here (the engine owns retries). HTTPS is verified against
the system's trust store (OpenSSL's defaults: SSL_CERT_FILE, SSL_CERT_DIR). Credentials in the URL
(https://user:password@host/...) are sent as HTTP Basic and never shown. `post` raises urllib3's
exceptions; `transport_failure` says what each means, for the connector to raise its own.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError, ReadTimeoutError

DEFAULT_CONNECTIONS = 2  # for a connector built without settings (a test, a tool); the hub passes HUB_PARTNER_CONCURRENCY


def connections_for(settings) -> int:
    """The partner's in-flight limit from the settings (DEFAULT_CONNECTIONS without settings)."""
    return getattr(settings, "partner_concurrency", None) or DEFAULT_CONNECTIONS


class PartnerPool:
    """POSTs to one URL's host over at most `connections` kept-alive connections (thread-safe)."""

    def __init__(self, url: str, *, connections: int, timeout_seconds: float, headers: dict[str, str] | None = None):
        parts = urlsplit(url)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"User-Agent": "consular-exchange-hub", **(headers or {})}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers.update(urllib3.util.make_headers(basic_auth=credentials))
        pool_class = urllib3.HTTPSConnectionPool if parts.scheme == "https" else urllib3.HTTPConnectionPool
        # block=False: a caller beyond `connections` gets a connection of its own, closed after use
        self.pool = pool_class(parts.hostname, parts.port, maxsize=connections, block=False, retries=False,
                               timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds))

    def post(self, body: bytes, headers: dict[str, str], *, path: str | None = None) -> urllib3.BaseHTTPResponse:
        """POST `body` to `path` (default: the URL's own) and read the whole answer."""
        return self.pool.urlopen("POST", path or self.path, body=body, headers={**self.headers, **headers},
                                 redirect=False, assert_same_host=False)

    def close(self) -> None:
        self.pool.close()


def transport_failure(exc: urllib3.exceptions.HTTPError, timeout_seconds: float) -> str:
    """What a urllib3 failure means, in the words of the delivery timeline."""
    if isinstance(exc, NewConnectionError):  # before ConnectTimeoutError, which it subclasses
        return "connection refused or unreachable"
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return f"no answer within {timeout_seconds:g} s"
    return f"transport error: {type(exc).__name__}"


__all__ = ["PartnerPool", "ProtocolError", "connections_for", "transport_failure"]
