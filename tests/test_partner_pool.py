"""connectors/partner_pool.py against a real TCP server on loopback that answers each request with the bytes it
is told to: the framings a partner may use (length, chunked, until close, an interim 100), when a connection is
kept or dropped, and what is refused before anything is sent."""
from __future__ import annotations

import socket
import threading

import pytest

from connectors import partner_pool
from connectors.partner_pool import PartnerPool
from hub.errors import TransientDeliveryError


class ScriptedPartner:
    """Answers the n-th request with `answers[n]` (bytes; None: close without answering); records the requests
    and the connections they came on."""

    def __init__(self, answers: list[bytes | None], *, close_after_each: bool = False):
        self.answers, self.close_after_each = list(answers), close_after_each
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request bytes)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/partner/v1"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(connection, self.connections), daemon=True).start()

    def _talk(self, connection: socket.socket, number: int):
        with connection:
            data = b""
            while self.answers:
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(rest) < length:
                    rest += connection.recv(65536)
                self.requests.append((number, head + b"\r\n\r\n" + rest[:length]))
                data = rest[length:]
                answer = self.answers.pop(0)
                if answer is None:
                    return
                connection.sendall(answer)
                if self.close_after_each:
                    return

    def close(self):
        self.listener.close()


@pytest.fixture
def partner():
    partners = []

    def make(answers, **options):
        partners.append(ScriptedPartner(answers, **options))
        return partners[-1]
    yield make
    for made in partners:
        made.close()


def _pool(url: str) -> PartnerPool:
    return PartnerPool(url, connections=2, timeout_seconds=2)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<Ok/>"


def test_the_request_is_what_the_partner_reads_and_the_connection_is_kept(partner):
    server = partner([OK, OK])
    pool = PartnerPool(server.url.replace("http://", "http://user:p%40ss@"), connections=2, timeout_seconds=2,
                       headers={"X-Fixed": "1"})
    for _ in range(2):
        answer = pool.post(b"<Document/>", {"Content-Type": "application/xml"}, path="/partner/v1/op?x=1")
        assert (answer.status, answer.data, answer.headers) == (200, b"<Ok/>", {"content-length": "5"})
    (first, request), (second, _) = server.requests
    assert first == second == 1 and pool.connections_made == 1
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /partner/v1/op?x=1 HTTP/1.1" and body == b"<Document/>"
    assert {b"Host: 127.0.0.1:%d" % server.listener.getsockname()[1], b"X-Fixed: 1",
            b"Authorization: Basic dXNlcjpwQHNz", b"Content-Type: application/xml",
            b"Content-Length: 11"} <= set(lines)


def test_a_chunked_answer_is_read_whole(partner):
    chunked = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n<Ok\r\n2\r\n/>\r\n0\r\n\r\n"
    server = partner([chunked, OK])
    pool = _pool(server.url)
    assert pool.post(b"x", {}).data == b"<Ok/>"
    assert pool.post(b"x", {}).data == b"<Ok/>" and pool.connections_made == 1


def test_trailers_do_not_replace_the_headers(partner):
    server = partner([b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 3600\r\n\r\n"
                      b"2\r\nno\r\n0\r\nRetry-After: 0\r\n\r\n"])
    answer = _pool(server.url).post(b"x", {})
    assert (answer.status, answer.data, answer.headers["retry-after"]) == (503, b"no", "3600")


def test_an_interim_100_is_skipped(partner):
    server = partner([b"HTTP/1.1 100 Continue\r\n\r\n" + OK])
    assert _pool(server.url).post(b"x", {}).status == 200


def test_an_answer_ended_by_the_close_is_read_and_the_connection_not_kept(partner):
    server = partner([b"HTTP/1.0 200 OK\r\n\r\n<Ok/>", OK], close_after_each=True)
    pool = _pool(server.url)
    assert pool.post(b"x", {}).data == b"<Ok/>"
    assert pool.post(b"x", {}).data == b"<Ok/>" and server.connections == 2


def test_connection_close_is_obeyed(partner):
    server = partner([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", OK],
                     close_after_each=True)
    pool = _pool(server.url)
    assert pool.post(b"x", {}).data == b""
    assert pool.post(b"x", {}).status == 200 and server.connections == 2


def test_a_kept_connection_the_partner_closed_meanwhile_is_not_used(partner):
    server = partner([OK, OK], close_after_each=True)  # keep-alive announced, then closed anyway
    pool = _pool(server.url)
    pool.post(b"x", {})
    threading.Event().wait(0.2)  # the close reaches this side
    assert pool.post(b"x", {}).status == 200 and pool.connections_made == 2


@pytest.mark.parametrize("answer, reason", [
    (None, "connection closed by the partner without an answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n<Ok", "connection closed by the partner in the middle of its "
                                                          "answer"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\n<Ok\r\n", "connection closed by the partner in "
                                                                            "the middle of its answer"),
])
def test_a_connection_closed_before_the_answer_ends_is_a_failure(partner, answer, reason):
    server = partner([answer], close_after_each=True)
    with pytest.raises(TransientDeliveryError) as caught:
        _pool(server.url).post(b"x", {})
    assert caught.value.reason == reason


@pytest.mark.parametrize("answer", [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
                                    b"HTTP/1.1 101 Switching Protocols\r\n\r\n"])
def test_switching_protocols_is_a_failure(partner, answer):
    server = partner([answer])
    with pytest.raises(TransientDeliveryError) as caught:
        _pool(server.url).post(b"x", {})
    assert caught.value.reason == "the partner answered 101 Switching Protocols"


def test_endless_headers_are_cut_off(partner):
    server = partner([b"HTTP/1.1 200 OK\r\nX-Filler: " + b"x" * 300_000 + b"\r\nContent-Length: 0\r\n\r\n"])
    with pytest.raises(TransientDeliveryError) as caught:
        _pool(server.url).post(b"x", {})
    assert caught.value.reason == "answer's headers over 64 KiB, cut off"


def test_an_endless_answer_is_cut_off(partner, monkeypatch):
    monkeypatch.setattr(partner_pool, "MAX_ANSWER_BYTES", 1000)
    server = partner([b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000])
    with pytest.raises(TransientDeliveryError) as caught:
        _pool(server.url).post(b"x", {})
    assert caught.value.reason.startswith("answer over ")


@pytest.mark.parametrize("headers, path", [({"X-Message-Id": "M1\r\nX-Injected: 1"}, None),
                                           ({"X-Message-Id": "M1\nX-Injected: 1"}, None),
                                           ({"X-Message-Id": "M1\0"}, None),
                                           ({}, "/partner/v1 HTTP/1.1\r\nX-Injected: 1")])
def test_a_header_or_path_that_would_split_the_request_is_refused_before_sending(partner, headers, path):
    server = partner([OK])
    with pytest.raises(ValueError):
        _pool(server.url).post(b"x", headers, path=path)
    threading.Event().wait(0.1)
    assert server.requests == [] and server.connections == 0
