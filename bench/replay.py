"""The replay of a mapping version over the stored history, measured: `python -m bench replay --messages 10000`.

1. a database (a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards) filled by the engine's bulk
   preload (`Hub.preload_history`, as `python -m bench.preload` does) with N/0.6 messages of its four routes:
   N licence requests to NARSA (signed canonical envelopes of ~3.5 KB), the rest NARSA's results, civil-status
   and judicial requests;
2. `hub.mappings.checks.replay` of three versions of the NARSA mapping over the last N messages: the active one
   (every output identical), one that changes a value (every output different, the first diffs made) and one
   whose output NARSA's schema refuses (every output invalid);
3. messages per second for each (the whole replay: reading the stored bytes, both versions' transforms, the
   schema validation, the comparison), written to var/bench-replay.json. The issue asks for 1,000 a second."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
NARSA = "narsa/licence-request.to-narsa.xsl"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_PER_SECOND = 1000
LICENCE_REQUESTS_IN_TEN = 6


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


def store_history(database_url: str, count: int, pki_dir: Path, say) -> int:
    """A history holding `count` licence requests to NARSA among the other routes' messages, written by the
    engine's own bulk preload (bench/preload.py, `Hub.preload_history`: six messages in ten are licence
    requests); returns how many messages it stored."""
    from bench.preload import preload
    total = -(-count * 10 // LICENCE_REQUESTS_IN_TEN)
    say(f"storing {total} messages, {count} of them licence requests to NARSA")
    preload(database_url, total, pki_dir, on_progress=lambda n: say(f"  stored {n}/{total}") if n % 10_000 == 0
            else None)
    return total


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
    hub = None
    try:
        stored = store_history(database_url, messages, pki_dir, say)
        hub = Hub(Settings.from_env(var_dir=work / "var", pki_dir=pki_dir, database_url=database_url))
        figures = {}
        for name, xslt in versions().items():
            report = replay(hub, NARSA, xslt, last=messages)
            figures[name] = {"messages": report.messages, "identical": report.identical,
                             "different": report.different, "invalid": report.invalid, "seconds": report.seconds,
                             "per_second": report.per_second}
            say(f"  {name}: {report.messages} in {report.seconds:.2f} s = {report.per_second:,.0f}/s")
    finally:
        if hub is not None:
            hub.close()
        if schema:
            import psycopg
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {"messages": messages, "stored": stored, "database": database, "cpus": os.cpu_count(),
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
