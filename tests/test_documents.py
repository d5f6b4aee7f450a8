"""Documents for citizens (registry/printing/) over HTTP against a running hub: the registration certificate and
the printable forms of what a case holds, as PDF in French and Arabic, read back as a person would (pdftotext
for the words and their order, pdftoppm for a picture of the first page, zbarimg for the QR code in that
picture), and the public verification of their codes: genuine, revoked, tampered with, unknown; who may print
and revoke; what the verification reveals (no more than is printed)."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from conftest import wait_for
from browser_support import screenshot
from console_support import ConsoleClient, make_user
from hub.store.models import AuditEntry
from registry import service
from registry.models import Citizen, IssuedDocument
from registry.printing import codes
from registry.printing.throttle import Throttle
from support import register_citizen

pytestmark = pytest.mark.shared_hub

PARIS, MADRID = "FR-PARIS", "ES-MADRID"
TOOLS = ("pdftotext", "pdftoppm", "zbarimg")
CODE = re.compile(r"\b[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}\b")
BIDI_MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
SHOWN_KEYS = {"status", "genuine", "valid", "kind", "reference", "holder", "post_code", "issued_on", "language",
              "pdf_sha256"}


@pytest.fixture(scope="module", autouse=True)
def tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make test-tools` installs poppler-utils and zbar-tools")


class Pdf:
    """A PDF read back as a person would: its text, its words' positions, a picture of its first page."""

    def __init__(self, data: bytes, directory: Path, name: str):
        assert data.startswith(b"%PDF-"), data[:200]
        self.data, self.path = data, directory / f"{name}.pdf"
        self.path.write_bytes(data)

    @property
    def text(self) -> str:
        """The text in logical order, without the bidirectional marks pdftotext adds around right-to-left runs."""
        out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(self.path), "-"], capture_output=True, check=True)
        return out.stdout.decode().translate(BIDI_MARKS)

    @property
    def squeezed(self) -> str:
        """The text without white space: pdftotext may cut an Arabic word where the font's glyphs leave a gap."""
        return "".join(self.text.split())

    def x_of(self, word: str) -> float:
        """Where `word` starts on the first page, from the left (points). pdftotext's boxes hold a right-to-left word
        in the order its glyphs are drawn, left to right."""
        out = subprocess.run(["pdftotext", "-bbox", "-f", "1", "-l", "1", str(self.path), "-"], capture_output=True,
                             check=True).stdout.decode()
        for x_min, found in re.findall(r'<word xMin="([0-9.]+)"[^>]*>([^<]*)</word>', out):
            if word in (found.translate(BIDI_MARKS), found.translate(BIDI_MARKS)[::-1]):
                return float(x_min)
        raise AssertionError(f"{word!r} is not a word of {self.path.name}")

    def first_page(self) -> Path:
        stem = self.path.with_suffix("")
        subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", str(self.path),
                        str(stem)], check=True)
        return stem.with_suffix(".png")

    @property
    def code(self) -> str:
        [code] = set(CODE.findall(self.text))
        return code


def qr_of(png: Path) -> str:
    """What the QR code in a picture holds (zbarimg reads it as a phone would)."""
    out = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True, text=True)
    assert out.returncode == 0, f"no QR code found in {png}: {out.stderr}"
    return out.stdout.strip()


def a4_portrait(png: Path) -> bool:
    from PIL import Image
    with Image.open(png) as image:
        width, height = image.size
        dark = sum(image.convert("L").point(lambda v: 255 if v < 128 else 0).histogram()[255:])
    return abs(height / width - 297 / 210) < 0.01 and dark > 0.01 * width * height


def audit(running_hub, action: str, subject: str) -> list[AuditEntry]:
    with running_hub.hub.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.subject == subject)))


def issued_count(running_hub, subject: str) -> int:
    with running_hub.hub.sessions() as session:
        return session.scalar(select(func.count()).select_from(IssuedDocument).where(IssuedDocument.subject == subject))


def test_registration_certificate_in_french_and_arabic_checked_by_its_code(running_hub, client, client_as, anonymous,
                                                                          tmp_path):
    citizen = register_citizen(client, cnie="BK700001", birth_date="1988-04-12")
    rid = citizen["registration_id"]
    agent = client_as("consular_agent", post=PARIS)
    pdfs = {}
    for lang in ("fr", "ar"):
        response = agent.get(f"/api/v1/citizens/{rid}/certificate.pdf", params={"lang": lang})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["cache-control"] == "no-store"
        pdfs[lang] = Pdf(response.content, tmp_path, f"certificate-{lang}")
    french, arabic = pdfs["fr"], pdfs["ar"]

    assert "Attestation d'immatriculation consulaire" in french.text and "Royaume du Maroc" in french.text
    for printed in (rid, "El Amrani", "Youssef", "12 avril 1988", "BK700001", "Masculin", "Paris"):
        assert printed in french.text, printed
    assert "العمراني" in french.squeezed and "يوسف" in french.squeezed  # the Arabic names, in a French document
    # Arabic, shaped and extracted in logical order (reversed letters would not match)
    for printed in ("المملكةالمغربية", "شهادةالتسجيلالقنصلي", "رقمالتسجيل", "الاسمالعائليبالعربية", "العمراني", "يوسف",
                    "ذكر", "أبريل1988", rid, "ElAmrani", "BK700001"):
        assert printed in arabic.squeezed, printed
    # right to left: the label stands right of its value in Arabic, left of it in French
    assert arabic.x_of(rid) < arabic.x_of("الجنس")
    assert french.x_of("Sexe") < french.x_of(rid)

    # each print is a document of its own, with its code, its QR code holding the address that checks it
    assert french.code != arabic.code
    for pdf in (french, arabic):
        picture = pdf.first_page()
        assert a4_portrait(picture)
        address = qr_of(picture)
        assert address == f"{running_hub.url}/verify/{pdf.code.replace('-', '')}"
        page = anonymous.get(address, headers={"Accept-Language": "fr"})
        assert page.status_code == 200 and "Authentique" in page.text and rid in page.text
        answer = anonymous.get(f"/api/v1/verify/{pdf.code}")
        assert answer.status_code == 200
        assert answer.json() == {"status": "genuine", "genuine": True, "valid": True,
                                 "kind": "REGISTRATION_CERTIFICATE", "reference": rid, "holder": "Y. El Amrani",
                                 "post_code": PARIS, "issued_on": answer.json()["issued_on"],
                                 "language": "fr" if pdf is french else "ar",
                                 "pdf_sha256": hashlib.sha256(pdf.data).hexdigest()}
        for private in ("BK700001", "1988", "Youssef", "العمراني", "Casablanca", citizen["city"]):
            assert private not in answer.text and private not in page.text.split("<main", 1)[1], private
    in_arabic = anonymous.get(f"/verify/{arabic.code}", headers={"Accept-Language": "ar"})
    assert 'dir="rtl"' in in_arabic.text and "وثيقة أصلية" in in_arabic.text

    issued = audit(running_hub, "DOCUMENT_ISSUED", rid)
    assert len(issued) == 2 and all(agent.token.split("_")[1] in e.actor for e in issued)
    assert {e.detail.split(",")[0] for e in issued} == {f"REGISTRATION_CERTIFICATE in {lang}" for lang in ("fr", "ar")}
    with running_hub.hub.sessions() as session:  # the code itself is kept nowhere: only its digest
        kept = session.scalars(select(IssuedDocument).where(IssuedDocument.subject == rid)).all()
        assert {d.code_digest for d in kept} == {codes.digest(french.code), codes.digest(arabic.code)}
        assert not any(french.code.replace("-", "").encode() in d.record for d in kept)


def test_who_may_print_and_what_is_refused(running_hub, client, client_as, anonymous):
    rid = register_citizen(client, cnie="BK700002")["registration_id"]
    madrid = client_as("consular_agent", post=MADRID)
    refused = madrid.get(f"/api/v1/citizens/{rid}/certificate.pdf")
    assert refused.status_code == 403 and MADRID in refused.json()["detail"]
    assert issued_count(running_hub, rid) == 0 and audit(running_hub, "DOCUMENT_ISSUED", rid) == []
    assert client_as("integration").get(f"/api/v1/citizens/{rid}/certificate.pdf").status_code == 403
    # a supervisor reads the record but issues no official document: that is the posts'
    assert client_as("supervisor").get(f"/api/v1/citizens/{rid}/certificate.pdf").status_code == 403
    assert anonymous.get(f"/api/v1/citizens/{rid}/certificate.pdf").status_code == 401
    wrong_language = client.get(f"/api/v1/citizens/{rid}/certificate.pdf", params={"lang": "en"})
    assert wrong_language.status_code == 422 and "lang" in wrong_language.text
    assert client.get("/api/v1/citizens/MRE-9999999/certificate.pdf").status_code == 404
    assert client.get("/api/v1/citizens/MRE-1/certificate.pdf").status_code == 422
    with running_hub.hub.sessions.begin() as session:  # registered, not yet confirmed by DGSN's identity check
        pending = service.register_citizen(session, post_code=PARIS, given_name_latin="Salma",
                                           family_name_latin="Tazi", given_name_arabic="سلمى",
                                           family_name_arabic="التازي", birth_date=dt.date(1990, 1, 2), sex="F",
                                           country="FR", city="Paris", status="PENDING").registration_id
    not_yet = client.get(f"/api/v1/citizens/{pending}/certificate.pdf")
    assert not_yet.status_code == 409 and "ACTIVE" in not_yet.json()["detail"]
    assert issued_count(running_hub, pending) == 0


def test_case_documents_print_what_the_partners_signed(running_hub, start_sandbox, client, client_as, anonymous,
                                                       tmp_path):
    boxes = start_sandbox(["narsa", "etat_civil", "justice"], running_hub.url)
    citizen = register_citizen(client, cnie="BK700003", given_name_latin="Khadija", family_name_latin="Alaoui",
                               given_name_arabic="خديجة", family_name_arabic="العلوي", sex="F")
    rid = citizen["registration_id"]
    licence = client.post("/api/v1/cases/licence-authentication", json={
        "registration_id": rid, "licence": {"number": "12/345673", "categories": ["B"], "issue_date": "2005-09-01"}})
    extracts = {number: client.post("/api/v1/cases/civil-status-extract", json={
        "registration_id": rid, "act": {"office": "1441011", "year": 1979, "number": number, "kind": "BIRTH"}})
        for number in ("1234", "889")}
    assert licence.status_code == 201 and all(e.status_code == 201 for e in extracts.values())
    sent = httpx.post(f"{boxes['justice'].url}/_sandbox/send-requests",
                      json={"addressees": [{"cnie": "BK700003", "name": "Khadija Alaoui"}]}, timeout=10)
    assert sent.status_code == 202, sent.text

    def status(reference):
        return client.get(f"/api/v1/cases/{reference}").json()["status"]

    licence_ref, extract_ref = licence.json()["reference"], extracts["1234"].json()["reference"]
    wait_for(lambda: status(licence_ref) == "AUTHENTIC" and status(extract_ref) == "ISSUED", 30,
             what="NARSA's attestation and ETAT_CIVIL's extract")
    judicial = wait_for(lambda: [c for c in client.get("/api/v1/cases", params={"service": "JUDICIAL_DOCUMENT",
                                                                                  "limit": 100}).json()
                                 if c["registration_id"] == rid and c["status"] == "AT_POST"], 30,
                        what="the judicial case at the post")[0]["reference"]
    not_yet = client.get(f"/api/v1/cases/{judicial}/document.pdf")
    assert not_yet.status_code == 409 and "not certified" in not_yet.json()["detail"]
    outcome = client.post(f"/api/v1/cases/{judicial}/outcome", json={"outcome": "REFUSED"})
    assert outcome.status_code == 200 and outcome.json()["status"] == "REFUSED", outcome.text
    not_found = extracts["889"].json()["reference"]
    wait_for(lambda: status(not_found) == "NOT_FOUND", 30, what="the extract not found")
    assert client.get(f"/api/v1/cases/{not_found}/document.pdf").status_code == 409

    agent = client_as("consular_agent", post=PARIS)
    expected = {
        licence_ref: ({"fr": ["Attestation d'authentification du permis de conduire", "12/345673", "ATT-",
                              "Signé par l'Agence nationale de la sécurité routière (NARSA)."],
                       "ar": ["شهادةالتحققمنصحةرخصةالسياقة", "12/345673", "العلوي", "خديجة"]},
                      "LICENCE_ATTESTATION", "K. Alaoui"),
        extract_ref: ({"fr": ["Extrait d'état civil", "1441011", "Naissance", "EXT-", "1979",
                              "Signé par le registre de l'état civil (ETAT_CIVIL)."],
                       "ar": ["مستخرجمنالحالةالمدنية", "ولادة", "1441011", "EXT-"]},
                      "CIVIL_STATUS_EXTRACT", "K. Alaoui"),
        judicial: ({"fr": ["Certificat de remise d'un acte judiciaire", "Refusé par le destinataire",
                           "Réputé remis le", "Khadija Alaoui"],
                    "ar": ["شهادةتبليغوثيقةقضائية", "رفضهالمرسلإليه", "يعتبرمبلغابتاريخ", judicial]},
                   "JUDICIAL_DELIVERY_CERTIFICATE", "K. Alaoui"),
    }
    for reference, (words, kind, holder) in expected.items():
        for lang, printed in words.items():
            response = agent.get(f"/api/v1/cases/{reference}/document.pdf", params={"lang": lang})
            assert response.status_code == 200, response.text
            pdf = Pdf(response.content, tmp_path, f"{kind}-{lang}")
            for text in printed:
                assert text in (pdf.squeezed if lang == "ar" else pdf.text), (reference, lang, text)
            assert reference in pdf.text
            answer = anonymous.get(f"/api/v1/verify/{pdf.code}").json()
            assert (answer["status"], answer["kind"], answer["reference"], answer["holder"]) == (
                "genuine", kind, reference, holder)
    assert len(audit(running_hub, "DOCUMENT_ISSUED", judicial)) == 2
    madrid = client_as("consular_agent", post=MADRID)
    assert madrid.get(f"/api/v1/cases/{licence_ref}/document.pdf").status_code == 403


@pytest.mark.both_databases
def test_verification_tells_revoked_tampered_and_unknown(running_hub, client, client_as, anonymous, tmp_path):
    citizen_id = register_citizen(client, cnie="BK700004")["registration_id"]
    agent = client_as("consular_agent", post=PARIS)
    first, second = (Pdf(agent.get(f"/api/v1/citizens/{citizen_id}/certificate.pdf").content, tmp_path, name).code
                     for name in ("first", "second"))

    def verdict(code):
        return anonymous.get(f"/api/v1/verify/{code}").json()["status"]

    # revocation: by the post that issued it, once, with a reason; audited
    madrid = client_as("consular_agent", post=MADRID)
    assert madrid.post(f"/api/v1/documents/{first}/revoke", json={"reason": "lost"}).status_code == 403
    assert verdict(first) == "genuine"
    hostile = agent.post(f"/api/v1/documents/{first}/revoke", json={"reason": "lost\u202e"})
    assert hostile.status_code in (400, 422) and "reason" in hostile.text and verdict(first) == "genuine"
    revoked = agent.post(f"/api/v1/documents/{first.lower()}/revoke", json={"reason": "reported lost"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert agent.post(f"/api/v1/documents/{first}/revoke", json={"reason": "again"}).status_code == 409
    answer = anonymous.get(f"/api/v1/verify/{first}").json()
    assert answer["status"] == "revoked" and answer["genuine"] and not answer["valid"]
    assert "plus valide" in anonymous.get(f"/verify/{first}", headers={"Accept-Language": "fr"}).text
    [entry] = audit(running_hub, "DOCUMENT_REVOKED", citizen_id)
    assert agent.token.split("_")[1] in entry.actor and "reported lost" in entry.detail
    assert verdict(second) == "genuine"
    assert agent.post(f"/api/v1/documents/{codes.new_code()}/revoke", json={"reason": "x"}).status_code == 404

    # the registration it certifies ended (a transfer here): the certificate is no longer valid
    with running_hub.hub.sessions.begin() as session:
        session.execute(update(Citizen).where(Citizen.registration_id == citizen_id).values(post_code=MADRID))
    assert verdict(second) == "revoked"
    with running_hub.hub.sessions.begin() as session:
        session.execute(update(Citizen).where(Citizen.registration_id == citizen_id).values(post_code=PARIS))
    assert verdict(second) == "genuine"

    # changed in the database: the registry's signature no longer holds
    digest = codes.digest(second)
    with running_hub.hub.sessions.begin() as session:
        row = session.scalars(select(IssuedDocument).where(IssuedDocument.code_digest == digest)).one()
        record = row.record
        row.subject = "MRE-0999999"  # another citizen's: the record was signed for this one
    assert verdict(second) == "not_genuine"
    with running_hub.hub.sessions.begin() as session:
        row = session.scalars(select(IssuedDocument).where(IssuedDocument.code_digest == digest)).one()
        row.subject, row.record = citizen_id, record.replace(b"Y. El Amrani", b"Z. El Amrani")
    tampered = anonymous.get(f"/api/v1/verify/{second}")
    assert tampered.json() == {"status": "not_genuine", "genuine": False, "valid": False}
    assert "Non authentique" in anonymous.get(f"/verify/{second}", headers={"Accept-Language": "fr"}).text

    # unknown, mistyped, hostile: nothing found, nothing echoed unescaped
    unknown = anonymous.get(f"/api/v1/verify/{codes.new_code()}")
    assert unknown.status_code == 200 and unknown.json() == {"status": "unknown", "genuine": False, "valid": False}
    mistyped = second[:-1] + ("0" if second[-1] != "0" else "1")
    assert verdict(mistyped) == "unknown"
    assert anonymous.get(f"/verify/{codes.new_code()}").status_code == 404
    hostile_page = anonymous.get("/verify/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert hostile_page.status_code == 404 and "<script>alert" not in hostile_page.text
    assert set(tampered.json()) <= SHOWN_KEYS and set(anonymous.get(f"/api/v1/verify/{first}").json()) == SHOWN_KEYS


def test_the_public_verification_needs_no_token_and_is_rate_limited(running_hub, anonymous):
    code = codes.new_code()
    answer = anonymous.get(f"/api/v1/verify/{code}")
    assert answer.status_code == 200 and answer.json()["status"] == "unknown"  # answered: no token needed
    assert anonymous.get("/api/v1/citizens/MRE-0000001").status_code == 401  # the rest of /api still needs one
    assert anonymous.get("/api/v1/verify").status_code == 401  # only what is under the public prefix
    typed = anonymous.get("/verify", params={"code": " ".join(code.lower().split("-"))}, follow_redirects=False)
    assert typed.status_code == 303 and typed.headers["location"] == f"/verify/{code.replace('-', '')}"
    nonsense = anonymous.get("/verify", params={"code": "not a code"}, headers={"Accept-Language": "fr"})
    assert nonsense.status_code == 200 and "n'est pas un code de vérification" in nonsense.text
    registry = running_hub.app.state.registry
    registry.verify_throttle = Throttle(limit=3, window=60)
    try:
        answers = [anonymous.get(f"/api/v1/verify/{code}").status_code for _ in range(3)]
        limited = anonymous.get(f"/verify/{code}")
        assert answers == [200, 200, 200] and limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
    finally:
        registry.verify_throttle = None


def test_the_console_prints_in_the_viewers_language(running_hub, client, tmp_path):
    rid = register_citizen(client, cnie="BK700005")["registration_id"]
    paris, _ = make_user(running_hub.hub.sessions, "consular_agent", post=PARIS)
    madrid, _ = make_user(running_hub.hub.sessions, "consular_agent", post=MADRID)
    path = f"/monitor/citizens/{rid}/certificate.pdf"
    with ConsoleClient(running_hub.url, paris) as person:
        person.cookies.set("hub_lang", "ar")
        arabic = person.get(path)
        assert arabic.status_code == 200 and "شهادةالتسجيلالقنصلي" in Pdf(arabic.content, tmp_path, "ar").squeezed
        french = person.get(path, params={"lang": "fr"})
        assert "Attestation d'immatriculation consulaire" in Pdf(french.content, tmp_path, "fr").text
        assert person.get("/monitor/cases/LIC-2026-999999/document.pdf").status_code == 404
    with ConsoleClient(running_hub.url, madrid) as other:
        assert other.get(path).status_code == 403
    with httpx.Client(base_url=running_hub.url) as stranger:
        assert stranger.get(path).status_code == 303  # to the sign-in page
    assert len(audit(running_hub, "DOCUMENT_ISSUED", rid)) == 2


def test_the_verification_page_reads_in_french_and_in_arabic(running_hub, client, client_as, browser_context, tmp_path):
    rid = register_citizen(client, cnie="BK700006")["registration_id"]
    printed = client_as("consular_agent", post=PARIS).get(f"/api/v1/citizens/{rid}/certificate.pdf")
    code = Pdf(printed.content, tmp_path, "certificate").code
    for lang, genuine in (("fr", "Authentique"), ("ar", "وثيقة أصلية")):
        page = browser_context.another(locale=lang).new_page()
        page.goto(f"{running_hub.url}/verify")
        assert page.get_attribute("html", "dir") == ("rtl" if lang == "ar" else "ltr")
        page.fill("#code", " ".join(code.lower().split("-")))  # typed as a person may, from the paper
        page.click("button[type=submit]")
        page.wait_for_url(f"**/verify/{code.replace('-', '')}")
        shown = page.inner_text("main")
        assert genuine in shown and rid in shown and "Y. El Amrani" in shown
        screenshot(page, f"verify-{lang}")
