"""Builders for test messages: canonical requests signed by a chosen party's development key."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import httpx
from lxml import etree

from hub.trust import pki
from hub.trust.signing import Signer
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
           "cnie": "BK123456", "country": "FR", "city": "Paris"}


def register_citizen(client, **overrides) -> dict:
    """Register a citizen through the API (CITIZEN with `overrides`); returns the citizen as the API shows it."""
    response = client.post("/api/v1/citizens", json={**CITIZEN, **overrides})
    assert response.status_code == 201, response.text
    return response.json()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """A hub's /metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
