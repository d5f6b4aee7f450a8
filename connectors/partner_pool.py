"""One kept-alive HTTP/1.1 connection pool per partner endpoint, for the connectors that POST (REST, SOAP).

The pool keeps as many idle connections as the partner may have deliveries in flight from this process
(HUB_PARTNER_CONCURRENCY, `Settings.partner_concurrency`): each delivery reuses an open connection, the one
used most recently first; a delivery beyond them opens one of its own, closed after use. A kept connection
the partner has closed meanwhile (it reads as ready before a request is sent) is dropped, not used.

A delivery is nothing but a POST and its answer, so the request is written here in one piece and the answer
read with httptools (llhttp, the parser that also reads the requests of the hub's own API under uvicorn:
status line, headers, Content-Length or chunked bodies, keep-alive). The REST connector's CPU per message to
the NARSA sandbox (`python -m sandbox.load --concurrency 16`, docs/performance.md): 0.21–0.23 ms through
urllib3 and `http.client`, 0.073 ms this way.

Nothing is retried and no redirect is followed here (the engine owns retries). HTTPS is verified against the
system's trust store (OpenSSL's defaults: SSL_CERT_FILE, SSL_CERT_DIR) and the endpoint's host name.
Credentials in the URL (https://user:password@host/...) are sent as HTTP Basic and never shown. When no answer
came, `post` raises TransientDeliveryError, its `reason` in the words of the delivery timeline.
"""
from __future__ import annotations

import base64
import select
import socket
import ssl
import threading
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import httptools

from hub.errors import TransientDeliveryError

DEFAULT_CONNECTIONS = 2  # for a connector built without settings (a test, a tool); the hub passes HUB_PARTNER_CONCURRENCY
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a partner streaming without end is cut off here; the parsers cap far lower
MAX_HEADER_BYTES = 64 * 1024  # the status line and headers of an answer (llhttp itself sets no limit)
_READ_BYTES = 65536


def connections_for(settings) -> int:
    """The partner's in-flight limit from the settings (DEFAULT_CONNECTIONS without settings)."""
    return getattr(settings, "partner_concurrency", None) or DEFAULT_CONNECTIONS


class Answer(NamedTuple):
    status: int
    data: bytes
    headers: dict[str, str]  # names in lower case


class _Reading:
    """httptools' callbacks for one answer (and any 1xx interim answers before it)."""
    __slots__ = ("parser", "status", "headers", "body", "headers_done", "complete", "extra", "keep_alive")

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.body = 0, {}, []
        self.headers_done = self.complete = self.extra = self.keep_alive = False

    def on_message_begin(self):
        self.extra = self.complete  # bytes after the answer: the connection is not reused

    def on_header(self, name: bytes, value: bytes):
        if not self.headers_done:  # a chunked answer's trailers do not replace its headers
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        if not self.complete:  # keep-alive as the headers say (llhttp forgets it once the message is over)
            self.status, self.keep_alive = self.parser.get_status_code(), self.parser.should_keep_alive()
            self.headers_done = True

    def on_body(self, chunk: bytes):
        if not self.complete:
            self.body.append(chunk)

    def on_message_complete(self):
        if 100 <= self.status < 200 and self.status != 101:  # 100 Continue, 103 Early Hints: the answer follows
            self.status, self.headers, self.body, self.headers_done = 0, {}, [], False
        else:
            self.complete = True


class PartnerPool:
    """POSTs to one URL's host over kept-alive connections, at most `connections` kept idle (thread-safe)."""

    def __init__(self, url: str, *, connections: int, timeout_seconds: float, headers: dict[str, str] | None = None):
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"{url!r} names no host")
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.keep = connections
        self.timeout_seconds = timeout_seconds
        self.connections_made = 0
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        fixed = {"Host": _host_header(parts), "User-Agent": "consular-exchange-hub", **(headers or {})}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            fixed["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._fixed_lines = _header_lines(fixed)
        self._idle: list[socket.socket] = []  # most recently used last
        self._lock = threading.Lock()
        self._closed = False

    def post(self, body: bytes, headers: dict[str, str], *, path: str | None = None) -> Answer:
        """POST `body` to `path` (default: the URL's own) and read the whole answer."""
        target = path or self.path
        if any(c in target for c in " \r\n\0"):
            raise ValueError(f"request target {target!r} holds a space or a control character")
        request = (f"POST {target} HTTP/1.1\r\n{self._fixed_lines}{_header_lines(headers)}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        connection = self._take()
        try:
            connection.sendall(request)
            answer, reusable = self._read(connection)
        except OSError as exc:  # sockets' and TLS errors, timeouts included
            connection.close()
            raise _failure(exc, self._no_answer) from None
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._give_back(connection)
        else:
            connection.close()
        return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- connections ---------------------------------------------------------------------------------------

    def _take(self) -> socket.socket:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect()
            if not _closed_by_peer(connection):
                return connection
            connection.close()

    def _give_back(self, connection: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.keep:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self) -> socket.socket:
        try:
            connection = socket.create_connection((self.host, self.port), timeout=self.timeout_seconds)
        except TimeoutError:
            raise TransientDeliveryError(self._no_answer) from None
        except OSError:
            raise TransientDeliveryError("connection refused or unreachable") from None
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            try:
                connection = self._tls.wrap_socket(connection, server_hostname=self.host)
            except BaseException as exc:
                connection.close()
                raise _failure(exc, self._no_answer) from None
        self.connections_made += 1
        return connection

    @property
    def _no_answer(self) -> str:
        return f"no answer within {self.timeout_seconds:g} s"

    def _read(self, connection: socket.socket) -> tuple[Answer, bool]:
        """The answer, and whether the connection may carry another request."""
        reading, first, received = _Reading(), b"", 0
        try:
            while not reading.complete:
                data = connection.recv(_READ_BYTES)
                if not data:
                    return self._read_to_close(reading), False
                first, received = first or data[:40], received + len(data)
                if received > MAX_ANSWER_BYTES:
                    raise TransientDeliveryError(f"answer over {MAX_ANSWER_BYTES // 1048576} MiB, cut off") from None
                try:
                    reading.parser.feed_data(data)
                except httptools.HttpParserUpgrade:  # a 101 (with Upgrade), which the hub never asks for
                    if not reading.complete or reading.status == 101:
                        raise TransientDeliveryError("the partner answered 101 Switching Protocols") from None
                    reading.extra = True
                except httptools.HttpParserError:
                    if not reading.complete:
                        raise TransientDeliveryError(f"the answer is not HTTP: it began {first!r}") from None
                    reading.extra = True
                if not reading.headers_done and received > MAX_HEADER_BYTES:
                    too_long = f"answer's headers over {MAX_HEADER_BYTES // 1024} KiB, cut off"
                    raise TransientDeliveryError(too_long) from None
        finally:
            reading.parser = None  # the parser and its callbacks refer to each other
        if reading.status == 101:
            raise TransientDeliveryError("the partner answered 101 Switching Protocols") from None
        answer = Answer(reading.status, b"".join(reading.body), reading.headers)
        return answer, reading.keep_alive and not reading.extra

    def _read_to_close(self, reading: _Reading) -> Answer:
        """The connection closed: the answer if its end was the close (no length, not chunked)."""
        codings = reading.headers.get("transfer-encoding", "").lower()
        if codings:  # chunked as the last coding frames the body; otherwise the close does (RFC 9112, 6.3)
            delimited = codings.rsplit(",", 1)[-1].strip() == "chunked"
        else:
            delimited = "content-length" in reading.headers
        if not reading.status:
            raise TransientDeliveryError("connection closed by the partner without an answer") from None
        if delimited:
            raise TransientDeliveryError("connection closed by the partner in the middle of its answer") from None
        return Answer(reading.status, b"".join(reading.body), reading.headers)


def _failure(exc: BaseException, no_answer: str) -> BaseException:
    """What a socket or TLS error means, in the words of the delivery timeline (anything else as it is)."""
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError(no_answer)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransientDeliveryError(f"TLS: the partner's certificate is not trusted ({exc.verify_message})")
    if isinstance(exc, ssl.SSLError):
        return TransientDeliveryError(f"TLS failure ({exc.reason or exc})")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return TransientDeliveryError("connection reset by the partner")
    if isinstance(exc, OSError):
        return TransientDeliveryError(f"transport error: {exc.strerror or type(exc).__name__}")
    return exc


def _closed_by_peer(connection: socket.socket) -> bool:
    """An idle connection that reads as ready was closed by the partner (or holds bytes nobody asked for)."""
    poller = select.poll()
    poller.register(connection, select.POLLIN)
    return bool(poller.poll(0))


def _host_header(parts) -> str:
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host if parts.port is None else f"{host}:{parts.port}"


def _header_lines(headers: dict[str, str]) -> str:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if "\0" in lines or lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
        raise ValueError("a header name or value holds a line break or a NUL character")
    return lines


__all__ = ["Answer", "PartnerPool", "connections_for"]
