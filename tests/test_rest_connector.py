"""Contract tests of connectors/rest against a real partner on loopback (the SANTE sandbox process).

What the engine relies on (connectors/base.py): a 2xx gives a SendResult whose receipt is the
partner's answer, byte for byte; 5xx, 408/425/429, timeouts and refused connections raise
TransientDeliveryError (with `retry_after` when the partner sent Retry-After); any other 4xx raises
PermanentDeliveryError; nothing from httpx leaks; the route's operation is appended to the endpoint.

What each status and transport failure becomes is checked in process (httpx.MockTransport answering
as told); the rest against the sandbox, which answers, refuses, times out and goes away for real.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import time

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


# -- status handling, in process ------------------------------------------------------------------------------

def answering(status: int = 200, *, content: bytes = b"", headers: dict | None = None,
              error: type[httpx.TransportError] | None = None, seen: list | None = None) -> RestConnector:
    """A RestConnector whose partner (an httpx.MockTransport) answers `status` with `content` and
    `headers`, or fails with `error`; each request is appended to `seen`."""
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if error is not None:
            raise error("as told", request=request)
        return httpx.Response(status, content=content, headers=headers)
    rest = RestConnector("SANTE", RestConnector.Config(endpoint="http://sante.test/sante/v1/"), timeout_seconds=1.0)
    rest._client = httpx.Client(transport=httpx.MockTransport(handle))
    return rest


@pytest.mark.parametrize("status", [200, 201, 202])
def test_a_2xx_answer_is_kept_byte_for_byte(pki_dir, status):
    seen = []
    message = outbound(pki_dir)
    result = answering(status, content=b"<Ack>\xc3\xa9 </Ack>\n", seen=seen).send(message)
    assert (result.answer, result.detail) == (b"<Ack>\xc3\xa9 </Ack>\n", f"HTTP {status}")
    [request] = seen
    assert str(request.url) == f"http://sante.test/sante/v1/{OPERATION}" and request.content == message.body
    assert request.headers["X-Message-Id"] == message.message_id


def test_an_empty_2xx_is_no_answer(pki_dir):
    assert answering(204).send(outbound(pki_dir)).answer is None


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_server_errors_and_asking_to_wait_are_transient(pki_dir, status):
    with pytest.raises(TransientDeliveryError) as caught:
        answering(status, content=b"busy").send(outbound(pki_dir))
    assert caught.value.retryable and caught.value.retry_after is None
    assert caught.value.reason == f"partner answered {status}: busy"


@pytest.mark.parametrize("retry_after, seconds", [("17", 17), ("0", 0)])
def test_retry_after_is_the_transient_faults_delay(pki_dir, retry_after, seconds):
    for status in (429, 503):
        with pytest.raises(TransientDeliveryError) as caught:
            answering(status, headers={"Retry-After": retry_after}).send(outbound(pki_dir))
        assert caught.value.retry_after == seconds
        assert caught.value.reason == f"partner answered {status}"


def test_retry_after_as_an_http_date(pki_dir):
    when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True)
    with pytest.raises(TransientDeliveryError) as caught:
        answering(503, headers={"Retry-After": when}).send(outbound(pki_dir))
    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422])
def test_other_client_errors_are_permanent(pki_dir, status):
    with pytest.raises(PermanentDeliveryError) as caught:
        answering(status, content=b"<Refus>\n  no\n</Refus>").send(outbound(pki_dir))
    assert not caught.value.retryable
    assert caught.value.reason == f"partner answered {status}: <Refus>   no </Refus>"  # one line, for the timeline


@pytest.mark.parametrize("error, reason", [
    (httpx.ReadTimeout, "no answer within 1 s"), (httpx.ConnectTimeout, "no answer within 1 s"),
    (httpx.ConnectError, "connection refused or unreachable"),
    (httpx.RemoteProtocolError, "transport error: RemoteProtocolError"),
    (httpx.ReadError, "transport error: ReadError"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_transport_failures_are_transient_and_nothing_from_httpx_leaks(pki_dir, error, reason):
    with pytest.raises(TransientDeliveryError) as caught:
        answering(error=error).send(outbound(pki_dir))
    assert caught.value.reason == reason and caught.value.retry_after is None
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_config_is_validated_without_io_and_repr_shows_no_credentials():
    with pytest.raises(ValueError):
        RestConnector.Config(endpoint="ftp://example.org")
    with pytest.raises(ValueError):
        RestConnector.Config(endpoint="http://127.0.0.1:1", token="x")  # unknown keys are errors
    rest = RestConnector("SANTE", RestConnector.Config(endpoint="https://user:secret@sante.example:8443/sante/v1"),
                         timeout_seconds=5)
    assert "secret" not in repr(rest) and "sante.example:8443/sante/v1" in repr(rest)
