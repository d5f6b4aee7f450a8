"""The parties' certificates, and verification of a party's signature against them.

`TrustStore.verify(document, party)` is the one way the hub checks a party's signature: it returns
the element the signature covers (use only that), or raises SignatureInvalid naming what is wrong.

A party is trusted through its pinned certificates (`certificates:` in config/partners/<CODE>.yaml;
during a key rotation the old and the new one are listed, and each is accepted while it is valid),
or through a CA (`ca:`): a certificate carried in the signature's KeyInfo, issued directly by that
CA, valid now, whose subject CN is the party's code. The certificate whose key made the signature
must be valid now (not before / not after) and allowed to sign (key usage).

When the signature is not the party's but another known party's, the refusal says so ("signed by
NARSA, not by DGSN"): the sender named in the message must be the signer.

`inventory(hub)` lists every certificate the hub relies on (its own, the pinned ones, the CAs) with
its status, for /readyz, /metrics and `hub certificates`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from hub.trust import pki
from hub.config import HubConfig
from hub.errors import ConfigError, Problem, SignatureInvalid
from hub.trust.signing import (SignatureParts, certificate_problem, check_structure, describe, made_with,
                         signed_content, signed_info_c14n, validity_problem)

VALID, EXPIRING, EXPIRED, NOT_YET_VALID = "VALID", "EXPIRING", "EXPIRED", "NOT_YET_VALID"


def common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


@dataclass(frozen=True)
class Trusted:
    """One certificate the hub relies on for a party."""

    party: str
    role: str                 # "signing" (the hub's own), "pinned", "ca"
    path: Path | None
    certificate: x509.Certificate


class TrustStore:
    def __init__(self, config: HubConfig, *, config_dir: Path | None = None):
        self.pinned: dict[str, list[Trusted]] = {}
        self.cas: dict[str, Trusted] = {}
        for code, party in config.parties.items():
            file = (config_dir / "partners" / f"{code}.yaml") if config_dir else Path(f"partners/{code}.yaml")
            self.pinned[code] = [Trusted(code, "pinned", path, _load(path, file, f"certificates[{i}]"))
                                 for i, path in enumerate(party.certificates)]
            if party.ca is not None:
                self.cas[code] = Trusted(code, "ca", party.ca, _load(party.ca, file, "ca"))
            if not self.pinned[code] and code not in self.cas:
                raise ConfigError(file, "certificates", f"{code} has neither pinned `certificates` nor a `ca`: "
                                                        "nothing could verify its signatures")

    @property
    def certificates(self) -> dict[str, list[x509.Certificate]]:
        return {code: [t.certificate for t in trusted] for code, trusted in self.pinned.items()}

    def knows(self, party: str) -> bool:
        return party in self.pinned

    def all(self) -> list[Trusted]:
        return [t for trusted in self.pinned.values() for t in trusted] + list(self.cas.values())

    def verify(self, document: etree._Element, party: str) -> etree._Element:
        """The element `party`'s signature covers; SignatureInvalid when it does not verify as theirs."""
        if party not in self.pinned:
            raise SignatureInvalid(f"verifying a signature: {party!r} is not a known party")
        parts = check_structure(document, party)
        certificate = self.signing_certificate(parts, party)  # made the SignatureValue; the party may sign with it
        return signed_content(document, parts, certificate, signer_name=party)

    def signing_certificate(self, parts: SignatureParts, party: str) -> x509.Certificate:
        """The certificate that made this signature's SignatureValue (over its SignedInfo), by the same rules
        as `verify`: one of `party`'s pinned certificates, or one its CA issued, valid now and allowed to
        sign; SignatureInvalid otherwise. The reference digest is the caller's to check (`verify` does it
        with the tree, hub.trust.streaming with a digest computed while reading)."""
        if party not in self.pinned:
            raise SignatureInvalid(f"verifying a signature: {party!r} is not a known party")
        signed_info = signed_info_c14n(parts)
        now = dt.datetime.now(dt.timezone.utc)
        for trusted in self.pinned[party]:
            if made_with(parts, trusted.certificate, signed_info):
                problem = certificate_problem(trusted.certificate, now)
                if problem:
                    raise SignatureInvalid(
                        f"{party}'s signature was made with its pinned {describe(trusted.certificate)}, which {problem}",
                        [Problem(f"pinned certificate {trusted.path} {problem}")])
                return trusted.certificate
        if party in self.cas:
            for certificate in parts.certificates:
                if made_with(parts, certificate, signed_info):
                    problem = self._ca_problem(certificate, party, now)
                    if problem:
                        self._refuse_if_another(parts, signed_info, party, now)
                        raise SignatureInvalid(f"{party}'s signature was made with the {describe(certificate)}, "
                                               f"which {problem}", [Problem(problem)])
                    return certificate
        self._refuse_if_another(parts, signed_info, party, now)
        known = ", ".join(f"{describe(t.certificate)}" for t in self.pinned[party])
        raise SignatureInvalid(f"signature does not verify as {party}'s: it was made with none of {party}'s "
                               + ("certificates" if not self.cas.get(party) else "certificates nor one its CA issued"),
                               [Problem(f"tried {known or 'no pinned certificate'}"
                                        + (f" and the CA {self.cas[party].path}" if party in self.cas else ""))])

    def _ca_problem(self, certificate: x509.Certificate, party: str, now: dt.datetime) -> str | None:
        ca = self.cas[party]
        try:
            certificate.verify_directly_issued_by(ca.certificate)
        except Exception:  # ValueError, TypeError, InvalidSignature: all mean "not issued by this CA"
            return f"was not issued by {party}'s CA {describe(ca.certificate)}"
        ca_problem = validity_problem(ca.certificate, now)
        if ca_problem:
            return f"was issued by {party}'s CA, whose certificate {ca_problem}"
        if common_name(certificate) != party:
            return f"names {common_name(certificate)!r} as its subject CN, not {party!r}"
        try:
            if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                return "is a CA certificate, not a signing certificate"
        except x509.ExtensionNotFound:
            pass
        return certificate_problem(certificate, now)

    def _refuse_if_another(self, parts: SignatureParts, signed_info: bytes, party: str, now) -> None:
        """SignatureInvalid naming the signer when another known party made the signature.

        400 rather than 403: the message does not prove it comes from the sender it names, so nobody is
        authenticated yet; 403 is for a sender proven by its signature asking for what it may not do."""
        other = self._signed_by_another(parts, signed_info, party, now)
        if other:
            raise SignatureInvalid(f"signature does not verify as {party}'s: signed by {other}, not by the "
                                   f"message's sender {party}",
                                   [Problem(f"the signature verifies with {other}'s certificate; the sender must be "
                                            "the signer")])

    def _signed_by_another(self, parts: SignatureParts, signed_info: bytes, party: str, now) -> str | None:
        for code, trusted in self.pinned.items():
            if code != party and any(made_with(parts, t.certificate, signed_info) for t in trusted):
                return code
        for certificate in parts.certificates:
            code = common_name(certificate)
            if code != party and code in self.cas and made_with(parts, certificate, signed_info) \
                    and self._ca_problem(certificate, code, now) is None:
                return code
        return None


def _load(path: Path, file: Path, key: str) -> x509.Certificate:
    try:
        return pki.load_certificate(str(path))
    except FileNotFoundError:
        raise ConfigError(file, key, f"certificate file {path} not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(file, key, f"cannot read the certificate {path}: {exc}") from None


# -- what the hub relies on, for /readyz, /metrics and `hub certificates` ----------------------------

@dataclass(frozen=True)
class CertificateStatus:
    party: str
    role: str
    path: str
    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: int
    status: str
    common_name: str | None = None

    def as_dict(self) -> dict:
        return {"party": self.party, "role": self.role, "path": self.path, "subject": self.subject,
                "serial": self.serial, "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "days_left": self.days_left, "status": self.status,
                "common_name": self.common_name}


def status_of(trusted: Trusted, warning_days: int, now: dt.datetime | None = None) -> CertificateStatus:
    now = now or dt.datetime.now(dt.timezone.utc)
    certificate = trusted.certificate
    left = certificate.not_valid_after_utc - now
    if now < certificate.not_valid_before_utc:
        status = NOT_YET_VALID
    elif left.total_seconds() < 0:
        status = EXPIRED
    elif left <= dt.timedelta(days=warning_days):
        status = EXPIRING
    else:
        status = VALID
    return CertificateStatus(trusted.party, trusted.role, str(trusted.path or ""), certificate.subject.rfc4514_string(),
                             f"{certificate.serial_number:x}", certificate.not_valid_before_utc,
                             certificate.not_valid_after_utc, int(left.total_seconds() // 86400), status,
                             common_name(certificate))


def inventory(hub, now: dt.datetime | None = None) -> list[CertificateStatus]:
    """The hub's own signing certificate, then every party's pinned certificates and CA."""
    own = Trusted("hub", "signing", hub.signer_certificate_path, hub.signer.certificate)
    warning = hub.settings.certificate_warning_days
    return [status_of(t, warning, now) for t in [own, *hub.trust.all()]]


def parties_without_valid_certificate(statuses: list[CertificateStatus]) -> list[str]:
    """Parties (and the hub) none of whose certificates is valid now: they cannot sign or be verified."""
    usable: dict[str, bool] = {}
    for s in statuses:
        usable[s.party] = usable.get(s.party, False) or s.status in (VALID, EXPIRING)
    return sorted(party for party, ok in usable.items() if not ok)
