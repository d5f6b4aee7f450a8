"""The registry wired to the hub: it submits signed requests and consumes the hub's deliveries."""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select

from connectors.base import Outbound
from hub import pki
from hub.db import utcnow
from hub.errors import InputError, PermanentDeliveryError
from hub.signing import Signer
from hub.xmlsafe import parse_trusted
from registry import licence, service
from registry.models import Case
from registry.reference import load_posts
from registry.statuses import LICENCE_AUTHENTICATION

log = logging.getLogger("registry")
PARTY = "REGISTRY"


class Registry:
    def __init__(self, hub):
        self.hub = hub
        pki_dir = hub.settings.pki_dir
        self.signer = Signer(pki.load_key(str(pki_dir / f"{PARTY}.key")),
                             pki.load_certificate(str(pki_dir / f"{PARTY}.crt")))
        hub.attach_local_consumer(PARTY, self.receive)
        hub.dead_letter_listeners.append(self.on_dead_letter)

    def load_reference_data(self) -> int:
        with self.hub.sessions.begin() as session:
            return load_posts(session, self.hub.settings.config_dir / "reference" / "posts.csv")

    # -- outgoing ----------------------------------------------------------------------------------
    def submit_case(self, reference: str) -> str:
        """Send the case's request through the hub; the case then awaits the partner's answer."""
        with self.hub.sessions() as session:
            case = service.get_case(session, reference=reference)
            if case.status != "SUBMITTED":
                return case.status
            data = licence.build_request(case, case.citizen, self.signer)
        try:
            receipt = self.hub.submit(data)
        except InputError as exc:  # our own request refused: a defect to see, not to retry
            with self.hub.sessions.begin() as session:
                case = service.get_case(session, reference=reference, for_update=True)
                service.move_case(session, case=case, status="FAILED", actor="hub", note=f"refused: {exc.detail}")
            return "FAILED"
        with self.hub.sessions.begin() as session:
            case = service.get_case(session, reference=reference, for_update=True)
            case.request_message_id = receipt.message_id
            service.move_case(session, case=case, status="AWAITING_PARTNER", actor="hub",
                              note=f"accepted by the hub as {receipt.message_id}")
            return case.status

    def resubmit_stalled(self, older_than_seconds: float = 30) -> int:
        """Cases left SUBMITTED (the hub was unreachable at the time) are submitted again, idempotently."""
        cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
        with self.hub.sessions() as session:
            refs = list(session.scalars(select(Case.reference).where(Case.status == "SUBMITTED",
                                                                     Case.created_at < cutoff)))
        for reference in refs:
            self.submit_case(reference)
        return len(refs)

    # -- incoming (deliveries from the hub to the REGISTRY party) -----------------------------------
    def receive(self, outbound: Outbound) -> None:
        envelope = parse_trusted(outbound.body)
        if outbound.message_type != licence.RESULT_TYPE:
            raise PermanentDeliveryError(f"the registry does not consume {outbound.message_type}")
        with self.hub.sessions.begin() as session:
            what = licence.apply_result(session, envelope, hub_certificate=self.hub.signer.certificate,
                                        narsa_certificate=self.hub.certificates["NARSA"])
        log.debug(what)

    def on_dead_letter(self, sender: str, correlation_id: str, message_id: str, reason: str) -> None:
        if sender != PARTY:
            return
        with self.hub.sessions.begin() as session:
            case = service.get_case(session, reference=correlation_id, for_update=True)
            service.move_case(session, case=case, status="FAILED", actor="hub", note=reason)


SERVICES = {LICENCE_AUTHENTICATION: licence}
