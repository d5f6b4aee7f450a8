"""ETAT_CIVIL sandbox: a simulator of the Interior ministry's civil-status service (national register).

It speaks ETAT_CIVIL's own REST/XML format (schemas/partners/etat-civil/*.xsd), verifies the hub's
signature and signs what it answers with ETAT_CIVIL's key:

    POST /etat-civil/v1/extraits           DemandeExtrait -> 200 Extrait (the extract, signed on its
                                           own so it can be kept as evidence) or 200 ActeIntrouvable
    POST /etat-civil/v1/transcriptions     DemandeTranscription -> 202 AccuseReceptionTranscription;
                                           `--answer-delay` seconds later a ResultatTranscription is
                                           POSTed to {hub_url}/api/v1/partners/ETAT_CIVIL/messages
    POST /etat-civil/v1/avis-inhumation    AvisInhumation -> 200 DecisionInhumation
         any of them -> 400 (malformed, wrong document, invalid, badly signed), 413 (over 1 MiB),
                        415 (not application/xml), with a small <Erreur> document; nothing is stored
    GET  /healthz, GET /_sandbox/stats, POST /_sandbox/behaviour   (sandbox/common.py)

Decisions (deterministic, from the data, so tests and the demo can predict them):

    extract         ActeIntrouvable (Motif ACTE_INTROUVABLE) when Acte/NumeroActe ends in 9;
                    otherwise an Extrait of that act naming the person asked about
    transcription   REJETE (Motif PIECES_MANQUANTES) when ActeEtranger/NumeroActe ends in 9;
                    otherwise TRANSCRIT, the new act registered at office CONS-<post>, in the
                    event's year, numbered by the register's reference
    burial notice   REFUSEE (Motif COMMUNE_INCONNUE) when CommuneInhumation/Code ends in 9;
                    otherwise ACCORDEE

Every answer names the hub's request (ReferenceDemande = its IdentifiantMessage) and the case
(ReferenceDossier), and carries an IdentifiantMessage of its own: EC-R-<n> for synchronous answers,
EC-T-<n> for transcription results, n being the register's reference ETAT_CIVIL-<year>-<n>.

Exactly-once effect: requests are deduplicated by (document, IdentifiantMessage); a repeat gets the
first answer's bytes and schedules nothing. Requests and answers are kept as
`<data>/ETAT_CIVIL/received/<Document>-<id>.xml` and `acknowledged/<Document>-<id>.xml`; pending
callbacks survive a restart (sandbox/outbox.py), and a transcription acknowledged but not yet
decided is decided after a restart.

Behaviour: `fail` answers HTTP `status` (with Retry-After when `retry_after` is set); `slow` waits
`delay_seconds` before answering; `refuse` closes the port for `refuse_seconds`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from lxml.builder import ElementMaker

from hub.xml.safe import parse_trusted
from sandbox.common import (PartnerSandbox, add_common_arguments, add_document_route, add_journal_only_argument,
                            answer_xml_post, digits, hub_token, partner_app, run_app, tag, text, utc_now)
from sandbox.outbox import CallbackOutbox

log = logging.getLogger(__name__)

PARTNER = "ETAT_CIVIL"
NS = "urn:ma:interieur:etat-civil:1"
BASE_PATH = "/etat-civil/v1"
EXTRACTS_XSD = "partners/etat-civil/extraits.xsd"
TRANSCRIPTIONS_XSD = "partners/etat-civil/transcriptions.xsd"
BURIAL_XSD = "partners/etat-civil/avis-inhumation.xsd"

E = ElementMaker(namespace=NS, nsmap={None: NS})


# -- the rules -------------------------------------------------------------------------------------


def extract_found(act_number: str) -> bool:
    """The register holds every act except those whose number ends in 9."""
    return not act_number.strip().endswith("9")


def transcription_decision(foreign_act_number: str) -> str:
    """REJETE (PIECES_MANQUANTES) when the foreign act's number ends in 9, else TRANSCRIT."""
    return "REJETE" if foreign_act_number.strip().endswith("9") else "TRANSCRIT"


def burial_decision(commune_code: str) -> str:
    """REFUSEE (COMMUNE_INCONNUE) when the commune code ends in 9, else ACCORDEE."""
    return "REFUSEE" if commune_code.strip().endswith("9") else "ACCORDEE"


@dataclass(frozen=True)
class Operation:
    """One REST operation: the path under BASE_PATH, the document it takes, its XSD, the HTTP status of
    its answer, and the method building that answer."""

    path: str
    document: str
    xsd: str
    status: int
    answer: Callable[[etree._Element, str], bytes]


class EtatCivilSandbox(PartnerSandbox):
    """ETAT_CIVIL's decisions and transcription callbacks on top of the shared sandbox state."""

    def __init__(self, *, pki_dir: Path, data_dir: Path, hub_url: str, answer_delay: float, mode: str = "normal",
                 journal_only: bool = False):
        super().__init__(PARTNER, pki_dir=pki_dir, data_dir=data_dir, mode=mode, journal_only=journal_only)
        self.answer_delay = answer_delay
        self.outbox = CallbackOutbox(self.home, hub_url.rstrip("/") + f"/api/v1/partners/{PARTNER}/messages",
                                     on_delivered=lambda _id: self.count("callbacks_sent"), token=hub_token())
        self.operations = {op.path: op for op in (
            Operation("extraits", "DemandeExtrait", EXTRACTS_XSD, 200, self._extract),
            Operation("transcriptions", "DemandeTranscription", TRANSCRIPTIONS_XSD, 202,
                      self._acknowledge_transcription),
            Operation("avis-inhumation", "AvisInhumation", BURIAL_XSD, 200, self._burial_decision),
        )}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Deliver callbacks; decide transcriptions a restart left undecided."""
        super().start()
        for path in sorted(self.acknowledged_dir.glob("DemandeTranscription-*.xml")):
            if not self.outbox.knows(self._result_id(path.stem)):
                log.info("deciding %s, acknowledged before the restart", path.stem)
                self._schedule_result(path.stem)

    # -- requests ----------------------------------------------------------------------------------

    def handle(self, operation: Operation, body: bytes) -> bytes:
        """One request -> the signed answer. Raises InputError (nothing stored) when refused."""
        request = self.check_document(body, xsd=operation.xsd, roots={tag(operation.document, NS)},
                                      what=operation.document)
        key = f"{operation.document}-{text(request, 'IdentifiantMessage', NS)}"
        answer, new = self.answer_once(key, body, lambda: operation.answer(request, self._next_reference()))
        if new and operation.document == "DemandeTranscription":
            self._schedule_result(key)
        return answer

    def _next_reference(self) -> str:
        # runs under the store's lock (answer_once): the count of stored answers is stable
        return f"{PARTNER}-{utc_now().year}-{len(self._answers) + 1:06d}"

    # The answer builders below run under the store's lock (answer_once): they update self.counters
    # directly, never through self.count(), which takes that lock.

    def _head(self, request: etree._Element, reference: str) -> list[etree._Element]:
        return [E.IdentifiantMessage(f"EC-R-{digits(reference)}"),
                E.ReferenceDemande(text(request, "IdentifiantMessage", NS)),
                E.ReferenceDossier(text(request, "ReferenceDossier", NS))]

    def _extract(self, request: etree._Element, reference: str) -> bytes:
        act = request.find(tag("Acte", NS))
        number = text(act, "NumeroActe", NS)
        if not extract_found(number):
            self.counters["extracts_not_found"] += 1
            answer = E.ActeIntrouvable(
                *self._head(request, reference), E.DateReponse(utc_now().isoformat()), _copy(act),
                E.Motif(E.Code("ACTE_INTROUVABLE"), E.Libelle(f"Aucun acte {number}/{text(act, 'Annee', NS)} "
                                                              f"au bureau {text(act, 'Bureau', NS)}")))
            return self.sign(answer, xsd=EXTRACTS_XSD, what="ActeIntrouvable")
        person = request.find(tag("Personne", NS))
        mention = ("Mariage inscrit en marge" if text(act, "Nature", NS) == "MARIAGE" else "Néant")
        answer = E.Extrait(
            *self._head(request, reference),
            E.NumeroExtrait(f"EXT-{digits(reference)}"),
            E.DateDelivrance(utc_now().isoformat()),
            _copy(act),
            E.Titulaire(*[E(name, text(person, name, NS)) for name in
                          ("NomLatin", "PrenomLatin", "NomArabe", "PrenomArabe", "DateNaissance")]),
            E.Mentions(E.Mention(mention)),
            E.OfficierEtatCivil(f"Officier de l'état civil du bureau {text(act, 'Bureau', NS)}"),
        )
        self.counters["extracts_issued"] += 1
        return self.sign(answer, xsd=EXTRACTS_XSD, what="Extrait")

    def _acknowledge_transcription(self, request: etree._Element, reference: str) -> bytes:
        answer = E.AccuseReceptionTranscription(*self._head(request, reference), E.ReferenceEtatCivil(reference),
                                                E.DateReception(utc_now().isoformat()))
        return self.sign(answer, xsd=TRANSCRIPTIONS_XSD, what="AccuseReceptionTranscription")

    def _burial_decision(self, request: etree._Element, reference: str) -> bytes:
        commune = text(request, "CommuneInhumation/Code", NS)
        decision = burial_decision(commune)
        answer = E.DecisionInhumation(*self._head(request, reference), E.ReferenceEtatCivil(reference),
                                      E.DateDecision(utc_now().isoformat()), E.Decision(decision))
        if decision == "REFUSEE":
            answer.append(E.Motif(E.Code("COMMUNE_INCONNUE"),
                                  E.Libelle(f"Commune {commune} inconnue du référentiel des communes")))
        self.counters[f"burial_{decision}"] += 1
        return self.sign(answer, xsd=BURIAL_XSD, what="DecisionInhumation")

    # -- transcription results (callbacks) ---------------------------------------------------------

    def _reference_of(self, key: str) -> str:
        return text(parse_trusted((self.acknowledged_dir / f"{key}.xml").read_bytes()), "ReferenceEtatCivil", NS)

    def _result_id(self, key: str) -> str:
        return f"EC-T-{digits(self._reference_of(key))}"

    def _schedule_result(self, key: str) -> None:
        self.outbox.produce_later(lambda: self.transcription_result(key), self.answer_delay)

    def transcription_result(self, key: str) -> tuple[str, bytes]:
        """Decide a stored DemandeTranscription: (result IdentifiantMessage, signed ResultatTranscription)."""
        request = parse_trusted((self.received_dir / f"{key}.xml").read_bytes())
        reference = self._reference_of(key)
        decision = transcription_decision(text(request, "ActeEtranger/NumeroActe", NS))
        result = E.ResultatTranscription(
            E.IdentifiantMessage(self._result_id(key)),
            E.ReferenceDemande(text(request, "IdentifiantMessage", NS)),
            E.ReferenceDossier(text(request, "ReferenceDossier", NS)),
            E.ReferenceEtatCivil(reference),
            E.DateDecision(utc_now().isoformat()),
            E.Decision(decision),
        )
        if decision == "TRANSCRIT":
            event = text(request, "Evenement", NS)
            result.append(E.ActeMarocain(E.Bureau(f"CONS-{text(request, 'PosteConsulaire', NS)}"[:20]),
                                         E.Annee(text(request, "DateEvenement", NS)[:4]),
                                         E.NumeroActe(str(int(digits(reference)[-6:]))),
                                         E.Nature(event)))
        else:
            result.append(E.Motif(E.Code("PIECES_MANQUANTES"),
                                  E.Libelle("Copie intégrale de l'acte étranger, légalisée, manquante au dossier")))
        self.count(f"transcription_{decision}")
        return self._result_id(key), self.sign(result, xsd=TRANSCRIPTIONS_XSD, what="ResultatTranscription")


def _copy(element: etree._Element) -> etree._Element:
    """A request's element, re-created in the answer (same names, same namespace)."""
    return etree.fromstring(etree.tostring(element))


# -- HTTP ----------------------------------------------------------------------------------------

def create_app(sandbox: EtatCivilSandbox) -> FastAPI:
    app = partner_app(sandbox)

    async def operation(request: Request) -> Response:
        operation = request.path_params["operation"]
        op = sandbox.operations.get(operation)
        if op is None:
            return Response(f"no operation {operation!r}; known: {', '.join(sandbox.operations)}\n",
                            status_code=404, media_type="text/plain")
        return await answer_xml_post(request, sandbox, lambda body: sandbox.handle(op, body), maker=E,
                                     status=op.status, what=op.document)
    add_document_route(app, BASE_PATH + "/{operation}", operation)

    return app


def add_arguments(parser) -> None:
    add_common_arguments(parser, port=8716, answer_delay=0.2)
    add_journal_only_argument(parser)


def run(args) -> int:
    sandbox = EtatCivilSandbox(pki_dir=args.pki_dir, data_dir=args.data_dir, hub_url=args.hub_url,
                               answer_delay=args.answer_delay, mode=args.mode, journal_only=args.journal_only)
    return run_app(create_app(sandbox), sandbox=sandbox, host=args.host, port=args.port)
