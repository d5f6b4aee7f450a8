"""The parties' certificates, and verification of a party's signature against them.

`TrustStore.verify(document, party)` is the one way the hub checks a party's signature: it returns
the element the signature covers (use only that), or raises SignatureInvalid naming what is wrong.
"""
from __future__ import annotations

from cryptography import x509
from lxml import etree

from hub import pki
from hub.config import HubConfig
from hub.signing import verify


class TrustStore:
    def __init__(self, config: HubConfig):
        self.certificates: dict[str, list[x509.Certificate]] = {
            code: [pki.load_certificate(str(path)) for path in party.certificates]
            for code, party in config.parties.items()}

    def knows(self, party: str) -> bool:
        return party in self.certificates

    def verify(self, document: etree._Element, party: str) -> etree._Element:
        """The element `party`'s signature covers; SignatureInvalid when it does not verify as theirs."""
        return verify(document, self.certificates[party][0], signer_name=party)
