"""Valid signed canonical messages for integrators (`hub sample TYPE`), signed with the dev keys.

One for every message type a party may send (the routes' types): the registry's requests and the
partners' answers in the canonical form (what a partner posts to POST /api/v1/messages). Each is signed
by its sender's development key, with the header bound into the signed document (env:Binding).

LicenceAuthenticationRequest is built by the licence service itself, for a case reference of its own
each time. The others are the canonical envelopes of the mapping cases (mappings/<partner>/cases/: the
inputs of the mappings to a partner, the expected outputs of the mappings from one), which
tests/test_mappings.py keeps true, given a MessageId of their own and signed.

The registry contributes them to the hub as its app's `samples` (registry/app.py): message type ->
fn(settings) -> bytes, called without a running hub."""
from __future__ import annotations

import datetime as dt
import uuid
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from lxml import etree

from hub.settings import Settings
from hub.trust import pki
from hub.trust.signing import Signer
from hub.xml.envelope import bind, business_document, read_header
from hub.xml.safe import parse_trusted, to_bytes
from hub.xml.schemas import ENVELOPE_NS
from registry.canonical import PARTY
from registry.models import Case, Citizen
from registry.services import licence

_E = f"{{{ENVELOPE_NS}}}"

REGISTRY_TYPES = ("CivilStatusExtractRequest", "ConsularRegistrationRequest", "JudicialDeliveryCertificate",
                  "LifeCertificateBatch", "PassportApplication", "PassportHandover", "RepatriationRequest",
                  "TranscriptionRequest")
PARTNER_TYPES = ("CivilStatusExtract", "IdentityCheckResult", "JudicialServiceRequest", "LicenceAuthenticationResult",
                 "LifeCertificateBatchAcknowledgement", "PassportApplicationAcknowledged", "PassportStatusUpdate",
                 "RepatriationClearance", "TranscriptionAcknowledged", "TranscriptionResult")


def _signer(settings: Settings, party: str) -> Signer:
    """`party`'s key and certificate (development keys: `hub dev init`); a missing one is named."""
    key, certificate = settings.pki_dir / f"{party}.key", settings.pki_dir / f"{party}.crt"
    pki.require_files(key, certificate, whose=f"the {party}'s signing")
    return Signer(pki.load_key(str(key)), pki.load_certificate(str(certificate)))


def _licence_request(settings: Settings) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    citizen = Citizen(registration_id="MRE-0000042", given_name_latin="Youssef", family_name_latin="El Amrani",
                      given_name_arabic="يوسف", family_name_arabic="العمراني", birth_date=dt.date(1988, 4, 12),
                      cnie="BK123456", country="FR", post_code="FR-PARIS")
    # a reference of its own each time, so every sample is a new message to the hub
    case = Case(reference=f"LIC-{now:%Y%m%d}-S{uuid.uuid4().hex[:8].upper()}", post_code="FR-PARIS", created_at=now,
                details={"number": "12/345673", "categories": ["B"], "issue_date": "2010-05-03"}, citizen=citizen)
    return licence.build_request(SimpleNamespace(signer=_signer(settings, PARTY)), case)


def mapping_case(mappings_dir: Path, message_type: str) -> Path:
    """The first mapping case (by path) that is a canonical envelope of `message_type`."""
    for path in sorted(Path(mappings_dir).glob("*/cases/*/*.xml")):
        root = parse_trusted(path.read_bytes())
        if root.tag == f"{_E}Message" and root.findtext(f"{_E}Header/{_E}Type") == message_type:
            return path
    raise LookupError(f"no mapping case under {mappings_dir} is a canonical {message_type}")


def _from_mapping_case(message_type: str, settings: Settings) -> bytes:
    envelope = parse_trusted(mapping_case(settings.mappings_dir, message_type).read_bytes())
    header = envelope.find(f"{_E}Header")
    sender = header.findtext(f"{_E}Sender")
    header.find(f"{_E}MessageId").text = f"{sender}-SAMPLE-{uuid.uuid4().hex[:12].upper()}"
    header.find(f"{_E}Created").text = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    document = business_document(envelope)
    signed = _signer(settings, sender).sign(bind(document, read_header(envelope)))
    document.getparent().replace(document, signed)
    return to_bytes(etree.ElementTree(envelope).getroot())


SAMPLES = {"LicenceAuthenticationRequest": _licence_request,
           **{message_type: partial(_from_mapping_case, message_type) for message_type in REGISTRY_TYPES + PARTNER_TYPES}}
SAMPLES = dict(sorted(SAMPLES.items()))
