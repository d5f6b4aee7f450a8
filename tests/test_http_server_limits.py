"""The HTTP server's own limits (hub/api/server.py): head size and field count, the head's arrival time,
the number of connections. A real uvicorn on loopback with the hub's protocol and a trivial application
(the limits act before any application code), with small limits so that nothing waits long."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn

from conftest import free_port, wait_for
from hub.api.server import bounded_protocol, uvicorn_options
from hub.settings import Settings

HEADER_TIMEOUT = 0.5
OPEN: dict[str, set] = {}  # "connections": the running server's open connections


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):  # the whole body first, as a route reading it does
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server():
    settings = Settings.from_env(environment={}, max_header_bytes=4096, max_header_count=20,
                                 header_timeout_seconds=HEADER_TIMEOUT, body_timeout_seconds=HEADER_TIMEOUT,
                                 max_connections=30)
    port = free_port()
    config = uvicorn.Config(hello, host="127.0.0.1", port=port, log_level="error", lifespan="off",
                            **uvicorn_options(settings))
    running = uvicorn.Server(config)
    running.install_signal_handlers = lambda: None
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.02)
    OPEN["connections"] = running.server_state.connections
    yield ("127.0.0.1", port)
    running.should_exit = True
    thread.join(5)


def exchange(address, data: bytes, *, timeout: float = 5) -> bytes:
    """What the server answers to `data`, read until it closes the connection (or `timeout`)."""
    with socket.create_connection(address, timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:  # the server may close before it has read everything
            pass
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def status_and_problem(answer: bytes) -> tuple[int, dict | None]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    problem = json.loads(body) if b"application/problem+json" in head else None
    return status, problem


def test_a_normal_request_is_served(server):
    assert exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"ok")


def test_a_head_over_the_size_cap_is_431_before_it_is_read_whole(server):
    # 64 MiB announced in one header: refused after the first few KiB, not read into memory
    with socket.create_connection(server, timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 64 << 20:
                s.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass
        answer = read_all(s)
    status, problem = status_and_problem(answer)
    assert status == 431 and problem["title"] == "Request header too large"
    assert sent < 8 << 20  # the server stopped reading long before


def test_too_many_header_fields_is_431(server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(50))
    status, problem = status_and_problem(exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"))
    assert status == 431 and "at most 20 header fields" in problem["detail"]


def test_a_malformed_request_is_a_problem_400(server):
    status, problem = status_and_problem(exchange(server, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"))
    assert status == 400 and problem["title"] == "Malformed HTTP request"


def test_slow_heads_are_cut_off_and_do_not_hold_connections(server):
    """Slowloris: 20 connections each sending one header line at a time are answered 408 and closed once
    the head is late, whatever they keep sending; a connection that sends nothing is closed too."""
    sockets = [socket.create_connection(server, timeout=5) for _ in range(20)]
    silent = socket.create_connection(server, timeout=5)
    started = time.monotonic()
    for s in sockets:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    answers = []
    for round_ in range(int(HEADER_TIMEOUT / 0.1) + 5):
        time.sleep(0.1)
        for s in sockets:
            try:
                s.sendall(b"X-Slow-%d: 1\r\n" % round_)
            except OSError:
                pass
    for s in sockets:
        answers.append(status_and_problem(read_all(s)))
        s.close()
    assert read_all(silent).startswith(b"HTTP/1.1 408")
    silent.close()
    assert [status for status, _ in answers] == [408] * 20
    assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_a_slow_body_is_cut_off(server):
    with socket.create_connection(server, timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        for _ in range(int(HEADER_TIMEOUT / 0.1) + 5):
            try:
                s.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
        status, problem = status_and_problem(read_all(s))
    assert status == 408 and "body" in problem["detail"]
    assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_connections_beyond_the_limit_are_refused_503(server):
    held = [socket.create_connection(server, timeout=5) for _ in range(30)]
    try:
        wait_for(lambda: len(OPEN["connections"]) >= 30, 10, what="the server to accept the 30 connections")
        status, problem = status_and_problem(exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert status == 503 and problem["title"] == "Too many connections"
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"ok")


def test_the_hub_server_uses_the_bounded_protocol():
    settings = Settings.from_env(environment={}, max_header_bytes=2048)
    options = uvicorn_options(settings)
    assert options["http"].max_header_bytes == 2048 and options["timeout_keep_alive"] == 5
    assert issubclass(bounded_protocol(settings), options["http"].__mro__[1])
