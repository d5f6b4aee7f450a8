"""What a delivery keeps as evidence when a send is repeated or its answer is refused.

The bytes sent and the partner's answer are written once: the timeline's digests vouch for them, so a
second send (a lease that expired during a slow send, an operator's resend) is recorded as SENT_AGAIN
with its own digests, and the chain still verifies. A send whose answer the hub refuses still keeps
what was sent and what came back."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from hub.delivery import workers as engine
from hub.errors import PermanentDeliveryError
from hub.evidence.chains import verify_chains
from hub.store.models import Delivery, DeliveryState, Event
from hub.intake.door import Arrival
from support import licence_request

pytestmark = pytest.mark.both_databases  # storage is the subject


def _only_delivery(hub) -> int:
    with hub.sessions() as session:
        return session.scalars(select(Delivery.id)).one()


def _kinds(hub, delivery_id: int) -> list[tuple[str, str]]:
    with hub.sessions() as session:
        return [(e.kind, e.detail) for e in session.scalars(select(Event).where(Event.delivery_id == delivery_id)
                                                            .order_by(Event.id))]


def test_a_second_send_keeps_the_first_bytes_and_records_its_own_digests(hub, pki_dir):
    hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    delivery_id = _only_delivery(hub)
    engine._record_delivered(hub, delivery_id, (b"<first/>", b"<ack n='1'/>", "over REST: 202"), None)
    engine._record_delivered(hub, delivery_id, (b"<second/>", b"<ack n='2'/>", "over REST: 202"), None)
    with hub.sessions() as session:
        kept = session.get(Delivery, delivery_id)
        assert (kept.state, kept.sent_bytes, kept.partner_receipt) == (DeliveryState.DELIVERED, b"<first/>",
                                                                       b"<ack n='1'/>")
    kinds = _kinds(hub, delivery_id)
    again = [detail for kind, detail in kinds if kind == "SENT_AGAIN"]
    assert [kind for kind, _ in kinds].count("SENT") == 1 and len(again) == 1
    assert hashlib.sha256(b"<second/>").hexdigest() in again[0]
    assert hashlib.sha256(b"<ack n='2'/>").hexdigest() in again[0]
    report = verify_chains(hub)
    assert report.ok, report.lines()


def test_a_refused_answer_still_keeps_what_was_sent_and_answered(hub, pki_dir):
    hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
    delivery_id = _only_delivery(hub)
    error = PermanentDeliveryError("delivered, but NARSA's answer was refused: signature does not verify")
    assert engine._record_failure(hub, delivery_id, error, "REST",
                                  (b"<sent/>", b"<answer/>", "over REST: 200")) == DeliveryState.DEAD
    with hub.sessions() as session:
        kept = session.get(Delivery, delivery_id)
        assert (kept.state, kept.sent_bytes, kept.partner_receipt) == (DeliveryState.DEAD, b"<sent/>", b"<answer/>")
    assert [kind for kind, _ in _kinds(hub, delivery_id)][-3:] == ["SENT", "PARTNER_RECEIPT", "DEAD_LETTERED"]
    report = verify_chains(hub)
    assert report.ok, report.lines()
