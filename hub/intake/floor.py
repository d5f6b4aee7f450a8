"""The floor: what one message costs the engine, step by step, on one core, measured in this process.

Each step runs on the hub it is given (`hub.engine.Hub`: keys, schemas and stylesheets loaded once, as
`hub serve` does), over a scratch database of the same kind as the benchmark's (bench/floor.py). Each
call is timed alone (time.perf_counter) after a warm-up, in several rounds; the cost quoted is the
median of all calls. The floor is the sum of the steps' medians:

    parse     lxml.etree.fromstring of the ~3.5 KB canonical message
    validate  hub.schemas.validate of the envelope (lxml XSD)
    verify    hub.trust.verify of REGISTRY's signature on the business document
    map       hub.mappings.apply of the recipient's stylesheet to the canonical envelope (lxml XSLT)
    sign      hub.signer.sign of the mapped document (the hub's key)
    commit    one `messages` row (the message's bytes and a receipt) inserted and committed

The hub's hardened parse (hub.xml.safe.parse_untrusted) is measured too, for information; it is not
part of the floor.
"""
from __future__ import annotations

import datetime as dt
import gc
import hashlib
import statistics
import time
from typing import Callable

from lxml import etree

from hub.xml.envelope import business_document, read_header
from hub.store.models import Message, MessageState
from hub.xml.safe import limits, parse_untrusted

STEPS = ("parse", "validate", "verify", "map", "sign", "commit")


def _median_cost(call: Callable[[], object], *, rounds: int, per_round: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(rounds):
        gc.collect()
        for _ in range(per_round):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(hub, sample: bytes, *, mapping: str, rounds: int = 5, per_round: int = 100,
            on_step: Callable[[str], None] | None = None) -> dict:
    """Median seconds of each step for `sample` (a signed canonical message), mapped out with `mapping`;
    the hub's database is a scratch database (rows inserted)."""
    settings = hub.settings
    envelope = etree.fromstring(sample)
    header = read_header(envelope)
    document = business_document(envelope)
    mapped = hub.mappings.apply(mapping, envelope)
    receipt = b"<Receipt>" + b"x" * 2000 + b"</Receipt>"  # about the size of the hub's signed receipt
    counter = iter(range(10**9))

    def commit() -> None:
        now = dt.datetime.now(dt.timezone.utc)
        with hub.sessions.begin() as session:
            session.add(Message(message_id=f"FLOOR-{next(counter)}", sender=header.sender,
                                recipient=header.recipient, type=header.type,
                                correlation_id=header.correlation_id, in_reply_to=None,
                                state=MessageState.ACCEPTED, digest=hashlib.sha256(sample).hexdigest(),
                                received_bytes=sample, canonical_bytes=None, receipt=receipt,
                                received_at=now, updated_at=now))

    steps: dict[str, Callable[[], object]] = {
        "parse": lambda: etree.fromstring(sample),
        "validate": lambda: hub.schemas.validate(envelope, what="message"),
        "verify": lambda: hub.trust.verify(document, header.sender),
        "map": lambda: hub.mappings.apply(mapping, envelope),
        "sign": lambda: hub.signer.sign(mapped),
        "commit": commit,
    }
    costs = {}
    for name, call in steps.items():
        if on_step:
            on_step(name)
        costs[name] = _median_cost(call, rounds=rounds, per_round=per_round)
    hardened = _median_cost(lambda: parse_untrusted(sample, max_bytes=settings.max_message_bytes,
                                                     **limits(settings)), rounds=rounds, per_round=per_round)
    total = sum(costs.values())
    return {"steps_seconds": costs, "total_seconds": total, "messages_per_second_one_core": 1 / total,
            "hardened_parse_seconds": hardened, "rounds": rounds, "calls_per_round": per_round,
            "database": settings.database_url.split(":", 1)[0]}
