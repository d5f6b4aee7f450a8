"""The HTTP server's own limits, before any request reaches the application: `uvicorn_options(settings)`.

uvicorn (httptools) bounds neither the size of a request head nor the time it takes to arrive, and
holds a new connection open for as long as its client likes. `BoundedHttpProtocol` adds, per connection:

    a request head (request line and headers) over HUB_MAX_HEADER_BYTES   431, connection closed
    more than HUB_MAX_HEADER_COUNT header fields                          431, connection closed
    a head not complete HUB_HEADER_TIMEOUT_SECONDS after its first byte   408, connection closed
      (or after the connection opened, when nothing comes at all)
    a body not complete HUB_BODY_TIMEOUT_SECONDS after its head           408 (when no answer has started),
                                                                          connection closed
    more than HUB_MAX_CONNECTIONS connections open in this process        503, the new one closed
    an idle keep-alive connection                                         closed after 5 s (uvicorn's)

Each answer is application/problem+json, written by the protocol itself (no application code runs).
A head is bounded as it arrives: the bytes of an unfinished head are counted, so a 64 MiB header is
refused after the first HUB_MAX_HEADER_BYTES, not read whole. Not bounded here: how fast an answer is
read by its client, and many clients each within every limit (a reverse proxy in front of the hub, or
the network, bounds those: docs/security.md).
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from hub.errors import HeadRefused
from hub.settings import Settings

log = logging.getLogger("hub.api.server")
KEEP_ALIVE_SECONDS = 5


def problem_bytes(status: int, title: str, detail: str) -> bytes:
    """A complete HTTP/1.1 response with a problem+json body, closing the connection."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    return b"".join([STATUS_LINE[status], b"content-type: application/problem+json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\n", b"connection: close\r\n\r\n", body])


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; `bounded_protocol(settings)` makes the class."""

    max_header_bytes = 16_384
    max_header_count = 100
    header_timeout = 10.0
    body_timeout = 60.0
    max_connections = 1_000

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._awaiting_head, self._head_bytes, self._header_count = True, 0, 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            log.warning("connection refused: %d open, the limit is %d", len(self.connections) - 1,
                        self.max_connections)
            self._answer(503, "Too many connections", f"the hub holds at most {self.max_connections} connections; "
                                                      "try again shortly")
            return
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._awaiting_head:
            self._head_bytes += len(data)
            self._arm_head_timer()
        super().data_received(data)  # a HeadRefused raised by a callback comes back as send_400_response
        if self._awaiting_head and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._answer(431, "Request header too large", f"the request line and headers are over "
                                                          f"{self.max_header_bytes} bytes")

    # parser callbacks
    def on_message_begin(self) -> None:
        self._header_count, self._parsed_head = 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_header_count:
            raise HeadRefused(431, "Too many header fields", f"a request has at most {self.max_header_count} "
                                                             "header fields")
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        """A head that arrived whole in one read is measured as the parser reads it."""
        self._parsed_head += size
        if self._parsed_head > self.max_header_bytes:
            raise HeadRefused(431, "Request header too large", f"the request line and headers are over "
                                                               f"{self.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._awaiting_head, self._head_bytes = False, 0
        self._cancel_head_timer()
        super().on_headers_complete()
        self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()
        self._awaiting_head = True  # the next request's head, if any, is timed from its first byte

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser gave up on: a limit's own status, else 400, as problem+json."""
        refused = self.parser_error()
        if isinstance(refused, HeadRefused):
            self._answer(refused.status, refused.title, refused.detail)
        else:
            self._answer(400, "Malformed HTTP request", msg)

    @staticmethod
    def parser_error() -> BaseException | None:
        """What a parser callback raised, while uvicorn handles the parser's error."""
        error = sys.exc_info()[1]
        return error.__context__ if isinstance(error, httptools.HttpParserCallbackError) else None

    # the head timer
    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self._answer(408, "Request timeout", f"the request line and headers did not arrive within "
                                                 f"{self.header_timeout:g} s")

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        """The application waiting for the rest of the body sees the client gone (http.disconnect)."""
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._answer(408, "Request timeout", f"the request body did not arrive within {self.body_timeout:g} s")
        else:
            self.transport.close()

    def _answer(self, status: int, title: str, detail: str) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        self._awaiting_head = False
        self.transport.write(problem_bytes(status, title, detail))
        self.transport.close()


def bounded_protocol(settings: Settings) -> type[BoundedHttpProtocol]:
    """The protocol class with `settings`' limits (uvicorn builds one instance per connection)."""
    return type("HubHttpProtocol", (BoundedHttpProtocol,), {
        "max_header_bytes": settings.max_header_bytes, "max_header_count": settings.max_header_count,
        "header_timeout": settings.header_timeout_seconds, "body_timeout": settings.body_timeout_seconds,
        "max_connections": settings.max_connections})


def uvicorn_options(settings: Settings) -> dict:
    """Keyword arguments of uvicorn.Config for the hub's HTTP server: the bounded protocol and keep-alive."""
    return {"http": bounded_protocol(settings), "timeout_keep_alive": KEEP_ALIVE_SECONDS}
