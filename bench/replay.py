"""The replay of a mapping version over the stored history, measured: `python -m bench replay --messages 10000`.

1. a database (a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards), brought to the newest
   revision, holding N licence requests to NARSA as the hub stores them (canonical bytes, a delivery through
   narsa/licence-request.to-narsa.xsl), each with its own holder, and N/4 messages of another route;
2. `hub.mappings.checks.replay` of three versions of the NARSA mapping over the last N messages: the active one
   (every output identical), one that changes a value (every output different, the first diffs made) and one
   whose output NARSA's schema refuses (every output invalid);
3. messages per second for each (the whole replay: reading the stored bytes, both versions' transforms, the
   schema validation, the comparison), written to var/bench-replay.json. The issue asks for 1,000 a second."""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
NARSA = "narsa/licence-request.to-narsa.xsl"
CASES = PROJECT / "mappings/narsa/cases/licence-request.to-narsa"
OTHER_CASE = PROJECT / "mappings/dgsn/cases/identity-check.to-dgsn"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_PER_SECOND = 1000
BATCH = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="stored messages the mapping's route holds")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("HUB_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--output", type=Path, default=None, help="default var/bench-replay.json")
    return parser


def versions() -> dict[str, bytes]:
    active = (PROJECT / "mappings" / NARSA).read_bytes()
    given = b'<Prenom><xsl:value-of select="$req/lic:Holder/lic:LatinName/lic:Given"/></Prenom>'
    country = b'<PaysResidence><xsl:value-of select="$req/lic:CountryOfResidence"/></PaysResidence>'
    return {"active (identical)": active,
            "a value changed (different)": active.replace(given, b'<Prenom><xsl:value-of select="translate('
                                                                 b"$req/lic:Holder/lic:LatinName/lic:Given, 'abcdefghijklmnopqrstuvwxyz', "
                                                                 b"'ABCDEFGHIJKLMNOPQRSTUVWXYZ')\"/></Prenom>"),
            "a field dropped (invalid)": active.replace(country, b"")}


def store_history(hub, count: int, say) -> None:
    """`count` licence requests to NARSA and count/4 identity checks to DGSN, one a second, newest last."""
    from hub.store.models import Delivery, Message
    inputs = [p.read_bytes() for p in sorted(CASES.glob("*.input.xml"))]
    other = next(iter(sorted(OTHER_CASE.glob("*.input.xml")))).read_bytes()
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    total = count + count // 4
    for first in range(0, total, BATCH):
        with hub.sessions.begin() as session:
            for n in range(first, min(first + BATCH, total)):
                at = start + dt.timedelta(seconds=n)
                if n % 5 == 4 and n // 5 < count // 4:  # every fifth: another route's message
                    data, mapping, partner, kind = other, "dgsn/identity-check.to-dgsn.xsl", "DGSN", "IdentityCheck"
                else:
                    data = inputs[n % len(inputs)].replace(b"<lic:Given>", f"<lic:Given>H{n} ".encode(), 1)
                    mapping, partner, kind = NARSA, "NARSA", "LicenceAuthenticationRequest"
                message = Message(message_id=f"BENCH-{n:08d}", sender="REGISTRY", recipient=partner, type=kind,
                                  correlation_id=f"BENCH-{n}", state="DELIVERED",
                                  digest=hashlib.sha256(data).hexdigest(), received_bytes=data, canonical_bytes=data,
                                  receipt=b"<receipt/>", received_at=at, updated_at=at)
                session.add(message)
                session.flush()
                session.add(Delivery(message_pk=message.id, partner=partner, mapping=mapping, state="DELIVERED",
                                     next_attempt_at=at))
        say(f"  stored {min(first + BATCH, total)}/{total}")


def run(*, messages: int, database: str = "sqlite", postgres_url: str = DEFAULT_POSTGRES_URL, say=print) -> dict:
    from hub.engine import Hub
    from hub.mappings.checks import replay
    from hub.settings import Settings
    from hub.trust import pki
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    schema = None
    if database == "postgresql":
        import psycopg
        schema = f"bench_replay_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        database_url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}options=-csearch_path%3D{schema}"
    else:
        database_url = f"sqlite:///{work / 'replay.sqlite'}"
    pki_dir = work / "pki"
    pki.init_dev_keys(pki_dir, ["hub", "REGISTRY", "DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"])
    hub = Hub(Settings.from_env(var_dir=work / "var", pki_dir=pki_dir, database_url=database_url))
    try:
        hub.migrate()
        say(f"storing {messages} licence requests and {messages // 4} other messages ({database})")
        store_history(hub, messages, say)
        figures = {}
        for name, xslt in versions().items():
            report = replay(hub, NARSA, xslt, last=messages)
            figures[name] = {"messages": report.messages, "identical": report.identical,
                             "different": report.different, "invalid": report.invalid, "seconds": report.seconds,
                             "per_second": report.per_second}
            say(f"  {name}: {report.messages} in {report.seconds:.2f} s = {report.per_second:,.0f}/s")
    finally:
        hub.close()
        if schema:
            import psycopg
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {"messages": messages, "database": database, "cpus": os.cpu_count(),
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": figures,
            "slowest_per_second": min(f["per_second"] for f in figures.values()),
            "target_per_second": TARGET_PER_SECOND}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(messages=args.messages, database=args.database, postgres_url=args.postgres_url)
    output = args.output or PROJECT / "var" / "bench-replay.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"\nreplay of {NARSA} over {report['messages']} stored messages on {report['database']}:")
    for name, figures in report["versions"].items():
        print(f"  {name:30} {figures['per_second']:>10,.0f} messages/s")
    verdict = "meets" if report["slowest_per_second"] >= TARGET_PER_SECOND else "MISSES"
    print(f"slowest {report['slowest_per_second']:,.0f}/s: {verdict} the {TARGET_PER_SECOND:,}/s asked; "
          f"report written to {output}")
    return 0 if report["slowest_per_second"] >= TARGET_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())
