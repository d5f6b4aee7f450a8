"""The NARSA sandbox as a real process on loopback, with a real HTTP receiver playing the hub.

Requests are built with lxml and signed with the hub's key from a temporary PKI; acknowledgements
and callbacks are validated against NARSA's XSD and verified against NARSA's certificate.
"""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from lxml import etree
from lxml.builder import ElementMaker

from conftest import free_port
from hub.errors import SignatureInvalid
from hub.trust.pki import ensure_dev_pki, load_certificate, load_key
from hub.xml.schemas import SchemaSet
from hub.trust.signing import Signer, verify
from hub.xml.safe import parse_untrusted, to_bytes
from sandbox.narsa import verdict_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NS = "urn:ma:narsa:authentification-permis:1"
XSD = "partners/narsa/authentification-permis.xsd"
REQUESTS_PATH = "/narsa/v1/demandes-authentification"
CALLBACK_PATH = "/api/v1/partners/NARSA/messages"
ANSWER_DELAY = 0.1
N = ElementMaker(namespace=NS, nsmap={None: NS})


def tag(name: str) -> str:
    return f"{{{NS}}}{name}"


# -- the hub's callback endpoint, played by a tiny real HTTP server --------------------------------


class HubReceiver:
    """Records every callback; answers 202, or 503 when told to for a given ReferenceDemande."""

    def __init__(self):
        self.attempts: list[tuple[str, str, bytes]] = []  # (path, content type, body), every attempt
        self.accepted: dict[str, bytes] = {}  # ReferenceDemande -> body answered 202
        self.accepted_count: dict[str, int] = {}
        self.fail_once: set[str] = set()
        self.fail_always: set[str] = set()
        self.refuse: set[str] = set()  # answered 400 with a body
        self.condition = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reference = etree.fromstring(body).findtext(tag("ReferenceDemande"))
                with receiver.condition:
                    receiver.attempts.append((self.path, self.headers.get("Content-Type", ""), body))
                    failing = reference in receiver.fail_always or reference in receiver.fail_once
                    receiver.fail_once.discard(reference)
                    if not failing and reference not in receiver.refuse:
                        receiver.accepted[reference] = body
                        receiver.accepted_count[reference] = receiver.accepted_count.get(reference, 0) + 1
                    receiver.condition.notify_all()
                if reference in receiver.refuse:
                    answer = b"ReferenceDemande inconnue"
                    self.send_response(400)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                self.send_response(503 if failing else 202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def attempts_for(self, reference: str) -> int:
        with self.condition:
            return sum(1 for _, _, body in self.attempts
                       if etree.fromstring(body).findtext(tag("ReferenceDemande")) == reference)

    def wait_for(self, reference: str, timeout: float = 10.0) -> bytes:
        """The callback body the receiver accepted for this request id, waiting for it."""
        with self.condition:
            if not self.condition.wait_for(lambda: reference in self.accepted, timeout):
                raise AssertionError(f"no callback for {reference} within {timeout} s")
            return self.accepted[reference]

    def wait_for_attempts(self, reference: str, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.attempts_for(reference) < count:
            assert time.monotonic() < deadline, f"fewer than {count} attempts for {reference}"
            time.sleep(0.05)


# -- the sandbox process ---------------------------------------------------------------------------


class SandboxProcess:
    def __init__(self, *, pki_dir: Path, data_dir: Path, hub_url: str, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.stdout_path = log_path.with_suffix(".stdout")
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(log_path, "ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "narsa", "--host", "127.0.0.1", "--port", str(self.port),
             "--hub-url", hub_url, "--pki-dir", str(pki_dir), "--data-dir", str(data_dir),
             "--answer-delay", str(ANSWER_DELAY)],
            cwd=ROOT, env=env, stdout=self._stdout, stderr=self._stderr)
        self.client = httpx.Client(base_url=self.url, timeout=10)
        self._wait_ready(log_path)

    def _wait_ready(self, log_path: Path, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"sandbox exited with {self.process.returncode}:\n{log_path.read_text()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"sandbox not ready within {timeout} s:\n{log_path.read_text()}")

    def received(self) -> Path:
        return self.data_dir / "NARSA" / "received"

    def stats(self) -> dict:
        return self.client.get("/_sandbox/stats").json()

    def post(self, body: bytes, content_type: str = "application/xml") -> httpx.Response:
        return self.client.post(REQUESTS_PATH, content=body, headers={"Content-Type": content_type})

    def behave(self, **behaviour) -> dict:
        response = self.client.post("/_sandbox/behaviour", json=behaviour)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._stdout.close()
        self._stderr.close()
        return self.process.returncode


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    pki_dir = tmp_path_factory.mktemp("pki")
    ensure_dev_pki(pki_dir, ["hub", "REGISTRY", "NARSA"])
    return pki_dir


@pytest.fixture(scope="module")
def schemas() -> SchemaSet:
    return SchemaSet(ROOT / "schemas")


@pytest.fixture(scope="module")
def hub_signer(pki) -> Signer:
    return Signer(load_key(str(pki / "hub.key")), load_certificate(str(pki / "hub.crt")))


@pytest.fixture(scope="module")
def narsa_certificate(pki):
    return load_certificate(str(pki / "NARSA.crt"))


@pytest.fixture(scope="module")
def hub_receiver():
    receiver = HubReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(scope="module")
def sandbox(pki, hub_receiver, tmp_path_factory):
    work = tmp_path_factory.mktemp("sandbox")
    process = SandboxProcess(pki_dir=pki, data_dir=work / "data", hub_url=hub_receiver.url,
                             log_path=work / "sandbox.log")
    try:
        yield process
    finally:
        process.stop()


# -- helpers ---------------------------------------------------------------------------------------

_ids = iter(range(1, 10_000))


def new_id(prefix: str = "MSG") -> str:
    return f"{prefix}-{next(_ids):04d}"


def demande(message_id: str, numero_permis: str = "12/345673") -> etree._Element:
    return N.DemandeAuthentification(
        N.IdentifiantMessage(message_id),
        N.ReferenceDossier(f"DOS-{message_id}"),
        N.DateEmission("2025-06-01T09:30:00Z"),
        N.PosteConsulaire("CG-PARIS"),
        N.Titulaire(
            N.Nom("El Amrani"), N.Prenom("Yasmine"), N.NomArabe("العمراني"), N.PrenomArabe("ياسمين"),
            N.DateNaissance("14/02/1991"),
        ),
        N.Permis(
            N.NumeroPermis(numero_permis),
            N.Categories(N.Categorie("A"), N.Categorie("B")),
            N.DateDelivrance("03/07/2012"),
        ),
        N.PaysResidence("FR"),
    )


def signed_demande(signer: Signer, message_id: str, numero_permis: str = "12/345673") -> bytes:
    return to_bytes(signer.sign(demande(message_id, numero_permis)))


def stored(sandbox: SandboxProcess, message_id: str) -> list[Path]:
    """Every file the sandbox keeps about this request id."""
    return [path for path in (sandbox.data_dir / "NARSA").rglob("*") if path.name.startswith(f"{message_id}.")]


def check_narsa_document(body: bytes, schemas: SchemaSet, certificate, what: str) -> etree._Element:
    """Valid against NARSA's XSD and signed by NARSA: return the signed element."""
    root = parse_untrusted(body, max_bytes=1 << 20, what=what)
    schemas.validate(root, XSD, what=what)
    assert root[-1].tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    return verify(root, certificate, signer_name="NARSA")


# -- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("numero, verdict", [
    ("12/345670", "AUTHENTIQUE"), ("12/345676", "AUTHENTIQUE"), ("1/1237", "DIVERGENCE"),
    ("12/345678", "DIVERGENCE"), ("12/345679", "NON_AUTHENTIQUE"), (" 12/345673 ", "AUTHENTIQUE"),
])
def test_verdict_rule_is_the_last_digit(numero, verdict):
    assert verdict_for(numero) == verdict


def test_health(sandbox):
    response = sandbox.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "partner": "NARSA"}
    assert sandbox.stdout_path.read_text().strip() == f"NARSA sandbox listening on {sandbox.url}"


def test_authentic_licence_is_acknowledged_then_answered_with_a_signed_attestation(
        sandbox, hub_receiver, hub_signer, schemas, narsa_certificate):
    message_id = new_id()
    body = signed_demande(hub_signer, message_id, "12/345673")

    response = sandbox.post(body)

    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/xml")
    ack = check_narsa_document(response.content, schemas, narsa_certificate, "AccuseReception")
    assert ack.tag == tag("AccuseReception")
    assert ack.findtext(tag("ReferenceDemande")) == message_id
    reference = ack.findtext(tag("ReferenceNarsa"))
    assert reference.startswith("NARSA-") and reference[-6:].isdigit()
    assert (sandbox.received() / f"{message_id}.xml").read_bytes() == body
    assert (sandbox.data_dir / "NARSA" / "acknowledged" / f"{message_id}.xml").read_bytes() == response.content

    callback = hub_receiver.wait_for(message_id)
    result = check_narsa_document(callback, schemas, narsa_certificate, "ResultatAuthentification")
    assert result.tag == tag("ResultatAuthentification")
    assert result.findtext(tag("Verdict")) == "AUTHENTIQUE"
    assert result.findtext(tag("ReferenceDemande")) == message_id
    assert result.findtext(tag("ReferenceDossier")) == f"DOS-{message_id}"
    assert result.findtext(tag("ReferenceNarsa")) == reference
    digits = "".join(c for c in reference if c.isdigit())
    assert result.findtext(tag("IdentifiantMessage")) == f"NARSA-R-{digits}"
    assert result.find(tag("Divergence")) is None

    attestation = verify(result.find(tag("Attestation")), narsa_certificate, signer_name="NARSA")
    assert attestation.findtext(tag("NumeroAttestation")) == f"ATT-{digits}"
    assert attestation.findtext(tag("NumeroPermis")) == "12/345673"
    assert attestation.findtext(tag("Titulaire")) == "Yasmine El Amrani"
    assert [c.text for c in attestation.find(tag("Categories"))] == ["A", "B"]
    assert attestation.findtext(tag("DateDelivrance")) == "03/07/2012"
    assert len(attestation.findtext(tag("ValableJusquAu"))) == 10
    # the hub receives the callback where it expects it
    path, content_type, _ = next(a for a in hub_receiver.attempts if a[2] == callback)
    assert path == CALLBACK_PATH and content_type.startswith("application/xml")


def test_an_attestation_altered_inside_the_result_no_longer_verifies(
        sandbox, hub_receiver, hub_signer, narsa_certificate):
    message_id = new_id()
    assert sandbox.post(signed_demande(hub_signer, message_id, "12/345671")).status_code == 202
    result = etree.fromstring(hub_receiver.wait_for(message_id))
    attestation = result.find(tag("Attestation"))
    attestation.find(tag("ValableJusquAu")).text = "31/12/2099"
    with pytest.raises(SignatureInvalid):
        verify(attestation, narsa_certificate, signer_name="NARSA")


@pytest.mark.parametrize("numero, verdict", [("12/345678", "DIVERGENCE"), ("12/345679", "NON_AUTHENTIQUE")])
def test_other_verdicts(sandbox, hub_receiver, hub_signer, schemas, narsa_certificate, numero, verdict):
    message_id = new_id()
    assert sandbox.post(signed_demande(hub_signer, message_id, numero)).status_code == 202

    result = check_narsa_document(hub_receiver.wait_for(message_id), schemas, narsa_certificate, "result")

    assert result.findtext(tag("Verdict")) == verdict
    assert result.find(tag("Attestation")) is None
    divergences = result.findall(tag("Divergence"))
    if verdict == "DIVERGENCE":
        assert [(d.get("champ"), d.text) for d in divergences] == [
            ("DateNaissance", "La date de naissance ne correspond pas au fichier national des permis")]
    else:
        assert divergences == []


def test_a_duplicate_gets_the_same_acknowledgement_and_no_second_callback(sandbox, hub_receiver, hub_signer):
    message_id = new_id()
    body = signed_demande(hub_signer, message_id)
    first = sandbox.post(body)
    hub_receiver.wait_for(message_id)
    received_before = sandbox.stats()["received"]

    again = sandbox.post(body)

    assert again.status_code == 202
    assert again.content == first.content
    time.sleep(ANSWER_DELAY + 0.5)
    assert hub_receiver.accepted_count[message_id] == 1
    assert hub_receiver.attempts_for(message_id) == 1
    stats = sandbox.stats()
    assert stats["duplicates"] == 1
    assert stats["received"] == received_before


def test_concurrent_copies_of_one_request_are_stored_and_answered_once(sandbox, hub_receiver, hub_signer):
    message_id = new_id()
    body = signed_demande(hub_signer, message_id)
    before = sandbox.stats()

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: httpx.post(sandbox.url + REQUESTS_PATH, content=body, timeout=10,
                                                       headers={"Content-Type": "application/xml"}), range(8)))

    assert {r.status_code for r in responses} == {202}
    assert len({r.content for r in responses}) == 1
    hub_receiver.wait_for(message_id)
    time.sleep(ANSWER_DELAY + 0.3)
    assert hub_receiver.attempts_for(message_id) == 1
    after = sandbox.stats()
    assert after["received"] == before["received"] + 1
    assert after["duplicates"] == before["duplicates"] + 7


def _altered(signer: Signer, message_id: str) -> bytes:
    signed = signer.sign(demande(message_id))
    signed.find(f"{tag('Titulaire')}/{tag('Nom')}").text = "Bennani"
    return to_bytes(signed)


def _empty_signature(signer: Signer, message_id: str) -> bytes:
    signed = signer.sign(demande(message_id))
    signature = signed[-1]
    for child in list(signature):
        signature.remove(child)
    return to_bytes(signed)


@pytest.mark.parametrize("kind", ["unsigned", "altered", "signed by NARSA", "empty signature", "not XML",
                                  "other root"])
def test_refused_requests_get_400_and_nothing_is_stored(sandbox, hub_signer, pki, kind):
    message_id = new_id("BAD")
    narsa_signer = Signer(load_key(str(pki / "NARSA.key")), load_certificate(str(pki / "NARSA.crt")))
    body = {
        "unsigned": lambda: to_bytes(demande(message_id)),
        "altered": lambda: _altered(hub_signer, message_id),
        "signed by NARSA": lambda: to_bytes(narsa_signer.sign(demande(message_id))),
        "empty signature": lambda: _empty_signature(hub_signer, message_id),
        "not XML": lambda: b"<DemandeAuthentification>",
        "other root": lambda: to_bytes(hub_signer.sign(
            N.AccuseReception(N.ReferenceDemande(message_id), N.ReferenceNarsa("X"),
                              N.DateReception("2025-01-01T00:00:00Z")))),
    }[kind]()
    before = sandbox.stats()

    response = sandbox.post(body)

    assert response.status_code == 400, response.text
    assert b"Erreur" in response.content
    assert not stored(sandbox, message_id)
    after = sandbox.stats()
    assert after["received"] == before["received"]
    assert after["refused"] == before["refused"] + 1


def test_a_request_that_is_not_application_xml_gets_415(sandbox, hub_signer):
    message_id = new_id("BAD")
    response = sandbox.post(signed_demande(hub_signer, message_id), content_type="text/plain")
    assert response.status_code == 415
    assert not stored(sandbox, message_id)


def test_fail_behaviour_answers_the_status_without_storing_then_normal_works_again(sandbox, hub_signer):
    message_id = new_id()
    body = signed_demande(hub_signer, message_id)
    try:
        behaviour = sandbox.behave(mode="fail", status=503, retry_after=2)
        assert behaviour["mode"] == "fail" and behaviour["status"] == 503 and behaviour["retry_after"] == 2
        before = sandbox.stats()

        response = sandbox.post(body)

        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert not stored(sandbox, message_id)
        assert sandbox.stats()["received"] == before["received"]

        behaviour = sandbox.behave(mode="fail", status=500, retry_after=None, fail_every=2)
        first, second = sandbox.post(signed_demande(hub_signer, new_id())), sandbox.post(body)
        assert (first.status_code, second.status_code) == (202, 500)
        assert "Retry-After" not in second.headers
    finally:
        assert sandbox.behave(mode="normal", fail_every=None)["mode"] == "normal"

    assert sandbox.post(body).status_code == 202
    assert (sandbox.received() / f"{message_id}.xml").read_bytes() == body


def test_a_callback_refused_with_503_is_retried_until_delivered(sandbox, hub_receiver, hub_signer):
    message_id = new_id()
    hub_receiver.fail_once.add(message_id)

    assert sandbox.post(signed_demande(hub_signer, message_id, "12/345672")).status_code == 202

    hub_receiver.wait_for(message_id)
    assert hub_receiver.attempts_for(message_id) == 2
    deadline = time.monotonic() + 5
    while sandbox.stats()["pending_callbacks"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.stats()["pending_callbacks"] == 0
    sent = list((sandbox.data_dir / "NARSA" / "sent").glob("NARSA-R-*.xml"))
    assert hub_receiver.accepted[message_id] in [path.read_bytes() for path in sent]


def test_a_callback_refused_with_another_4xx_is_set_aside_with_the_answer(sandbox, hub_receiver, hub_signer):
    message_id = new_id()
    hub_receiver.refuse.add(message_id)

    assert sandbox.post(signed_demande(hub_signer, message_id, "12/345675")).status_code == 202

    hub_receiver.wait_for_attempts(message_id, 1)
    rejected_dir = sandbox.data_dir / "NARSA" / "rejected"
    deadline = time.monotonic() + 5
    while not list(rejected_dir.glob("*.response.txt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    [answer] = list(rejected_dir.glob("*.response.txt"))
    assert b"ReferenceDemande inconnue" in answer.read_bytes()
    rejected = rejected_dir / answer.name.replace(".response.txt", ".xml")
    assert etree.fromstring(rejected.read_bytes()).findtext(tag("ReferenceDemande")) == message_id
    assert not (sandbox.data_dir / "NARSA" / "outbox" / rejected.name).exists()
    time.sleep(1.0)  # longer than the first backoff: no second attempt
    assert hub_receiver.attempts_for(message_id) == 1


def test_a_restart_keeps_deduplication_and_pending_callbacks(pki, hub_receiver, hub_signer, tmp_path):
    data_dir = tmp_path / "data"
    answered, pending = new_id(), new_id()
    answered_body = signed_demande(hub_signer, answered, "12/345674")
    hub_receiver.fail_always.add(pending)

    first = SandboxProcess(pki_dir=pki, data_dir=data_dir, hub_url=hub_receiver.url, log_path=tmp_path / "first.log")
    try:
        ack = first.post(answered_body)
        assert ack.status_code == 202
        assert first.post(signed_demande(hub_signer, pending, "12/345679")).status_code == 202
        hub_receiver.wait_for(answered)
        hub_receiver.wait_for_attempts(pending, 1)
    finally:
        assert first.stop() == 0  # SIGTERM stops it cleanly
    assert [p.name for p in (data_dir / "NARSA" / "outbox").glob("*.xml")] != []

    hub_receiver.fail_always.discard(pending)
    second = SandboxProcess(pki_dir=pki, data_dir=data_dir, hub_url=hub_receiver.url, log_path=tmp_path / "second.log")
    try:
        assert hub_receiver.wait_for(pending)  # re-sent from the outbox at start
        again = second.post(answered_body)
        assert again.status_code == 202
        assert again.content == ack.content
        time.sleep(ANSWER_DELAY + 0.5)
        assert hub_receiver.accepted_count[answered] == 1
        assert hub_receiver.accepted_count[pending] == 1
        stats = second.stats()
        assert stats["received"] == 2 and stats["duplicates"] == 1 and stats["pending_callbacks"] == 0
    finally:
        assert second.stop() == 0
