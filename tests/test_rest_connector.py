"""Contract tests of connectors/rest against a real partner on loopback (the SANTE sandbox process).

What the engine relies on (connectors/base.py): a 2xx gives a SendResult whose receipt is the
partner's answer, byte for byte; 5xx, 408/425/429, timeouts and refused connections raise
TransientDeliveryError (with `retry_after` when the partner sent Retry-After); any other 4xx raises
PermanentDeliveryError; nothing from the HTTP client leaks; the route's operation is appended to the endpoint.

What each status and transport failure becomes is checked against a small loopback HTTP server
answering as told (or dropping the connection, or answering no HTTP); the rest against the sandbox,
which answers, refuses, times out and goes away for real.
"""
from __future__ import annotations

import base64
import datetime as dt
import email.utils
import http.server
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from lxml import etree

from conftest import Sandbox, free_port, wait_for
from connectors.base import Outbound
from connectors.rest.connector import RestConnector
from hub.errors import PermanentDeliveryError, TransientDeliveryError
from hub.xml.mapping import MappingSet
from hub.trust.pki import load_certificate
from hub.settings import PROJECT_ROOT
from hub.trust.signing import verify
from hub.xml.safe import to_bytes
from support import signer_for

pytestmark = pytest.mark.slow

CASE = PROJECT_ROOT / "mappings/sante/cases/health-clearance.to-sante/cardiac-arrest.input.xml"
OPERATION = "autorisations-sanitaires"
SA = "urn:ma:sante:autorisation-sanitaire:1"


@pytest.fixture(scope="module")
def sante(tmp_path_factory, pki_dir):
    box = Sandbox(free_port(), "http://127.0.0.1:9", pki_dir, tmp_path_factory.mktemp("sandbox"), name="sante",
                  extra_args=["--answer-delay", "0"]).start()
    yield box
    box.stop()


@pytest.fixture
def partner(sante):
    """The sandbox, back to normal behaviour after each test (and listening again after `refuse`)."""
    yield sante
    wait_for(lambda: _listening(sante.url), 15, what="the sandbox to listen again")
    sante.behave(mode="normal", retry_after=None, fail_every=None)


def _listening(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def connector(partner):
    rest = RestConnector("SANTE", RestConnector.Config(endpoint=f"{partner.url}/sante/v1/"), timeout_seconds=1.0)
    rest.open()
    yield rest
    rest.close()


_counter = iter(range(1, 10_000))


def outbound(pki_dir, *, operation: str | None = OPERATION, signed_by: str = "hub") -> Outbound:
    """A DemandeAutorisationSanitaire with a fresh message id, mapped from the sample case and signed."""
    message_id = f"REGISTRY-REP-2026-{next(_counter):06d}"
    envelope = etree.fromstring(CASE.read_bytes().replace(b"REGISTRY-REP-2026-000005", message_id.encode()))
    document = MappingSet(PROJECT_ROOT / "mappings").apply("sante/health-clearance.to-sante.xsl", envelope)
    body = to_bytes(signer_for(pki_dir, signed_by).sign(document))
    return Outbound(message_id, "RepatriationRequest", body, operation=operation)


def test_success_returns_the_partners_answer(connector, pki_dir):
    message = outbound(pki_dir)
    result = connector.send(message)
    assert result.detail == "HTTP 200"
    answer = verify(etree.fromstring(result.answer), load_certificate(str(pki_dir / "SANTE.crt")), signer_name="SANTE")
    assert answer.findtext(f"{{{SA}}}ReferenceDemande") == message.message_id
    # the same message again: the partner deduplicates and answers the same bytes
    assert connector.send(message).answer == result.answer


def test_a_real_refusal_is_permanent_and_says_why(connector, pki_dir):
    with pytest.raises(PermanentDeliveryError) as caught:
        connector.send(outbound(pki_dir, signed_by="REGISTRY"))
    assert "partner answered 400" in caught.value.reason and "SIGNATURE_INVALIDE" in caught.value.reason


def test_operation_is_appended_to_the_endpoint(connector, pki_dir):
    with pytest.raises(PermanentDeliveryError) as caught:
        connector.send(outbound(pki_dir, operation="no-such-operation"))
    assert caught.value.reason.startswith("partner answered 404")
    with pytest.raises(PermanentDeliveryError):
        connector.send(outbound(pki_dir, operation=None))  # the bare base URL is no operation of SANTE's


def test_timeout_is_transient(connector, partner, pki_dir):
    partner.behave(mode="slow", delay_seconds=2.5)
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError) as caught:
        connector.send(outbound(pki_dir))
    assert time.monotonic() - started < 2.0
    assert caught.value.reason == "no answer within 1 s" and caught.value.retry_after is None


def test_refused_connection_is_transient(connector, partner, pki_dir):
    partner.behave(mode="refuse", refuse_seconds=1.5)
    with pytest.raises(TransientDeliveryError) as caught:
        connector.send(outbound(pki_dir))
    assert caught.value.reason == "connection refused or unreachable"
    assert not connector.check().ok
    wait_for(lambda: _listening(partner.url), 15, what="the sandbox to listen again")
    assert connector.send(outbound(pki_dir)).detail == "HTTP 200"
    assert connector.check().ok


def test_nothing_listening_is_transient_and_unhealthy(pki_dir):
    rest = RestConnector("SANTE", RestConnector.Config(endpoint=f"http://127.0.0.1:{free_port()}/sante/v1"),
                         timeout_seconds=1.0)
    try:
        with pytest.raises(TransientDeliveryError) as caught:
            rest.send(outbound(pki_dir))
        assert caught.value.reason == "connection refused or unreachable"
        health = rest.check()
        assert not health.ok and "unreachable" in health.detail
    finally:
        rest.close()


# -- status handling, against a loopback server answering as told --------------------------------------------

class Partner:
    """A real HTTP server on loopback that answers every POST as told: `status` with `content` and
    `headers`, or `failure` ("close": drops the connection unanswered; "garbage": answers no HTTP;
    "sleep": answers nothing for 3 s). Each request is recorded in `seen` as (path, headers, body)."""

    def __init__(self):
        self.status, self.content, self.headers, self.failure = 200, b"", {}, None
        self.seen: list[tuple[str, "email.message.Message", bytes]] = []
        partner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                partner.seen.append((self.path, self.headers, body))
                if partner.failure == "close":
                    self.close_connection = True
                    return
                if partner.failure == "garbage":
                    self.wfile.write(b"this is not HTTP\r\n\r\n")
                    self.close_connection = True
                    return
                if partner.failure == "sleep":
                    time.sleep(3)
                    self.close_connection = True
                    return
                self.send_response(partner.status)
                for name, value in partner.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(partner.content)))
                self.end_headers()
                self.wfile.write(partner.content)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def loopback():
    partner = Partner()
    yield partner
    partner.server.shutdown()
    partner.server.server_close()


@pytest.fixture
def answering(loopback):
    """answering(status, content=, headers=, failure=) -> a RestConnector to the loopback partner told so."""
    opened = []

    def tell(status: int = 200, *, content: bytes = b"", headers: dict | None = None, failure: str | None = None):
        loopback.status, loopback.content, loopback.headers, loopback.failure = status, content, headers or {}, failure
        loopback.seen.clear()
        rest = RestConnector("SANTE", RestConnector.Config(endpoint=f"{loopback.url}/sante/v1/"), timeout_seconds=1.0)
        opened.append(rest)
        return rest
    yield tell
    for rest in opened:
        rest.close()


@pytest.mark.parametrize("status", [200, 201, 202])
def test_a_2xx_answer_is_kept_byte_for_byte(pki_dir, answering, loopback, status):
    message = outbound(pki_dir)
    result = answering(status, content=b"<Ack>\xc3\xa9 </Ack>\n").send(message)
    assert (result.answer, result.detail) == (b"<Ack>\xc3\xa9 </Ack>\n", f"HTTP {status}")
    [(path, headers, body)] = loopback.seen
    assert path == f"/sante/v1/{OPERATION}" and body == message.body
    assert headers["X-Message-Id"] == message.message_id and headers["Content-Type"] == "application/xml"


def test_an_empty_2xx_is_no_answer(pki_dir, answering):
    assert answering(204).send(outbound(pki_dir)).answer is None


def test_connections_are_kept_alive_and_reused(pki_dir, answering, loopback):
    rest = answering(202, content=b"<Ack/>")
    for _ in range(3):
        rest.send(outbound(pki_dir))
    assert rest._pool.connections_made == 1 and rest.connections == 2


def test_the_pool_holds_as_many_connections_as_deliveries_in_flight(pki_dir, loopback):
    rest = RestConnector("SANTE", RestConnector.Config(endpoint=f"{loopback.url}/sante/v1/"), timeout_seconds=1.0,
                         settings=SimpleNamespace(partner_concurrency=5))
    rest.open()
    try:
        assert rest._pool.keep == 5
    finally:
        rest.close()


def test_credentials_in_the_endpoint_are_sent_as_basic_auth(pki_dir, loopback):
    loopback.status, loopback.content, loopback.headers, loopback.failure = 200, b"", {}, None
    loopback.seen.clear()
    url = loopback.url.replace("http://", "http://user:s%40cret@")
    rest = RestConnector("SANTE", RestConnector.Config(endpoint=f"{url}/sante/v1"), timeout_seconds=1.0)
    try:
        rest.send(outbound(pki_dir))
    finally:
        rest.close()
    [(_, headers, _)] = loopback.seen
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:s@cret").decode()


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_server_errors_and_asking_to_wait_are_transient(pki_dir, answering, status):
    with pytest.raises(TransientDeliveryError) as caught:
        answering(status, content=b"busy").send(outbound(pki_dir))
    assert caught.value.retryable and caught.value.retry_after is None
    assert caught.value.reason == f"partner answered {status}: busy"


@pytest.mark.parametrize("retry_after, seconds", [("17", 17), ("0", 0)])
def test_retry_after_is_the_transient_faults_delay(pki_dir, answering, retry_after, seconds):
    for status in (429, 503):
        with pytest.raises(TransientDeliveryError) as caught:
            answering(status, headers={"Retry-After": retry_after}).send(outbound(pki_dir))
        assert caught.value.retry_after == seconds
        assert caught.value.reason == f"partner answered {status}"


def test_retry_after_as_an_http_date(pki_dir, answering):
    when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True)
    with pytest.raises(TransientDeliveryError) as caught:
        answering(503, headers={"Retry-After": when}).send(outbound(pki_dir))
    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422])
def test_other_client_errors_are_permanent(pki_dir, answering, status):
    with pytest.raises(PermanentDeliveryError) as caught:
        answering(status, content=b"<Refus>\n  no\n</Refus>").send(outbound(pki_dir))
    assert not caught.value.retryable
    assert caught.value.reason == f"partner answered {status}: <Refus>   no </Refus>"  # one line, for the timeline


@pytest.mark.parametrize("failure, reason", [
    ("sleep", "no answer within 1 s"),
    ("close", "connection closed by the partner without an answer"),
    ("garbage", "the answer is not HTTP: it began b'this is not HTTP\\r\\n\\r\\n'"),
])
def test_transport_failures_are_transient_and_nothing_from_the_client_leaks(pki_dir, answering, failure, reason):
    with pytest.raises(TransientDeliveryError) as caught:
        answering(failure=failure).send(outbound(pki_dir))
    assert caught.value.reason == reason and caught.value.retry_after is None
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_connection_not_accepted_in_time_is_a_timeout(pki_dir):
    """A listener whose backlog is full: the connection attempt itself goes unanswered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        try:
            for _ in range(4):  # fill the backlog (never accepted)
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(address)
                fillers.append(filler)
            rest = RestConnector("SANTE", RestConnector.Config(endpoint=f"http://{address[0]}:{address[1]}/sante/v1"),
                                 timeout_seconds=1.0)
            with pytest.raises(TransientDeliveryError) as caught:
                rest.send(outbound(pki_dir))
            rest.close()
        finally:
            for filler in fillers:
                filler.close()
    assert caught.value.reason == "no answer within 1 s"


def test_config_is_validated_without_io_and_repr_shows_no_credentials():
    with pytest.raises(ValueError):
        RestConnector.Config(endpoint="ftp://example.org")
    with pytest.raises(ValueError):
        RestConnector.Config(endpoint="http:///sante/v1")  # no host
    with pytest.raises(ValueError):
        RestConnector.Config(endpoint="http://127.0.0.1:1", token="x")  # unknown keys are errors
    rest = RestConnector("SANTE", RestConnector.Config(endpoint="https://user:secret@sante.example:8443/sante/v1"),
                         timeout_seconds=5)
    assert "secret" not in repr(rest) and "sante.example:8443/sante/v1" in repr(rest)
