"""Hostile input at every door of a running hub: generated (hypothesis) and the classic XML attacks.

Doors: REST canonical (POST /api/v1/messages), REST partner document (POST /api/v1/partners/NARSA/messages),
SOAP (POST /soap/JUSTICE), an SFTP file polled from CDG, and a partner's synchronous answer.

Properties of the generated input (random bytes, random trees, entity payloads behind any prolog and
encoding, mutations of a valid signed message): the hub never answers 5xx; every refusal is a 4xx
problem (or a soap:Client fault) recorded once in `refusals`; nothing is stored from it (messages,
deliveries, events unchanged). A mutation may only be accepted when it left the signed content
exactly as signed (same exclusive canonical form; e.g. a space inside a tag): anything else accepted,
or refused only at a step after signature verification, is a signature bypass and fails the test.

The generated and classic inputs go to one hub for the module (each example compares what is stored
before and after it); the SFTP files and the partner's answers each get a hub of their own. The number of
generated examples is `examples(250)`: ten times as many under `make test-full`.
"""
from __future__ import annotations

import copy
import hashlib
import http.server
import os
import re
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from lxml import etree
from sqlalchemy import func, select

from conftest import examples, free_port, wait_for
from connectors.soap.envelope import SOAP_ENV, parse_envelope, read_fault, wrap_document_bytes
from hub.store.models import Delivery, Event, Message, Refusal
from hub.xml.schemas import ENVELOPE_NS
from hub.settings import PROJECT_ROOT
from support import StandInPartner, licence_request, signer_for
from test_soap_inbound import demande

XML = {"Content-Type": "application/xml"}
SOAP = {"Content-Type": "text/xml; charset=utf-8"}
DSIG = "http://www.w3.org/2000/09/xmldsig#"
FUZZ = hsettings(max_examples=examples(250), deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                        HealthCheck.data_too_large])
# refusals that only happen after the signature verified: a content change must never get this far
AFTER_VERIFICATION = {"Unknown correlation"}
pytestmark = pytest.mark.shared_hub


# -- the doors -------------------------------------------------------------------------------------

class Door:
    """Posts bytes through one door and reads the answer as (status, title, detail)."""

    def __init__(self, name: str, running_hub, client):
        self.name, self.hub, self.client = name, running_hub, client
        self.soap = httpx.Client(base_url=running_hub.url, timeout=30)

    def post(self, data: bytes) -> tuple[int, str, str]:
        if self.name == "soap":
            response = self.soap.post("/soap/JUSTICE", content=data, headers=SOAP)
            if response.status_code == 200:
                return 200, "", ""
            fault = read_fault(parse_envelope(response.content, max_bytes=1 << 22))
            assert fault is not None, response.text
            if response.status_code < 500:
                assert fault.code == "soap:Client", response.text
            title, _, detail = fault.string.partition(": ")
            return response.status_code, title, detail
        path = "/api/v1/messages" if self.name == "canonical" else "/api/v1/partners/NARSA/messages"
        response = self.client.post(path, content=data, headers=XML)
        if response.status_code >= 300:
            assert response.headers["content-type"] == "application/problem+json", response.text
            body = response.json()
            return response.status_code, body["title"], body["detail"]
        return response.status_code, "", ""

    def close(self):
        self.soap.close()


INTAKE_EVENTS = ("RECEIVED", "VALIDATED", "VERIFIED", "MAPPED_IN", "CORRELATED", "ACCEPTED", "QUEUED")


SENDER = {"canonical": "REGISTRY", "partner": "NARSA", "soap": "JUSTICE"}


def counts(running_hub, sender: str | None = None) -> tuple[int, int, int, int]:
    """Messages from `sender` (all when None), their deliveries and intake's events, and refusals. (An
    accepted example sets the hub to work in the background: delivery attempts, the registry's own
    answers; those are not what the door stored.)"""
    mine = select(Message.id) if sender is None else select(Message.id).where(Message.sender == sender)
    with running_hub.hub.sessions() as session:
        return (session.scalar(select(func.count()).select_from(mine.subquery())),
                session.scalar(select(func.count()).select_from(Delivery).where(Delivery.message_pk.in_(mine))),
                session.scalar(select(func.count()).select_from(Event).where(Event.kind.in_(INTAKE_EVENTS),
                                                                             Event.message_pk.in_(mine))),
                session.scalar(select(func.count()).select_from(Refusal)))


def exc_c14n(element) -> bytes:
    """What an enveloped signature covers: the exclusive canonical form without the ds:Signature (whose
    unsigned KeyInfo may change, e.g. line breaks in the base64 certificate, without changing anything signed)."""
    element = copy.deepcopy(element)
    for signature in element.findall(f"{{{DSIG}}}Signature"):
        element.remove(signature)
    return etree.tostring(element, method="c14n", exclusive=True)


def signed_part(name: str, data: bytes) -> bytes | None:
    """The exclusive canonical form of the signed document inside `data` (None when lxml cannot read it)."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
        if name == "partner":
            return exc_c14n(root)
        body = root.find(f"{{{ENVELOPE_NS if name == 'canonical' else SOAP_ENV}}}Body")
        return exc_c14n(body[0]) if body is not None and len(body) else None
    except (etree.Error, ValueError):
        return None


def narsa_result(pki_dir: Path) -> bytes:
    case = PROJECT_ROOT / "mappings/narsa/cases/licence-result.from-narsa/discrepancy.input.xml"
    root = signer_for(pki_dir, "NARSA").sign(etree.parse(str(case)).getroot())
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def valid_input(name: str, pki_dir: Path) -> tuple[bytes, int, int]:
    """A valid signed input for the door, and the byte range its signed document occupies."""
    if name == "canonical":
        data = licence_request(pki_dir)
        return data, data.index(b"<env:Body>") + len(b"<env:Body>"), data.index(b"</env:Body>")
    if name == "partner":
        data = narsa_result(pki_dir)
        return data, data.index(b"?>") + 2, len(data)
    data = wrap_document_bytes(demande(pki_dir))
    return data, data.index(b"<soap:Body>") + len(b"<soap:Body>"), data.index(b"</soap:Body>")


# -- strategies ------------------------------------------------------------------------------------

TOKENS = [b"<", b">", b"&", b"&amp;", b"&lt;", b"&#0;", b"&#x10FFFF;", b"&undefined;", b"<!DOCTYPE m>",
          b"<![CDATA[", b"]]>", b"<!--", b"-->", b"<?pi x?>", b"\x00", b"\xff\xfe", b"\xc3\x28", b'"', b"'",
          b' xmlns="urn:evil"', b' xmlns:ds="urn:evil"', b' Id="x"', b"<ds:Signature xmlns:ds='" + DSIG.encode() + b"'/>",
          b"<x>", b"</x>", b" ", b"\n", "é".encode(), b"\t"]


def mutated(data: bytes, start: int, end: int):
    position = st.integers(start, max(start, end - 1))
    return st.one_of(
        st.tuples(position, st.integers(0, 255)).map(lambda t: data[:t[0]] + bytes([t[1]]) + data[t[0] + 1:]),
        st.tuples(position, st.integers(1, 64)).map(lambda t: data[:t[0]] + data[t[0] + t[1]:]),
        st.tuples(position, st.binary(min_size=1, max_size=16)).map(lambda t: data[:t[0]] + t[1] + data[t[0]:]),
        st.tuples(position, st.sampled_from(TOKENS)).map(lambda t: data[:t[0]] + t[1] + data[t[0]:]),
        st.tuples(position, position).map(lambda t: data[:min(t)] + data[min(t):max(t)] * 2 + data[max(t):]),
    )


NAMES = st.sampled_from(["env:Message", "env:Header", "env:Body", "env:MessageId", "env:Type", "env:Sender",
                         "ds:Signature", "ds:Reference", "x", "Extrait", "lic:Holder"])
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20).map(escape)
_tree = st.recursive(st.builds(lambda n, t: f"<{n}>{t}</{n}>", NAMES, TEXT),
                     lambda kids: st.builds(lambda n, ks: f"<{n}>{''.join(ks)}</{n}>", NAMES,
                                            st.lists(kids, max_size=5)), max_leaves=40)
NS = (f'xmlns:env="{ENVELOPE_NS}" xmlns:ds="{DSIG}" xmlns:lic="urn:ma:gov:consular:licence:1"')


def random_tree(door: str):
    def wrap(tree: str) -> bytes:
        if door == "soap":
            return f'<soap:Envelope xmlns:soap="{SOAP_ENV}" {NS}><soap:Body>{tree}</soap:Body></soap:Envelope>'.encode()
        return re.sub(r"^<([\w:]+)>", lambda m: f"<{m.group(1)} {NS}>", tree, count=1).encode()
    return _tree.map(wrap)


ENTITY_ATTACKS = {
    "xxe-file": '<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m>&x;</m>',
    "xxe-network": '<!DOCTYPE m [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/leak">]><m>&x;</m>',
    "xxe-parameter": '<!DOCTYPE m [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p;]><m>&leak;</m>',
    "external-dtd": '<!DOCTYPE m SYSTEM "http://127.0.0.1:{port}/m.dtd"><m/>',
    "billion-laughs": ('<!DOCTYPE m [<!ENTITY a "lollollollol">'
                       + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
                       + ']><m>&j;</m>'),
    "quadratic-blowup": '<!DOCTYPE m [<!ENTITY a "' + "A" * 40_000 + '">]><m>' + "&a;" * 2_000 + "</m>",
}
PROLOGS = st.sampled_from(["", "\n", '<?xml version="1.0"?>\n', '<?xml version="1.0" encoding="UTF-8"?>',
                           "<!-- x -->" * 600, '<?xml version="1.0"?>' + "<?pi data?>\n" * 300])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1"])


def entity_payloads(port: int):
    def build(attack: str, prolog: str, encoding: str, soap: bool) -> bytes:
        text = ENTITY_ATTACKS[attack].replace("{port}", str(port))
        if soap:
            text = text.replace("<m>", f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><m>').replace(
                "</m>", "</m></soap:Body></soap:Envelope>").replace("<m/>", f'<soap:Envelope xmlns:soap="{SOAP_ENV}"/>')
        if encoding.startswith("utf-16") and prolog.startswith("<?xml"):
            prolog = prolog.replace('encoding="UTF-8"', 'encoding="UTF-16"')
        data = (prolog + text).encode(encoding)
        return (b"\xff\xfe" + data) if encoding == "utf-16-le" and prolog == "" else data
    return st.builds(build, st.sampled_from(sorted(ENTITY_ATTACKS)), PROLOGS, ENCODINGS, st.booleans())


class Listener:
    """An HTTP server on loopback counting every request: XXE must never reach it."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'<!ENTITY leak "LEAKED">')

            def log_message(self, *args):
                pass
        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    box = Listener()
    yield box
    box.close()


# -- generated input -------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # the hub's workers use random
@pytest.mark.parametrize("door_name", ["canonical", "partner", "soap"])
def test_generated_hostile_input_is_refused_with_4xx_and_stores_nothing(door_name, client, running_hub, pki_dir,
                                                                        listener):
    door = Door(door_name, running_hub, client)
    original, start, end = valid_input(door_name, pki_dir)
    signed = signed_part(door_name, original)
    inputs = st.one_of(st.binary(max_size=3000), random_tree(door_name), entity_payloads(listener.port),
                       mutated(original, start, end), mutated(original, start, end))
    seen = {"accepted": 0, "refused": 0}

    @FUZZ
    @given(data=inputs)
    def attack(data: bytes):
        before = counts(running_hub, SENDER[door_name])
        status, title, detail = door.post(data)
        after = counts(running_hub, SENDER[door_name])
        assert status < 500, (status, title, detail, data[:300])
        if status < 300:
            # only a mutation that left the signed document exactly as signed may be accepted
            assert signed_part(door_name, data) == signed, (status, data)
            seen["accepted"] += 1
            return
        seen["refused"] += 1
        assert 400 <= status < 500 and title and detail, (status, title, detail)
        assert after[:3] == before[:3], f"{title}: {detail} stored something"
        assert after[3] == before[3] + 1, "each refusal is recorded once"
        if signed_part(door_name, data) not in (signed, None):
            assert title not in AFTER_VERIFICATION, (title, detail, data)

    try:
        attack()
    finally:
        door.close()
    assert seen["refused"] > 150
    assert listener.hits == [], "the hub fetched something while parsing"


# -- the classic attacks, one by one ---------------------------------------------------------------

def deep(levels: int) -> str:
    return "<d>" * levels + "</d>" * levels


def explicit_cases(port: int, settings) -> list[tuple[str, bytes, int, str]]:
    cases = [(name, text.replace("{port}", str(port)).encode(), 400, "DOCTYPE")
             for name, text in ENTITY_ATTACKS.items()]
    cases += [
        ("doctype-behind-long-prolog", ("<!-- padding -->" * 1000 + ENTITY_ATTACKS["xxe-file"]).encode(), 400, "DOCTYPE"),
        ("doctype-in-utf-16", ('<?xml version="1.0" encoding="UTF-16"?>' + ENTITY_ATTACKS["xxe-file"]).encode("utf-16"),
         400, "DOCTYPE"),
        ("doctype-after-bom", b"\xef\xbb\xbf" + ENTITY_ATTACKS["billion-laughs"].encode(), 400, "DOCTYPE"),
        ("utf-7-smuggled-doctype", b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE m+AD4-<m/>', 400, "UTF-7"),
        ("utf-32", "<m/>".encode("utf-32"), 400, "UTF-32"),
        ("oversize", b"<m>" + b"x" * settings.max_message_bytes + b"</m>", 413, "limit"),
        ("deep-nesting", deep(settings.max_xml_depth + 10).encode(), 400, "HUB_MAX_XML_DEPTH"),
        ("very-deep-nesting", deep(5000).encode(), 400, "HUB_MAX_XML_DEPTH"),
        ("too-many-elements", b"<m>" + b"<e/>" * (settings.max_xml_elements + 1) + b"</m>", 400,
         "HUB_MAX_XML_ELEMENTS"),
    ]
    return cases


def in_soap(name: str, data: bytes) -> bytes:
    """The same attack carried by a SOAP envelope (a DOCTYPE stays in front: nothing else can hold it)."""
    if name in ("oversize", "deep-nesting", "very-deep-nesting", "too-many-elements"):
        return f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'.encode() + data + b"</soap:Body></soap:Envelope>"
    return data


@pytest.mark.parametrize("door_name", ["canonical", "partner", "soap"])
def test_classic_xml_attacks_each_get_a_clear_4xx(door_name, client, running_hub, listener):
    door = Door(door_name, running_hub, client)
    settings = running_hub.hub.settings
    answers = {}
    try:
        for name, data, status, rule in explicit_cases(listener.port, settings):
            before = counts(running_hub)
            got, title, detail = door.post(in_soap(name, data) if door_name == "soap" else data)
            answers[name] = (got, title, detail)
            assert (got, rule in detail) == (status, True), (name, got, title, detail)
            assert counts(running_hub)[:3] == before[:3]
            assert counts(running_hub)[3] == before[3] + 1, name
            assert "root:" not in detail and "LEAKED" not in detail
    finally:
        door.close()
    assert listener.hits == []
    assert answers["deep-nesting"][1] == answers["too-many-elements"][1] == "XML over the hub's depth or element cap"


@pytest.mark.private_hub  # counts every refusal and message its hub holds
def test_hostile_sftp_files_go_to_failed_with_the_reason(client, running_hub, start_sandbox, listener):
    control = free_port()
    cdg = start_sandbox("cdg", running_hub.url, extra_args=["--control-port", str(control)], http_port=control)
    root = cdg.data_dir / "CDG" / "sftp"
    files = {"AR_laughs.xml": (ENTITY_ATTACKS["billion-laughs"].encode(), "DOCTYPE"),
             "AR_xxe.xml": (ENTITY_ATTACKS["xxe-network"].replace("{port}", str(listener.port)).encode(), "DOCTYPE"),
             "AR_deep.xml": (deep(200).encode(), "HUB_MAX_XML_DEPTH"),
             "AR_junk.xml": (b"\x00\xff not xml", "not well-formed")}
    for name, (data, _) in files.items():
        (root / "outbox" / f".{name}").write_bytes(data)
        os.replace(root / "outbox" / f".{name}", root / "outbox" / name)
    client.post("/api/v1/partners/CDG/poll").raise_for_status()
    wait_for(lambda: all((root / "failed" / f"{name}.reason.txt").exists() for name in files), 10,
             what="every hostile file in failed/")
    for name, (data, rule) in files.items():
        assert rule in (root / "failed" / f"{name}.reason.txt").read_text(encoding="utf-8"), name
    with running_hub.hub.sessions() as session:
        rows = session.scalars(select(Refusal).where(Refusal.channel == "sftp")).all()
        assert sorted(r.digest for r in rows) == sorted(hashlib.sha256(d).hexdigest() for d, _ in files.values())
    assert counts(running_hub)[:3] == (0, 0, 0)
    assert listener.hits == []


@pytest.mark.private_hub  # NARSA's port is the stand-in's, the licence request the first
@pytest.mark.parametrize("answer, rule", [
    (ENTITY_ATTACKS["billion-laughs"].encode(), "DOCTYPE"),
    (deep(100).encode(), "HUB_MAX_XML_DEPTH"),
    (b"<m>" + b"<e/>" * 50_001 + b"</m>", "HUB_MAX_XML_ELEMENTS"),
], ids=["billion-laughs", "deep", "many-elements"])
def test_hostile_synchronous_answer_dead_letters_the_delivery_with_the_reason(answer, rule, client, running_hub,
                                                                              pki_dir, partner_ports):
    partner = StandInPartner(partner_ports["NARSA"], answer)
    try:
        assert client.post("/api/v1/messages", content=licence_request(pki_dir), headers=XML).status_code == 202
        message = wait_for(lambda: (m := client.get("/api/v1/messages/REGISTRY-LIC-2026-000001").json())
                           ["deliveries"][0]["state"] == "DEAD" and m, 20, what="the delivery dead-lettered")
    finally:
        partner.close()
    assert len(partner.calls) == 1, "a refused answer is permanent: not retried"
    assert "answer was refused" in message["deliveries"][0]["last_error"]
    assert rule in message["deliveries"][0]["last_error"]
