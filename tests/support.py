"""Builders for test messages (canonical requests signed by a chosen party's development key), and
`hub_command`, the `hub` command line run as a test runs it."""
from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import httpx
from lxml import etree

from hub.trust import pki
from hub.trust.signing import Signer
from hub.xml.envelope import bind, business_document, read_header
from registry.models import Case, Citizen
from registry.services import licence


def signer_for(pki_dir: Path, party: str) -> Signer:
    return Signer(pki.load_key(str(pki_dir / f"{party}.key")), pki.load_certificate(str(pki_dir / f"{party}.crt")))


def licence_request(pki_dir: Path, *, reference: str = "LIC-2026-000001", number: str = "12/345673",
                    signed_by: str = "REGISTRY", created: dt.datetime | None = None) -> bytes:
    """A valid canonical LicenceAuthenticationRequest envelope (message id REGISTRY-<reference>)."""
    created = created or dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)
    citizen = Citizen(registration_id="MRE-0000042", given_name_latin="Youssef", family_name_latin="El Amrani",
                      given_name_arabic="يوسف", family_name_arabic="العمراني", birth_date=dt.date(1988, 4, 12),
                      cnie="BK123456", country="FR", post_code="FR-PARIS")
    case = Case(reference=reference, post_code="FR-PARIS", created_at=created, citizen=citizen,
                details={"number": number, "categories": ["B"], "issue_date": "2010-05-03"})
    return licence.build_request(SimpleNamespace(signer=signer_for(pki_dir, signed_by)), case)


def sign_envelope(envelope: etree._Element | bytes, signer: Signer) -> bytes:
    """A canonical envelope as its sender sends it: the header bound into the business document
    (env:Binding, from the envelope's header as it is) and the document signed by `signer`."""
    root = etree.fromstring(envelope) if isinstance(envelope, bytes) else envelope
    document = business_document(root)
    document.getparent().replace(document, signer.sign(bind(document, read_header(root))))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def replace_text(data: bytes, old: str, new: str) -> bytes:
    assert old.encode() in data, f"{old!r} not in message"
    return data.replace(old.encode(), new.encode(), 1)


def strip_signature(data: bytes) -> bytes:
    root = etree.fromstring(data)
    for sig in root.iter("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        sig.getparent().remove(sig)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


CITIZEN = {"post_code": "FR-PARIS", "given_name_latin": "Youssef", "family_name_latin": "El Amrani",
           "given_name_arabic": "يوسف", "family_name_arabic": "العمراني", "birth_date": "1988-04-12", "sex": "M",
           "cnie": "BK123456", "country": "FR", "city": "Paris", "address_lines": "3 rue de Rivoli"}


def hub_sessions(client):
    """The sessionmaker of the database of the hub `client` talks to (one the tests run: conftest.SESSIONS)."""
    from conftest import SESSIONS
    return SESSIONS[str(client.base_url).rstrip("/")]


def register_citizen(client, **overrides) -> dict:
    """An ACTIVE citizen (CITIZEN with `overrides`), as DGSN's identity check leaves one, stored through the
    registry's service layer of the hub `client` talks to; returns the citizen as the API shows it.

    For the tests whose subject is not registration: they need no DGSN. Registration itself (POST
    /api/v1/citizens: PENDING until DGSN answers, the CNIE and near-duplicate checks) is tested in
    tests/test_citizens.py against DGSN's sandbox."""
    from registry import service
    from registry.outputs import citizen_out
    from registry.views import CitizenIn
    person = CitizenIn(**{**CITIZEN, **overrides}).model_dump()
    with hub_sessions(client).begin() as session:
        return citizen_out(service.register_citizen(session, status="ACTIVE", **person))


def open_repatriation_case(client) -> str:
    """A repatriation case for a registered (deceased) citizen, opened through the API; returns its reference."""
    deceased = register_citizen(client, given_name_latin="Rachid", family_name_latin="Bennani",
                                given_name_arabic="رشيد", family_name_arabic="بناني", birth_date="1951-02-03",
                                cnie="J654321")["registration_id"]
    response = client.post("/api/v1/cases/repatriation", json={
        "registration_id": deceased,
        "death": {"date": "2026-11-18", "country": "FR", "city": "Paris", "cause_code": "I21.9",
                  "cause_text": "Cause médicale confidentielle"},
        "burial": {"commune": "1411011", "commune_name": "Agadir"},
        "transport": {"entry_point": "CMN", "arrival_date": "2026-11-25", "carrier": "Royal Air Maroc",
                      "seal_number": "SCL-204518"}})
    assert response.status_code == 201, response.text
    return response.json()["reference"]


def identity_confirmed(client, registration_id: str) -> dict:
    """What DGSN's MATCH does to a citizen registered through POST /api/v1/citizens (PENDING -> ACTIVE), for
    tests that register through the API without running DGSN's sandbox."""
    from registry import citizens, service
    from registry.outputs import citizen_out
    with hub_sessions(client).begin() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        citizens.identity_checked(session, citizen, status="ACTIVE", case_reference="tests")
        return citizen_out(citizen)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """A hub's /metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


_SCRIPT = Path(sys.executable).with_name("hub")
HUB_COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "hub.cli.main"]
# Variables that would make a run depend on the caller's shell rather than on the test.
_SHELL_VARIABLES = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "PYTHONIOENCODING")


def hub_command(*args: str, env: dict[str, str], process: bool = False, cwd: Path | None = None,
                timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`hub ARGS` run with `env`'s HUB_* variables (and COLUMNS, default 80) in place of this process's.

    By default in this process, through the command line's own `main()` (its parsing, commands, output
    and exit codes as they run, without a Python start-up per call); `process=True` runs the installed
    `hub` script as a real subprocess, for the tests whose subject is a separate process. `stdin`: what the
    command reads from its standard input (a password)."""
    mine = {k: v for k, v in env.items() if k.startswith("HUB_") or k == "COLUMNS"}
    if process:
        base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k not in _SHELL_VARIABLES}
        return subprocess.run([*HUB_COMMAND, *args], capture_output=True, text=True, timeout=timeout,
                              env={**base, **mine}, cwd=cwd, input=stdin)
    from hub import cli
    from hub.cli.main import main
    saved_environ = dict(os.environ)
    saved_width = cli.console._width  # rich's own default (None: from the terminal), put back afterwards
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True), io.StringIO()
    try:
        for name in [k for k in os.environ if k.startswith("HUB_") or k in _SHELL_VARIABLES]:
            del os.environ[name]
        os.environ.update(mine)
        cli.console.width = int(mine.get("COLUMNS", 80))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                _standard_input(io.StringIO(stdin or "")):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's refusals
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        cli.console._width = saved_width
    return subprocess.CompletedProcess(["hub", *args], code, out.buffer.getvalue().decode("utf-8"), err.getvalue())


@contextlib.contextmanager
def _standard_input(stream):
    saved, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = saved


class StandInPartner:
    """A partner on its loopback port answering every POST with `status` and `answer` (application/xml), or with
    what `answer(request body)` returns when it is a function: the body, or (status, body); `calls` lists the
    paths asked."""

    def __init__(self, port: int, answer: bytes | Callable[[bytes], bytes | tuple[int, bytes]], *,
                 status: int = 200):
        calls = self.calls = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                request = self.rfile.read(int(self.headers.get("content-length", 0)))
                reply = answer(request) if callable(answer) else answer
                code, reply = reply if isinstance(reply, tuple) else (status, reply)
                calls.append(self.path)
                self.send_response(code)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
