"""SANTE sandbox: a simulator of the Ministry of Health's clearance of remains for repatriation.

It speaks SANTE's own REST/XML format (schemas/partners/sante/autorisation-sanitaire.xsd), verifies
the hub's signature and signs its answers with SANTE's key:

    POST /sante/v1/autorisations-sanitaires   DemandeAutorisationSanitaire -> 200 AvisSanitaire
         -> 400 (malformed, wrong document, invalid, badly signed), 413 (over 1 MiB),
            415 (not application/xml), with a small <Erreur> document; nothing is stored
    GET  /healthz, GET /_sandbox/stats, POST /_sandbox/behaviour   (sandbox/common.py)

Decision (deterministic, from the data, see `health_decision`): DEFAVORABLE, Motif
RISQUE_CONTAGION, when the cause of death's ICD-10 code (Deces/Cause/CodeCIM10) starts with A or B
(chapter I, certain infectious and parasitic diseases); otherwise FAVORABLE. The AvisSanitaire
names the hub's request (ReferenceDemande) and the case (ReferenceDossier); its IdentifiantMessage
is SANTE-R-<n> and its NumeroAvis AS-<year>-<n>.

Exactly-once effect: requests are deduplicated by IdentifiantMessage; a repeat gets the first
answer's bytes. Requests and answers are kept as `<data>/SANTE/received/<id>.xml` and
`acknowledged/<id>.xml`, so this survives a restart.

Behaviour: `fail` answers HTTP `status` (with Retry-After when `retry_after` is set); `slow` waits
`delay_seconds` before answering; `refuse` closes the port for `refuse_seconds`.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from lxml.builder import ElementMaker

from sandbox.common import (PartnerSandbox, add_common_arguments, add_document_route, add_journal_only_argument,
                            answer_xml_post, partner_app, run_app, tag, text, utc_now)

PARTNER = "SANTE"
NS = "urn:ma:sante:autorisation-sanitaire:1"
XSD = "partners/sante/autorisation-sanitaire.xsd"
PATH = "/sante/v1/autorisations-sanitaires"
CONTAGIOUS_CHAPTERS = ("A", "B")

S = ElementMaker(namespace=NS, nsmap={None: NS})


def health_decision(icd10_code: str) -> str:
    """DEFAVORABLE when the ICD-10 code starts with A or B (infectious diseases), else FAVORABLE."""
    return "DEFAVORABLE" if icd10_code.strip().upper().startswith(CONTAGIOUS_CHAPTERS) else "FAVORABLE"


class SanteSandbox(PartnerSandbox):
    def __init__(self, *, pki_dir: Path, data_dir: Path, mode: str = "normal", journal_only: bool = False):
        super().__init__(PARTNER, pki_dir=pki_dir, data_dir=data_dir, mode=mode, journal_only=journal_only)

    def handle(self, body: bytes) -> bytes:
        """One request -> the signed AvisSanitaire. Raises InputError (nothing stored) when refused."""
        request = self.check_document(body, xsd=XSD, roots={tag("DemandeAutorisationSanitaire", NS)},
                                      what="DemandeAutorisationSanitaire")
        return self.answer_once(text(request, "IdentifiantMessage", NS), body, lambda: self._opinion(request))[0]

    def _opinion(self, request: etree._Element) -> bytes:
        # runs under the store's lock (answer_once): the count of stored answers is stable, and the
        # counters are updated directly (self.count() takes that lock)
        n = len(self._answers) + 1
        now = utc_now()
        code = text(request, "Deces/Cause/CodeCIM10", NS)
        decision = health_decision(code)
        answer = S.AvisSanitaire(
            S.IdentifiantMessage(f"SANTE-R-{n:06d}"),
            S.ReferenceDemande(text(request, "IdentifiantMessage", NS)),
            S.ReferenceDossier(text(request, "ReferenceDossier", NS)),
            S.NumeroAvis(f"AS-{now.year}-{n:06d}"),
            S.DateAvis(now.isoformat()),
            S.Avis(decision),
        )
        if decision == "DEFAVORABLE":
            answer.append(S.Motif(S.Code("RISQUE_CONTAGION"),
                                  S.Libelle(f"Maladie infectieuse (CIM-10 {code}) : transfert du corps soumis "
                                            "à dérogation et mise en bière hermétique")))
        self.counters[f"opinion_{decision}"] += 1
        return self.sign(answer, xsd=XSD, what="AvisSanitaire")


# -- HTTP ----------------------------------------------------------------------------------------

def create_app(sandbox: SanteSandbox) -> FastAPI:
    app = partner_app(sandbox)

    async def autorisation_sanitaire(request: Request) -> Response:
        return await answer_xml_post(request, sandbox, sandbox.handle, maker=S, what="DemandeAutorisationSanitaire")
    add_document_route(app, PATH, autorisation_sanitaire)

    return app


def add_arguments(parser) -> None:
    # --answer-delay is accepted for a uniform command line; SANTE answers synchronously, never later
    add_common_arguments(parser, port=8715, answer_delay=0.0)
    add_journal_only_argument(parser)


def run(args) -> int:
    sandbox = SanteSandbox(pki_dir=args.pki_dir, data_dir=args.data_dir, mode=args.mode, journal_only=args.journal_only)
    return run_app(create_app(sandbox), sandbox=sandbox, host=args.host, port=args.port)
