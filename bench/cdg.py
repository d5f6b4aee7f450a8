"""The streamed CDG batch, measured: `python -m bench.cdg --certificates 100000`.

Starts the CDG sandbox as a process (its real SFTP server on loopback) and the hub with the registry
in this process (no HTTP: the batch job is what is measured), fills the database with ISSUED life
certificates (not timed), then times each step of the streamed path (registry/services/cdg_stream.py,
the hub's file messages: hub/intake/files.py):

    prepare   cases ISSUED -> BATCHED (bulk statements)
    write     the LotCertificatsVie, signed by the registry, written to var/ from a streamed query
    submit    `Hub.receive(Arrival(path=...))`: read as a stream (XSD, signature), kept in the hub's file store, receipt
    upload    the hub's delivery: signed as the hub (streamed), sent over SFTP to CDG's inbox/ (.part,
              then rename) by the connector's `send_file`
    cdg       the sandbox verifying the batch as a stream and writing its signed AccuseLot
    ack-read  the hub's poll: the AccuseLot downloaded to disk, read as a stream (XSD, CDG's signature),
              kept as a file message for the registry
    apply     the hub's delivery to the registry: the file read, every line's verdict applied
              (set-based, per 1,000 lines)

and checks the outcome: every certificate has CDG's verdict, the batch reached CDG exactly once.
Certificates/s is given for the hub's side (write + submit + upload + ack-read + apply) and end to end
(everything, the sandbox included). Peak memory: the hub side's resident set sampled every 20 ms
during the timed steps (and ru_maxrss of the whole run, setup included), the sandbox's VmHWM.
Prints a table and writes var/bench-cdg.json (or --json).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

from bench.procs import Process, free_port, peak_rss_bytes

PROJECT = Path(__file__).resolve().parent.parent


class RssSampler:
    """The peak resident set of this process, sampled from /proc/self/status while running."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def fill(hub, certificates: int, death_notices: int) -> None:
    """ISSUED life certificates (one citizen for ten) and death notices, inserted in bulk."""
    from registry.models import Case, CaseEvent, Citizen, Post
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    with hub.sessions.begin() as session:
        post = session.scalars(select(Post.code).order_by(Post.code)).first()
        citizens = max(1, certificates // 10)
        for start in range(0, citizens, 5000):
            session.execute(insert(Citizen.__table__), [
                {"registration_id": f"MRE-{i + 1:07d}", "given_name_latin": "Ahmed", "family_name_latin": f"Alaoui{i}",
                 "given_name_arabic": "أحمد", "family_name_arabic": "العلوي", "birth_date": dt.date(1950, 6, 14),
                 "birth_place": "", "sex": "M", "cnie": f"BE{100000 + i % 900000}", "country": "FR", "city": "Paris",
                 "address_lines": "", "post_code": post, "registered_at": now, "status": "ACTIVE"}
                for i in range(start, min(citizens, start + 5000))])
        first = session.scalars(select(func.min(Citizen.id))).one()
        total = certificates + death_notices
        for start in range(0, total, 5000):
            rows = []
            for i in range(start, min(total, start + 5000)):
                if i < certificates:
                    details = {"kind": "LIFE_CERTIFICATE", "pension_number": f"{20000000 + i}",
                               "fund": "CNRA" if i % 2 else "RCAR", "issue_date": "2026-11-20"}
                else:
                    details = {"kind": "DEATH_NOTICE", "pension_number": f"{70000000 + i}", "fund": "RCAR",
                               "date_of_death": "2026-11-18", "deceased": {"given": "Ahmed", "family": f"Alaoui{i}"}}
                rows.append({"reference": f"CDV-2026-{i + 1:07d}", "service": "LIFE_CERTIFICATE",
                             "citizen_id": first + i % citizens, "post_code": post, "status": "ISSUED",
                             "details": details, "created_at": now, "updated_at": now})
            session.execute(insert(Case.__table__), rows)
        ids = session.scalars(select(Case.id).where(Case.service == "LIFE_CERTIFICATE")).all()
        for start in range(0, len(ids), 5000):
            session.execute(insert(CaseEvent.__table__), [
                {"case_id": id_, "at": now, "status": "ISSUED", "actor": "bench", "note": "issued"}
                for id_ in ids[start:start + 5000]])


def _deliver_all(hub) -> None:
    """The hub's deliveries due now, in this thread (the timed step), until none is left."""
    while hub.deliver_due(owner="bench-cdg"):
        pass


def run(certificates: int, *, death_notices: int = 0, database_url: str | None = None, work: Path | None = None,
        xmlsec1: bool = False, quiet: bool = False, ack_as_file_above: int = 65536) -> dict:
    """One measured run; returns the figures (and the checks) as a dict."""
    from hub.config import load_config
    from hub.engine import Hub
    from hub.settings import Settings
    from hub.trust import pki
    from registry.models import Case
    from registry.app import Registry
    from registry.services import cdg_stream, life_certificates as lc

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    work = Path(work or PROJECT / "var" / "bench-cdg")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pki_dir, sftp_port, control_port = work / "pki", free_port(), free_port()
    database_url = database_url or f"sqlite:///{work / 'hub.sqlite'}"
    schema = None
    if database_url.startswith("postgresql") and "search_path" not in database_url:
        database_url, schema = _own_schema(database_url)
    settings = Settings.from_env(var_dir=work / "var", pki_dir=pki_dir, database_url=database_url,
                                 environment={**os.environ, "HUB_PKI_DIR": str(pki_dir),
                                              "HUB_CDG_SFTP_PORT": str(sftp_port)})
    # the development keys (`hub dev init`): the hub makes none
    pki.init_dev_keys(pki_dir, list(load_config(settings).parties), hub_algorithm=settings.signing_algorithm)
    hub = Hub(settings)
    hub.migrate()
    registry = Registry(hub)
    registry.load_reference_data()
    started = time.perf_counter()
    fill(hub, certificates, death_notices)
    say(f"setup: {certificates} certificates and {death_notices} death notices ISSUED "
        f"in {time.perf_counter() - started:.1f} s ({database_url.split(':')[0]})")
    sandbox = Process("cdg", [sys.executable, "-m", "sandbox", "cdg", "--port", str(sftp_port), "--control-port",
                              str(control_port), "--pki-dir", str(pki_dir), "--data-dir", str(work / "sandbox"),
                              "--stream-above-bytes", "65536"],
                      env={**os.environ, "PYTHONPATH": str(PROJECT)}, log_path=work / "cdg-sandbox.log",
                      health_url=f"http://127.0.0.1:{control_port}/healthz")
    seconds = {}
    try:
        sandbox.wait_healthy()
        outbox = work / "sandbox" / "CDG" / "sftp" / "outbox"
        connector = hub.connectors["CDG"]
        # acknowledgements above this size are taken in as file messages (the sandbox's own threshold)
        connector.config = connector.config.model_copy(update={"stream_above_bytes": ack_as_file_above})
        with RssSampler() as sampler:
            clock = time.perf_counter()
            reference = lc._prepare(registry)
            seconds["prepare"] = time.perf_counter() - clock
            clock = time.perf_counter()
            path, size, digest = cdg_stream.write_batch(registry, reference)
            seconds["write"] = time.perf_counter() - clock
            clock = time.perf_counter()
            lc._submit(registry, reference)
            seconds["submit"] = time.perf_counter() - clock
            clock = time.perf_counter()
            _deliver_all(hub)
            seconds["upload"] = time.perf_counter() - clock
            clock = time.perf_counter()
            name = f"AR_{reference}.xml"
            deadline = time.monotonic() + 600
            while not (outbox / name).exists():
                if time.monotonic() > deadline or not sandbox.alive():
                    raise RuntimeError(f"no acknowledgement from the CDG sandbox; see {sandbox.log_path}")
                time.sleep(0.02)
            seconds["cdg"] = time.perf_counter() - clock
            clock = time.perf_counter()
            polled = hub.poll("CDG")
            seconds["ack_read"] = time.perf_counter() - clock
            clock = time.perf_counter()
            _deliver_all(hub)
            seconds["apply"] = time.perf_counter() - clock
        if polled.get("accepted") != 1:
            raise RuntimeError(f"the acknowledgement was not taken in (poll: {polled})")
        stats = httpx.get(f"http://127.0.0.1:{control_port}/_sandbox/stats", timeout=10).json()
        sandbox_peak = peak_rss_bytes(sandbox.pid)
        with hub.sessions() as session:
            statuses = dict(session.execute(select(Case.status, func.count()).where(Case.service == lc.SERVICE)
                                            .group_by(Case.status)).all())
            batch = session.scalars(select(lc.PensionBatch).where(lc.PensionBatch.reference == reference)).one()
            batch_status, batch_detail = batch.status, batch.detail
        sent = hub.message_files(f"REGISTRY-{reference}", sender="REGISTRY")
        acknowledgement = hub.message_files(f"CDG-AR-{reference}", sender="CDG")
        valid = None
        if xmlsec1:
            check = subprocess.run(["xmlsec1", "--verify", "--pubkey-cert-pem", str(pki_dir / "hub.crt"),
                                    str(sent["sent"]["CDG"])], capture_output=True, text=True)
            valid = check.returncode == 0
    finally:
        sandbox.stop()
        hub.close()
        if schema is not None:
            _drop_schema(database_url, schema)
    total = certificates + death_notices
    hub_side = seconds["write"] + seconds["submit"] + seconds["upload"] + seconds["ack_read"] + seconds["apply"]
    end_to_end = hub_side + seconds["prepare"] + seconds["cdg"]
    expected_rejected = sum(1 for i in range(certificates) if str(20000000 + i).endswith("9")) + \
        sum(1 for i in range(certificates, total) if str(70000000 + i).endswith("9"))
    result = {
        "certificates": certificates, "death_notices": death_notices, "database": database_url.split(":")[0],
        "batch": reference, "batch_bytes": size, "batch_sha256": digest,
        "acknowledgement_bytes": acknowledgement["size"], "acknowledgement_sha256": acknowledgement["sha256"],
        "acknowledgement_as_file": acknowledgement["received"] is not None,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "hub_side_seconds": round(hub_side, 3), "end_to_end_seconds": round(end_to_end, 3),
        "certificates_per_second_hub_side": round(total / hub_side),
        "certificates_per_second_end_to_end": round(total / end_to_end),
        "hub_peak_rss_mb": round(sampler.peak / 2**20, 1),
        "hub_ru_maxrss_mb_whole_run": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sandbox_peak_rss_mb": round(sandbox_peak / 2**20, 1),
        "checks": {"accepted": statuses.get("ACCEPTED", 0), "rejected": statuses.get("REJECTED", 0),
                   "expected_rejected": expected_rejected, "still_batched": statuses.get("BATCHED", 0),
                   "batch_status": batch_status, "batch_detail": batch_detail,
                   "cdg_batches_stored": stats.get("stored"),
                   "cdg_duplicates": stats.get("duplicates", 0), "cdg_batches_streamed": stats.get("batches_streamed"),
                   "cdg_lines": stats.get("lines_accepted", 0) + stats.get("lines_rejected", 0),
                   "xmlsec1_valid": valid},
        "work_dir": str(work),
    }
    return result


def _plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _own_schema(url: str) -> tuple[str, str]:
    """A fresh schema for this run on a shared PostgreSQL database (dropped at the end): nothing of
    anyone else's is read or removed."""
    import uuid

    import psycopg
    schema = f"bench_cdg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_plain_url(url), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}", schema


def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    with psycopg.connect(_plain_url(url.split("?")[0]), autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def table(result: dict) -> str:
    s = result["seconds"]
    n = result["certificates"] + result["death_notices"]
    rows = [
        ("certificates (+ death notices)", f"{result['certificates']:,} (+ {result['death_notices']:,})"),
        ("database", result["database"]),
        ("batch file / acknowledgement", f"{result['batch_bytes'] / 2**20:.1f} MiB / "
                                         f"{result['acknowledgement_bytes'] / 2**20:.1f} MiB"),
        ("prepare (ISSUED -> BATCHED)", f"{s['prepare']:.2f} s"),
        ("write (signed, streamed)", f"{s['write']:.2f} s  ({n / s['write']:,.0f}/s)"),
        ("submit (hub intake of the file)", f"{s['submit']:.2f} s"),
        ("upload (hub-signed, SFTP)", f"{s['upload']:.2f} s"),
        ("CDG sandbox (verify + answer)", f"{s['cdg']:.2f} s"),
        ("ack read (download, XSD, signature)", f"{s['ack_read']:.2f} s"),
        ("apply (set-based, per 1,000 lines)", f"{s['apply']:.2f} s"),
        ("hub side: write..apply", f"{result['hub_side_seconds']:.2f} s = "
                                             f"{result['certificates_per_second_hub_side']:,} certificates/s"),
        ("end to end (all of the above)", f"{result['end_to_end_seconds']:.2f} s = "
                                          f"{result['certificates_per_second_end_to_end']:,} certificates/s"),
        ("peak RSS, hub side (timed steps)", f"{result['hub_peak_rss_mb']:.0f} MB "
                                             f"(whole run incl. setup: {result['hub_ru_maxrss_mb_whole_run']:.0f} MB)"),
        ("peak RSS, CDG sandbox", f"{result['sandbox_peak_rss_mb']:.0f} MB"),
        ("verdicts", f"{result['checks']['accepted']:,} accepted, {result['checks']['rejected']:,} rejected, "
                     f"{result['checks']['still_batched']} left BATCHED"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cdg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--certificates", type=int, default=100_000)
    parser.add_argument("--death-notices", type=int, default=0)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file under the work folder")
    parser.add_argument("--work", type=Path, default=PROJECT / "var" / "bench-cdg",
                        help="work folder, emptied first (default %(default)s)")
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "bench-cdg.json")
    parser.add_argument("--xmlsec1", action="store_true", help="also check the batch file's signature with xmlsec1")
    parser.add_argument("--ack-as-file-above", type=int, default=65536, metavar="BYTES",
                        help="CDG's acknowledgements larger than this are taken in as file messages (the SFTP "
                             "connector's stream_above_bytes; default %(default)s)")
    args = parser.parse_args(argv)
    result = run(args.certificates, death_notices=args.death_notices, database_url=args.database_url, work=args.work,
                 xmlsec1=args.xmlsec1, ack_as_file_above=args.ack_as_file_above)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.json}")
    checks = result["checks"]
    ok = (checks["still_batched"] == 0 and checks["rejected"] == checks["expected_rejected"]
          and checks["accepted"] + checks["rejected"] == result["certificates"] + result["death_notices"]
          and checks["cdg_batches_stored"] == 1 and checks["xmlsec1_valid"] in (None, True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
