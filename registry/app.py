"""The registry as an app of the hub (the contract: hub/apps.py): it submits signed messages through
the hub's public interface and consumes the hub's deliveries to the REGISTRY party.

What it contributes to the running service: its API (registry/views.py and each service module's
router), its scheduled jobs (resubmitting stalled cases, and each service module's SCHEDULED), the
consumer of REGISTRY's deliveries (dispatched by message type to the service module that handles
them), a dead-letter hook (a dead-lettered message of the registry fails its case), a resend hook (the case
waits again when that message is resent), the consular posts
loaded at start-up, its tables (registry/models.py), its case history as a chain of the hub's evidence
(`chains`), the `hub sample` builders (registry/samples.py), every service's answer deadline
(config/services.yaml, registry/deadlines.py), its part of the console (registry/console.py) and the documents
printed for citizens with their public verification (registry/printing/).
"""
from __future__ import annotations

import datetime as dt
import logging

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from connectors.base import Outbound
from hub.apps import ChangingConsumer, Job
from hub.trust import pki
from hub.store.db import utcnow
from hub.access.tokens import Identity
from hub.errors import InputError, NotFound, PermanentDeliveryError, TryLater
from hub.intake.door import Arrival, Receipt
from hub.trust.signing import Signer
from hub.xml.safe import parse_trusted
from registry import (audit, canonical, catalogue, citizens, citizens_console, console, deadlines, posts, posts_console,
                      service)
from registry.canonical import PARTY
from registry.history import CASE_HISTORY
from registry.models import Base, Case, Post
from registry.outputs import case_out
from registry.reference import load_posts
from registry.statuses import FAILED, resume_status
from registry.samples import SAMPLES
from registry.printing import views as printing
from registry.views import router as api_router

log = logging.getLogger("registry")


def _message_ids(case: Case) -> set[str]:
    """The registry's own message ids for `case`: its request as recorded, and the deterministic ids the
    service modules give a case's messages (REGISTRY-<reference>, REGISTRY-<reference>-HANDOVER, ...), so a
    request dead-lettered before its id was recorded is still found."""
    ids = {case.request_message_id} if case.request_message_id else set()
    module = catalogue.module_for(case.service)
    for name in ("request_message_id", "handover_message_id"):
        if hasattr(module, name):
            ids.add(getattr(module, name)(case))
    ids.add(f"{PARTY}-{case.reference}")
    return ids


class Registry:
    name = "registry"
    metadata = Base.metadata
    samples = SAMPLES
    chains = (CASE_HISTORY,)  # the case status history, sealed and verified by the hub (registry/history.py)
    RESUBMIT_EVERY_SECONDS = 30

    def __init__(self, hub):
        self.hub = hub
        pki_dir = hub.settings.pki_dir
        pki.require_files(pki_dir / f"{PARTY}.key", pki_dir / f"{PARTY}.crt", whose=f"the {PARTY}'s signing")
        self.signer = Signer(pki.load_key(str(pki_dir / f"{PARTY}.key")),
                             pki.load_certificate(str(pki_dir / f"{PARTY}.crt")))
        # every service's answer deadline (config/services.yaml): a bad value stops the hub here, named
        self.deadlines = deadlines.load(hub.settings)
        self.handlers = {message_type: handler for module in catalogue.modules()
                         for message_type, handler in module.HANDLERS.items()}
        for module in catalogue.modules():  # a service that needs hooks into the hub sets them up here
            if hasattr(module, "attach"):
                module.attach(self)

    # -- what the registry contributes to the running hub (hub/apps.py) ------------------------------
    def routers(self):
        return [api_router, console.api, console.router, citizens_console.router, posts_console.router, *printing.routers]

    def public_paths(self):
        """The public verification of the documents printed for citizens answers without a token."""
        return (printing.PUBLIC_API,)

    def console(self):
        """The cases in the console (registry/console.py): pages, navigation, the overview's service tiles and
        the overdue cases for the alerts."""
        return console.console_part(self)

    def jobs(self) -> list[Job]:
        jobs = [Job("resubmit-stalled-cases", self.resubmit_stalled, every_seconds=self.RESUBMIT_EVERY_SECONDS)]
        for module in catalogue.modules():
            for job_id, fn, when in getattr(module, "SCHEDULED", ()):
                run = (lambda fn=fn: fn(self))
                jobs.append(Job(job_id, run, cron=when) if isinstance(when, dict) else
                            Job(job_id, run, every_seconds=when))
        return jobs

    def local_consumers(self):
        return {PARTY: ChangingConsumer(self.receive, self.prepare)}

    def dead_letter_hooks(self):
        return [self.on_dead_letter]

    def resend_hooks(self):
        return [self.on_resend]

    @staticmethod
    def post_states(session) -> dict[str, bool]:
        """Each post code the registry keeps, and whether it is open (hub/apps.py)."""
        return dict(session.execute(select(Post.code, Post.active)).all())

    def load_reference_data(self) -> int:
        with self.hub.sessions.begin() as session:
            return load_posts(session, self.hub.settings.config_dir / "reference" / "posts.csv")

    # -- outgoing ----------------------------------------------------------------------------------
    def submit(self, data: bytes) -> Receipt:
        """Send one signed canonical message through the hub's door; returns the hub's receipt."""
        return self.hub.receive(Arrival("registry", data=data, caller=PARTY))

    async def open_and_submit(self, service_name: str, *, registration_id: str | None, details: dict,
                              identity: Identity, post_code: str | None = None, after_open=None) -> dict:
        """Open a case (for a registered citizen, or at `post_code`) and send its request; returns the case
        as JSON. `after_open(session, case)` runs in the transaction that opens the case. A consular agent
        opens cases only for the citizens of their post, at their post (Forbidden, nothing opened)."""
        doing = f"opening a {service_name} case"

        def work() -> str:
            with self.hub.sessions.begin() as session:
                citizen = service.get_citizen(session, registration_id=registration_id) if registration_id else None
                if citizen is not None:
                    identity.check_post(citizen.post_code, doing=f"{doing} for {citizen.registration_id}")
                    citizens.check_may_open(citizen, service_name, details)
                case = service.open_case(session, service=service_name, citizen=citizen, details=details,
                                         actor=identity.case_actor, post_code=post_code)
                identity.check_post(case.post_code, doing=f"{doing} at {case.post_code}")
                if case.post_code is not None:  # a closed post takes no new case (its citizens moved on)
                    posts.require_open(session, code=case.post_code, doing=doing)
                audit.record(self.hub, session, identity, audit.CASE_OPENED, case.reference,
                             f"{service_name} at {case.post_code}")
                if after_open is not None:
                    after_open(session, case)
                reference = case.reference
            self.submit_case(reference)
            return reference

        reference = await run_in_threadpool(work)
        with self.hub.sessions() as session:
            return case_out(service.get_case(session, reference=reference), full=True, viewer=identity)

    def submit_case(self, reference: str) -> str:
        """Send the case's request through the hub; the case then awaits the partner's answer."""
        with self.hub.sessions() as session:
            case = service.get_case(session, reference=reference)
            module = catalogue.module_for(case.service)
            if case.status != "SUBMITTED" or not hasattr(module, "build_request"):
                return case.status
            try:
                data = module.build_request(self, case)
            except service.UNBUILDABLE as exc:  # the case's data cannot make a request: sending again cannot help
                data, failure = None, f"the request could not be built: {exc}"
        if data is None:
            return self.fail_case(reference, failure)
        try:
            receipt = self.submit(data)
        except TryLater as exc:  # the partner's outbox is full: the case stays SUBMITTED, resubmit_stalled sends it
            log.warning("case %s stays SUBMITTED for now: %s", reference, exc)
            return "SUBMITTED"
        except InputError as exc:  # our own request refused: a defect to see, not to retry
            return self.fail_case(reference, f"refused: {exc.detail}")
        with self.hub.sessions.begin() as session:
            case = service.get_case(session, reference=reference, for_update=True)
            case.request_message_id = receipt.message_id
            if case.status == "SUBMITTED":  # a synchronous answer may already have moved it on
                service.move_case(session, case=case, status=module.SENT_STATUS, actor="hub",
                                  note=f"accepted by the hub as {receipt.message_id}")
            return case.status

    def fail_case(self, reference: str, reason: str) -> str:
        """The case cannot go on: FAILED, its note the reason."""
        log.error("case %s failed: %s", reference, reason)
        with self.hub.sessions.begin() as session:
            case = service.get_case(session, reference=reference, for_update=True)
            if case.status == "FAILED":
                service.note_case(session, case=case, actor="hub", note=reason)
            else:
                service.move_case(session, case=case, status="FAILED", actor="hub", note=reason)
            return case.status

    def resubmit_stalled(self, older_than_seconds: float = 30) -> int:
        """Cases left SUBMITTED (the hub was unreachable at the time) are submitted again, idempotently."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
        sending = [m.SERVICE for m in catalogue.modules() if hasattr(m, "build_request")]
        with self.hub.sessions() as session:
            refs = list(session.scalars(select(Case.reference).where(
                Case.status == "SUBMITTED", Case.service.in_(sending), Case.created_at < cutoff)))
        for reference in refs:
            try:
                self.submit_case(reference)
            except Exception:  # one case's defect must not hold the others back
                log.exception("resubmitting case %s failed; the next run tries again", reference)
        return len(refs)

    # -- incoming (deliveries from the hub to the REGISTRY party) -----------------------------------
    def receive(self, outbound: Outbound) -> None:
        """Apply a delivery in a transaction of its own (the hub applies it with its record of the delivery)."""
        change = self.prepare(outbound)
        with self.hub.sessions.begin() as session:
            after = change(session)
        if after is not None:
            after()

    def prepare(self, outbound: Outbound):
        """A delivery read and verified before any transaction (hub/apps.py `ChangingConsumer`); returns its
        change to the registry's rows, made by the service module's handler."""
        handler = self.handlers.get(outbound.message_type)
        if handler is None:
            raise PermanentDeliveryError(f"the registry does not consume {outbound.message_type}")
        header, document = canonical.read(self, parse_trusted(outbound.body))

        def change(session):
            try:
                what = handler(self, session, header, document)
            except NotFound as exc:  # the answer names no case: trying again cannot help
                raise PermanentDeliveryError(f"the registry cannot apply {outbound.message_id}: {exc}") from None
            log.debug(what)
            return service.after_commit_of(session)
        return change

    def on_dead_letter(self, sender: str, correlation_id: str, message_id: str, reason: str) -> None:
        """The registry's own message could not reach its partner: what it belongs to fails with the reason
        (a service's hook first: a batch, a certificate; else the case it requests).

        Only the registry's own messages (Sender REGISTRY, whose header the registry signed) are looked at,
        found by their message id: a dead letter of another sender's message (a partner's answer the
        registry refused) changes no case or batch, whatever its header names; it stays a dead letter of
        the hub's, for an operator to see."""
        if sender != PARTY:
            log.warning("dead letter %s from %s is not the registry's: no case changed (%s)", message_id, sender,
                        reason)
            return
        with self.hub.sessions.begin() as session:
            for module in catalogue.modules():
                hook = getattr(module, "on_dead_letter", None)
                if hook is not None and hook(self, session, correlation_id, message_id, reason):
                    return
            case = session.scalars(select(Case).where(Case.reference == correlation_id).with_for_update()).first()
            if case is None or message_id not in _message_ids(case):
                log.error("dead letter %s names no case of the registry's (%s): %s", message_id, correlation_id,
                          reason)
                return
            if case.status == "FAILED":  # another of its messages died before (a repatriation's other leg)
                service.note_case(session, case=case, actor="hub", note=f"{message_id} also dead-lettered: {reason}")
            else:
                service.move_case(session, case=case, status="FAILED", actor="hub", note=reason)

    def on_resend(self, sender: str, correlation_id: str, message_id: str, actor: str) -> None:
        """The registry's own message, dead-lettered, was put back in the outbox by `actor`: what its dead letter
        failed waits again for the partner's answer (a service's hook first: a CDG batch and its cases; else
        the FAILED case it requests goes back to the status it waits in, registry/statuses.py `resume_status`).

        A case no longer FAILED (the late answer came first, or an agent cancelled it) is left as it is; a
        service whose FAILED is final (a judicial document's certificate) gets a note only."""
        if sender != PARTY:
            return
        with self.hub.sessions.begin() as session:
            for module in catalogue.modules():
                hook = getattr(module, "on_resend", None)
                if hook is not None and hook(self, session, correlation_id, message_id, actor):
                    return
            case = session.scalars(select(Case).where(Case.reference == correlation_id).with_for_update()).first()
            if case is None or message_id not in _message_ids(case):
                return
            waits_in = resume_status(case.service)
            note = f"{message_id} resent by {actor}"
            if case.status != FAILED or waits_in is None:
                service.note_case(session, case=case, actor="hub", note=note)
                return
            service.move_case(session, case=case, status=waits_in, actor="hub", action=True,
                              note=f"{note}: waiting for the partner's answer again")
