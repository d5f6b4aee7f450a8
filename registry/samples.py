"""Valid signed canonical messages for integrators (`hub sample TYPE`), signed with the dev keys.

The registry contributes them to the hub as its app's `samples` (registry/app.py): message type ->
fn(settings) -> bytes, called without a running hub."""
from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

from hub.settings import Settings
from hub.trust import pki
from hub.trust.signing import Signer
from registry.canonical import PARTY
from registry.models import Case, Citizen
from registry.services import licence


def _licence_request(settings: Settings) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    citizen = Citizen(registration_id="MRE-0000042", given_name_latin="Youssef", family_name_latin="El Amrani",
                      given_name_arabic="يوسف", family_name_arabic="العمراني", birth_date=dt.date(1988, 4, 12),
                      cnie="BK123456", country="FR", post_code="FR-PARIS")
    # a reference of its own each time, so every sample is a new message to the hub
    case = Case(reference=f"LIC-{now:%Y%m%d}-S{uuid.uuid4().hex[:8].upper()}", post_code="FR-PARIS", created_at=now,
                details={"number": "12/345673", "categories": ["B"], "issue_date": "2010-05-03"}, citizen=citizen)
    pki.require_files(settings.pki_dir / f"{PARTY}.key", settings.pki_dir / f"{PARTY}.crt", whose=f"the {PARTY}'s signing")
    signer = Signer(pki.load_key(str(settings.pki_dir / f"{PARTY}.key")),
                    pki.load_certificate(str(settings.pki_dir / f"{PARTY}.crt")))
    return licence.build_request(SimpleNamespace(signer=signer), case)


SAMPLES = {"LicenceAuthenticationRequest": _licence_request}
