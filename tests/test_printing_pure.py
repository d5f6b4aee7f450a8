"""The parts of the documents for citizens that are pure logic: the verification codes, the rate limit of the
public verification, the signed record, and what each document prints (registry/printing/)."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from lxml import etree

from hub.errors import NothingToPrint, SignatureInvalid
from hub.trust import pki
from registry.printing import codes, documents, records
from hub.errors import TooManyLookups
from registry.printing.throttle import Throttle
from support import signer_for

UTC = dt.timezone.utc


def test_a_code_is_twenty_symbols_in_four_groups_and_each_is_new():
    made = {codes.new_code() for _ in range(200)}
    assert len(made) == 200
    for code in made:
        groups = code.split("-")
        assert [len(g) for g in groups] == [5, 5, 5, 5] and set("".join(groups)) <= set(codes.ALPHABET)
        assert codes.normalise(code) == code.replace("-", "")


def test_a_code_is_read_as_people_type_it():
    code = codes.new_code()
    compact = code.replace("-", "")
    assert codes.normalise(code.lower()) == compact
    assert codes.normalise(" ".join(code.split("-"))) == compact
    # Crockford's reading: O is 0, I and L are 1
    typed = compact.replace("0", "O").replace("1", "I")
    assert codes.normalise(typed) == compact
    assert codes.digest(code) == codes.digest(code.lower()) == codes.digest(compact)


def test_a_typo_is_caught_by_the_check_symbols():
    code = codes.new_code().replace("-", "")
    caught = 0
    for position in range(codes.LENGTH):
        for replacement in "0Z":
            typed = code[:position] + replacement + code[position + 1:]
            if typed != code:
                caught += codes.normalise(typed) is None
    # 10 check bits: a single wrong symbol slips through 1 time in 1024 at most; 38 tries here
    assert caught >= 36


@pytest.mark.parametrize("typed", ["", "A", "ABCDE-FGHJK", "U" * 20, "€" * 20, "A" * 41, "x-" * 30, None])
def test_what_cannot_be_a_code_is_none_and_has_no_digest(typed):
    assert codes.normalise(typed) is None
    with pytest.raises(ValueError):
        codes.digest(typed)


def test_the_throttle_refuses_past_the_limit_per_address_and_forgets_the_window():
    now = [0.0]
    throttle = Throttle(limit=3, window=60, clients=2, clock=lambda: now[0])
    for _ in range(3):
        throttle.check("10.0.0.1")
    with pytest.raises(TooManyLookups) as refused:
        throttle.check("10.0.0.1")
    assert refused.value.status == 429 and 0 < refused.value.retry_after <= 60
    throttle.check("10.0.0.2")  # another address has its own count
    now[0] = 61
    throttle.check("10.0.0.1")  # the window moved on
    throttle.check("10.0.0.3")
    assert len(throttle._seen) == 2  # only `clients` addresses are remembered


def _record(**changes) -> records.Record:
    base = dict(code_digest="ab" * 32, kind="REGISTRATION_CERTIFICATE", reference="MRE-0000001", holder="Y. El Amrani",
                post_code="FR-PARIS", issued_at=dt.datetime(2026, 12, 3, 14, 0, tzinfo=UTC), language="fr",
                pdf_digest="cd" * 32)
    return records.Record(**{**base, **changes})


def test_the_signed_record_reads_back_and_refuses_any_change(pki_dir):
    signer = signer_for(pki_dir, "REGISTRY")
    signed = records.sign(_record(), signer)
    assert records.read_verified(signed, signer.certificate) == _record()
    altered = signed.replace(b"MRE-0000001", b"MRE-0000002")
    with pytest.raises(SignatureInvalid):
        records.read_verified(altered, signer.certificate)
    other = signer_for(pki_dir, "NARSA")  # a record signed by another key is not the registry's
    with pytest.raises(SignatureInvalid):
        records.read_verified(records.sign(_record(), other), signer.certificate)
    with pytest.raises(SignatureInvalid):
        records.read_verified(b"<not xml", signer.certificate)
    hub_signed = etree.tostring(signer.sign(etree.fromstring(b"<Other xmlns='urn:x'><A>1</A></Other>")))
    with pytest.raises(SignatureInvalid):
        records.read_verified(hub_signed, signer.certificate)
    assert pki.load_certificate(str(pki_dir / "REGISTRY.crt")).subject == signer.certificate.subject


def _citizen(**changes):
    post = SimpleNamespace(code="FR-PARIS", name="Consulat général du Royaume du Maroc à Paris", city="Paris")
    base = dict(id=7, registration_id="MRE-0000007", status="ACTIVE", post=post, post_code="FR-PARIS",
                given_name_latin="Youssef Karim", family_name_latin="El Amrani", given_name_arabic="يوسف كريم",
                family_name_arabic="العمراني", birth_date=dt.date(1988, 4, 12), birth_place="Casablanca", sex="M",
                cnie="BK123456", passport_number=None, address_lines="12 rue de la Paix", city="Paris",
                country="FR", registered_at=dt.datetime(2026, 1, 5, tzinfo=UTC))
    return SimpleNamespace(**{**base, **changes})


def test_the_registration_certificate_prints_the_record_and_names_the_holder_briefly():
    printable = documents.registration_certificate(_citizen())
    values = {line.label: line.value for line in printable.lines}
    assert values["Registration number"] == "MRE-0000007" and values["Family name in Arabic"] == "العمراني"
    assert values["Date of birth"] == "1988-04-12" and "Passport number" not in values  # none: no line
    assert printable.holder == "Y. Karim El Amrani"  # what the public verification may say of the holder
    assert [line.arabic for line in printable.lines if line.label.endswith("in Arabic")] == [True, True]
    assert printable.post_code == "FR-PARIS" and printable.citizen_id == 7 and printable.case_id is None


@pytest.mark.parametrize("status", ["PENDING", "REJECTED", "DECEASED"])
def test_no_registration_certificate_unless_active(status):
    with pytest.raises(NothingToPrint, match=status):
        documents.registration_certificate(_citizen(status=status))


def test_a_case_prints_only_what_it_holds():
    waiting = SimpleNamespace(service="LICENCE_AUTHENTICATION", status="AWAITING_PARTNER", documents=[],
                              reference="LIC-2026-000001")
    with pytest.raises(NothingToPrint, match="AWAITING_PARTNER"):
        documents.for_case(waiting)
    with pytest.raises(NothingToPrint, match="PASSPORT_APPLICATION"):
        documents.for_case(SimpleNamespace(service="PASSPORT_APPLICATION", status="DELIVERED"))
    uncertified = SimpleNamespace(service="JUDICIAL_DOCUMENT", status="AT_POST", outcome=None,
                                  reference="JUD-2026-000001")
    with pytest.raises(NothingToPrint, match="not certified"):
        documents.for_case(uncertified)


def test_printing_without_its_arabic_font_says_which_package_is_missing(monkeypatch):
    from hub.errors import PrintingUnavailable
    from registry.printing import render
    render.check_available()  # this machine has them (`make test` installs them)
    monkeypatch.setattr(render, "ARABIC_FONT", "No Such Font")
    render.arabic_font_problem.cache_clear()
    try:
        with pytest.raises(PrintingUnavailable) as missing:
            render.check_available()
        assert missing.value.status == 503 and "fonts-hosny-amiri" in missing.value.detail
        monkeypatch.setattr(render.shutil, "which", lambda name: None)
        render.arabic_font_problem.cache_clear()
        with pytest.raises(PrintingUnavailable, match="fontconfig"):
            render.check_available()
    finally:
        monkeypatch.undo()
        render.arabic_font_problem.cache_clear()
    render.check_available()
