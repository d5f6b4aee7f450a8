"""NARSA sandbox: a simulator of the national road-safety agency's licence-authentication service.

It speaks NARSA's own REST/XML format (schemas/partners/narsa/authentification-permis.xsd) and
signs and verifies like the real partner:

    POST /narsa/v1/demandes-authentification   a DemandeAuthentification signed by the hub
         -> 202 AccuseReception signed by NARSA; later, a ResultatAuthentification is POSTed to
            {hub_url}/api/v1/partners/NARSA/messages
         -> 400 (malformed, invalid, badly signed), 413 (over 1 MiB), 415 (not application/xml),
            with a small <Erreur> document saying what is wrong; nothing is stored
    GET  /healthz                              {"status": "ok", "partner": "NARSA"}
    GET  /_sandbox/stats                       counters (see `NarsaSandbox.stats`)
    POST /_sandbox/behaviour                   {"mode": "normal" | "fail" | "slow" | "refuse", "status": 503,
                                                "retry_after": null, "delay_seconds": 5, "fail_every": null,
                                                "refuse_seconds": 10}   (sandbox/common.py)

Verdict rule (deterministic, so tests can predict it), by the LAST DIGIT of Permis/NumeroPermis
("12/345678" -> 8), see `verdict_for`:

    0-6   AUTHENTIQUE       with an Attestation valid 90 days, signed by NARSA on its own
    7, 8  DIVERGENCE        with one Divergence on DateNaissance
    9     NON_AUTHENTIQUE

The result as a whole is signed by NARSA too (its signature the last child of the root).

Exactly-once effect over the hub's at-least-once delivery: requests are deduplicated by
IdentifiantMessage. The first one is stored exactly as received (`<data>/NARSA/received/<id>.xml`),
then its acknowledgement (`<data>/NARSA/acknowledged/<id>.xml`: a folder of its own, since an id
may itself end in ".ack"); a repeat gets the same acknowledgement bytes and schedules nothing.
That state is on disk, so it survives a restart; so do pending callbacks (sandbox/outbox.py), and
a request acknowledged but not yet answered is answered after a restart.

The 400 on a malformed request is not schema-bound: <Erreur> holds a Code (XML_MALFORME,
SCHEMA_INVALIDE, SIGNATURE_INVALIDE, MESSAGE_TROP_VOLUMINEUX, TYPE_MEDIA_NON_SUPPORTE), a Message
and up to 20 Probleme elements (attributes ligne and chemin when known).

Behaviour: `fail` answers HTTP `status` (with Retry-After when `retry_after` is set, every
`fail_every`-th request when set); `slow` waits `delay_seconds` before answering; `refuse` closes the
port for `refuse_seconds`, then listens again in `normal` mode.

Counters in /_sandbox/stats (`received`, `duplicates`, `refused`, `results_sent`,
`pending_callbacks`, `verdicts`, plus the common ones of sandbox/common.py) are since the process
started, except `received`, `stored` and `pending_callbacks`, which are read from disk.
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from lxml.builder import ElementMaker

from hub.xml.safe import parse_trusted
from sandbox.common import (PROJECT_ROOT, PartnerSandbox, add_common_arguments, add_document_route,
                            add_journal_only_argument, answer_xml_post, digits, hub_token, partner_app, run_app, tag,
                            text, utc_now)
from sandbox.outbox import CallbackOutbox

log = logging.getLogger(__name__)

PARTNER = "NARSA"
NS = "urn:ma:narsa:authentification-permis:1"
XSD = "partners/narsa/authentification-permis.xsd"
PATH = "/narsa/v1/demandes-authentification"
PARTIES = ["hub", "REGISTRY", PARTNER]
ATTESTATION_VALIDITY = dt.timedelta(days=90)
DIVERGENCE_FIELD = "DateNaissance"
DIVERGENCE_TEXT = "La date de naissance ne correspond pas au fichier national des permis"
VERDICTS = ("AUTHENTIQUE", "DIVERGENCE", "NON_AUTHENTIQUE")

N = ElementMaker(namespace=NS, nsmap={None: NS})


def verdict_for(numero_permis: str) -> str:
    """The sandbox's decision for a licence number, by its last digit: 0-6 AUTHENTIQUE,
    7-8 DIVERGENCE, 9 NON_AUTHENTIQUE."""
    last = numero_permis.strip()[-1:]
    if not last.isdigit():
        raise ValueError(f"licence number {numero_permis!r} does not end with a digit")
    digit = int(last)
    if digit <= 6:
        return "AUTHENTIQUE"
    if digit <= 8:
        return "DIVERGENCE"
    return "NON_AUTHENTIQUE"


def _date_jma(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")


# -- the partner ---------------------------------------------------------------------------------


class NarsaSandbox(PartnerSandbox):
    """NARSA's decisions and result callbacks on top of the shared sandbox state (sandbox/common.py)."""

    def __init__(self, *, pki_dir: Path, data_dir: Path, hub_url: str, answer_delay: float,
                 mode: str = "normal", schemas_dir: Path = PROJECT_ROOT / "schemas", journal_only: bool = False):
        super().__init__(PARTNER, pki_dir=pki_dir, data_dir=data_dir, schemas_dir=schemas_dir, mode=mode,
                         parties=PARTIES, journal_only=journal_only)
        self.answer_delay = answer_delay
        self.callback_url = hub_url.rstrip("/") + f"/api/v1/partners/{PARTNER}/messages"
        self.outbox = CallbackOutbox(self.home, self.callback_url, on_delivered=self._count_sent, token=hub_token())
        self._verdicts = dict.fromkeys(VERDICTS, 0)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start delivering callbacks: re-send the outbox, answer requests a restart left unanswered."""
        super().start()
        for request_id in sorted(self._answers):
            if not self.outbox.knows(self._result_id(request_id)):
                log.info("answering %s, acknowledged before the restart", request_id)
                self._schedule_result(request_id)

    # -- requests ----------------------------------------------------------------------------------

    def receive(self, body: bytes) -> tuple[bytes, bool]:
        """Check and store one request; return (acknowledgement bytes, whether it is new).

        Raises an InputError subclass (nothing stored) when the request is refused."""
        request = self.check_document(body, xsd=XSD, roots={tag("DemandeAuthentification", NS)},
                                      what="DemandeAuthentification")
        request_id = text(request, "IdentifiantMessage", NS)
        # runs under the store's lock: the count of stored acknowledgements is stable
        acknowledgement, new = self.answer_once(
            request_id, body, lambda: self._acknowledgement(request_id, sequence=len(self._answers) + 1))
        if new:
            self._schedule_result(request_id)
        else:
            log.info("duplicate request %s: same acknowledgement, nothing scheduled", request_id)
        return acknowledgement, new

    def _acknowledgement(self, request_id: str, *, sequence: int) -> bytes:
        now = utc_now()
        document = N.AccuseReception(
            N.ReferenceDemande(request_id),
            N.ReferenceNarsa(f"NARSA-{now.year}-{sequence:06d}"),
            N.DateReception(now.isoformat()),
        )
        return self.sign(document, xsd=XSD, what="AccuseReception")

    # -- results -----------------------------------------------------------------------------------

    def _reference_narsa(self, request_id: str) -> str:
        return text(parse_trusted(self._answers[request_id]), "ReferenceNarsa", NS)

    def _result_id(self, request_id: str) -> str:
        return f"NARSA-R-{digits(self._reference_narsa(request_id))}"

    def _schedule_result(self, request_id: str) -> None:
        self.outbox.produce_later(lambda: self.result_for(request_id), self.answer_delay)

    def result_for(self, request_id: str) -> tuple[str, bytes]:
        """Decide on a stored request: (result IdentifiantMessage, signed ResultatAuthentification)."""
        request = parse_trusted((self.received_dir / f"{request_id}.xml").read_bytes())
        reference = self._reference_narsa(request_id)
        result_id = self._result_id(request_id)
        verdict = verdict_for(text(request, "Permis/NumeroPermis", NS))
        result = N.ResultatAuthentification(
            N.IdentifiantMessage(result_id),
            N.ReferenceDemande(request_id),
            N.ReferenceDossier(text(request, "ReferenceDossier", NS)),
            N.ReferenceNarsa(reference),
            N.DateDecision(utc_now().isoformat()),
            N.Verdict(verdict),
        )
        if verdict == "DIVERGENCE":
            result.append(N.Divergence(DIVERGENCE_TEXT, champ=DIVERGENCE_FIELD))
        if verdict == "AUTHENTIQUE":
            result.append(self._signed_attestation(request, reference))
        body = self.sign(result, xsd=XSD, what="ResultatAuthentification")
        with self._lock:
            self._verdicts[verdict] += 1
        log.info("result %s for %s: %s", result_id, request_id, verdict)
        return result_id, body

    def _signed_attestation(self, request: etree._Element, reference: str) -> etree._Element:
        """The Attestation, carrying NARSA's own enveloped signature so it can travel on its own."""
        holder = f"{text(request, 'Titulaire/Prenom', NS)} {text(request, 'Titulaire/Nom', NS)}"[:100]
        categories = request.findall(tag("Permis/Categories/Categorie", NS))
        attestation = N.Attestation(
            N.NumeroAttestation(f"ATT-{digits(reference)}"),
            N.NumeroPermis(text(request, "Permis/NumeroPermis", NS)),
            N.Titulaire(holder),
            N.Categories(*[N.Categorie((category.text or "").strip()) for category in categories]),
            N.DateDelivrance(text(request, "Permis/DateDelivrance", NS)),
            N.ValableJusquAu(_date_jma(utc_now().date() + ATTESTATION_VALIDITY)),
        )
        return self.signer.sign(attestation)

    def _count_sent(self, result_id: str) -> None:
        self.count("results_sent")

    # -- stats -------------------------------------------------------------------------------------

    def stats(self) -> dict:
        """The common counters, with `received` the number of distinct requests stored (read from disk),
        `duplicates`, `refused` and `results_sent` always present, and `verdicts` by verdict."""
        stats = super().stats()
        with self._lock:
            verdicts = dict(self._verdicts)
        return {**stats, "received": stats["stored"], "duplicates": stats.get("duplicates", 0),
                "refused": stats.get("refused", 0), "results_sent": stats.get("results_sent", 0),
                "verdicts": verdicts}


# -- HTTP ----------------------------------------------------------------------------------------


def create_app(sandbox: NarsaSandbox) -> FastAPI:
    """The sandbox's HTTP surface; starting the app starts the callback worker."""
    app = partner_app(sandbox)

    async def demande_authentification(request: Request) -> Response:
        return await answer_xml_post(request, sandbox, lambda body: sandbox.receive(body)[0], maker=N, status=202,
                                     what="DemandeAuthentification")
    add_document_route(app, PATH, demande_authentification)

    return app


def serve(*, host: str, port: int, hub_url: str, pki_dir: Path, data_dir: Path, answer_delay: float,
          mode: str = "normal", journal_only: bool = False) -> int:
    """Run the NARSA sandbox until SIGTERM or SIGINT; return the exit status."""
    sandbox = NarsaSandbox(pki_dir=pki_dir, data_dir=data_dir, hub_url=hub_url, answer_delay=answer_delay, mode=mode,
                           journal_only=journal_only)
    return run_app(create_app(sandbox), sandbox=sandbox, host=host, port=port)


def add_arguments(parser) -> None:
    add_common_arguments(parser, port=8711, answer_delay=0.2)
    add_journal_only_argument(parser)


def run(args) -> int:
    return serve(host=args.host, port=args.port, hub_url=args.hub_url, pki_dir=args.pki_dir, data_dir=args.data_dir,
                 answer_delay=args.answer_delay, mode=args.mode, journal_only=args.journal_only)
