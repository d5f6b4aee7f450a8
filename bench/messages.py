"""Pre-signed canonical messages, signed by REGISTRY's key: LicenceAuthenticationRequest (~3.5 KB, to NARSA),
and for the scenarios (bench/scenarios.py) PassportApplication (to DGSN over SOAP) and RepatriationRequest
(fanned out to SANTE, ETAT_CIVIL and DGSN), each built by the registry's own service code.

Each has its own case reference and so its own message id (REGISTRY-<reference>). They are written
to one file, each message preceded by its length (4 bytes, big-endian), for the load process.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

_signer = None


def _init(pki_dir: str) -> None:
    global _signer
    from hub.trust import pki
    from hub.trust.signing import Signer
    _signer = SimpleNamespace(signer=Signer(pki.load_key(f"{pki_dir}/REGISTRY.key"),
                                            pki.load_certificate(f"{pki_dir}/REGISTRY.crt")))


KINDS = ("licence", "passport", "repatriation")
PREFIXES = {"licence": "LIC", "passport": "PAS", "repatriation": "REP"}


def reference(run_id: str, index: int, kind: str = "licence") -> str:
    return f"{PREFIXES[kind]}-B{run_id}-{index:08d}"


def _build(job: tuple) -> bytes:
    kind, run_id, index = job if len(job) == 3 else ("licence", *job)
    return {"licence": _licence, "passport": _passport, "repatriation": _repatriation}[kind](run_id, index)


def _licence(run_id: str, index: int) -> bytes:
    from registry.models import Case, Citizen
    from registry.services import licence
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    citizen = Citizen(registration_id=f"MRE-{index % 10_000_000:07d}", given_name_latin="Youssef",
                      family_name_latin="El Amrani", given_name_arabic="يوسف", family_name_arabic="العمراني",
                      birth_date=dt.date(1988, 4, 12), cnie="BK123456", country="FR", post_code="FR-PARIS")
    case = Case(reference=reference(run_id, index), post_code="FR-PARIS", created_at=created, citizen=citizen,
                details={"number": f"{index % 99 + 1}/{index % 100_000_000:08d}", "categories": ["B"],
                         "issue_date": "2010-05-03"})
    return licence.build_request(_signer, case)


def _passport(run_id: str, index: int) -> bytes:
    from registry.models import Case, Citizen
    from registry.services import passport
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    citizen = Citizen(registration_id=f"MRE-{index % 10_000_000:07d}", given_name_latin="Youssef",
                      family_name_latin="El Amrani", given_name_arabic="يوسف", family_name_arabic="العمراني",
                      birth_date=dt.date(1988, 4, 12), cnie="BK123456", country="FR", post_code="FR-PARIS", sex="M",
                      birth_place="Casablanca")
    case = Case(reference=reference(run_id, index, "passport"), post_code="FR-PARIS", created_at=created,
                citizen=citizen,
                details={"kind": "FIRST", "collection_post": "FR-PARIS",
                         "enrolment": {"reference": f"ENR-FR-PARIS-{index:06d}",
                                       "captured_at": created.isoformat()}})
    return passport.build_request(_signer, case)


def _repatriation(run_id: str, index: int) -> bytes:
    """A request every authority grants (the cause, commune and seal of tests/test_repatriation_flow.py; sandbox/
    dgsn.py and etat_civil.py refuse a seal number or commune code ending in 9)."""
    from registry.models import Case
    from registry.services import repatriation
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    details = {"deceased": {"registration_id": f"MRE-{index % 10_000_000:07d}", "given_name_latin": "Rachid",
                            "family_name_latin": "Bennani", "given_name_arabic": "رشيد", "family_name_arabic": "بناني",
                            "birth_date": "1951-02-03", "sex": "M", "cnie": "J654321"},
               "death": {"date": "2026-11-18", "country": "FR", "city": "Paris", "cause_code": "I21.9",
                         "cause_text": "Cause médicale confidentielle"},
               "burial": {"commune": "1411011", "commune_name": "Agadir"},
               "transport": {"entry_point": "CMN", "arrival_date": "2026-11-25", "carrier": "Royal Air Maroc",
                             "seal_number": f"SCL-{index % 100_000:05d}0"}}  # DGSN refuses a seal ending in 9
    case = Case(reference=reference(run_id, index, "repatriation"), post_code="FR-PARIS", created_at=created,
                details=details)
    return repatriation.build_request(_signer, case)


def build(pki_dir: Path, run_id: str, count: int, *, kind: str = "licence",
          on_progress: Callable[[int], None] | None = None) -> list[bytes]:
    """`count` signed messages of `kind` (KINDS), built on every core (signing is ~1 ms each)."""
    jobs = [(kind, run_id, i) for i in range(count)]
    workers = min(os.cpu_count() or 1, max(1, count // 200))
    out: list[bytes] = []
    if workers == 1:
        _init(str(pki_dir))
        iterator: Iterator[bytes] = map(_build, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init, initargs=(str(pki_dir),))
        iterator = pool.imap(_build, jobs, chunksize=50)
    try:
        for data in iterator:
            out.append(data)
            if on_progress and len(out) % 50 == 0:
                on_progress(len(out))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if on_progress:
        on_progress(len(out))
    return out


def write(path: Path, messages: list[bytes]) -> None:
    with open(path, "wb") as handle:
        for data in messages:
            handle.write(struct.pack(">I", len(data)))
            handle.write(data)


def read(path: Path) -> list[bytes]:
    raw = Path(path).read_bytes()
    out, at = [], 0
    while at < len(raw):
        (size,) = struct.unpack_from(">I", raw, at)
        out.append(raw[at + 4:at + 4 + size])
        at += 4 + size
    return out
