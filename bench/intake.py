"""`python -m bench.intake`: intake alone, in process, without HTTP: how fast accepted messages are stored.

N threads (16) call `hub.receive(Arrival("registry", ...))` with pre-signed messages (bench/messages.py)
on a hub assembled in this process (as bench/floor.py does) over a fresh database: a SQLite file or a
PostgreSQL schema of its own for every run. Two ways of storing them are compared, run after run
alternately in one process, so that both see the same machine:

    one-by-one   each accepted message written by itself, in a transaction of its own in its thread:
                 the hub before group commit
    batched      the messages waiting together written in three statements and one commit
                 (hub/store/group_commit.py `store`, hub/intake/accept.py `store_accepted`)

Reported per way: accepted messages/s (wall clock, median of the rounds) and this process's CPU per
message (user + system; the database server's own CPU is not counted).

    python -m bench.intake --database postgresql --messages 2000 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import messages
from bench.run import DEFAULT_POSTGRES_URL, PARTIES
from hub.errors import HubError

WAYS = ("one-by-one", "batched")


def write_one_by_one(hub) -> None:
    """Have the hub write each stored item alone, in a transaction of its own in the caller's thread: what
    intake did before group commit."""
    def store(writer, item):
        with hub.engine.begin() as connection:
            [outcome] = writer(connection, [item])
        if isinstance(outcome, HubError):  # refused: nothing was written
            raise outcome
        return outcome
    hub.committer.store = store


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Databases:
    """A fresh database for every run: a SQLite file under `directory`, or a PostgreSQL schema (dropped after)."""

    def __init__(self, kind: str, postgres_url: str, directory: Path):
        self.kind, self.postgres_url, self.directory = kind, postgres_url, directory
        self.schemas: list[str] = []

    def fresh(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.directory / (name + '.sqlite')}"
        import psycopg
        schema = f"bench_intake_{name}"
        with psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self.schemas.append(schema)
        separator = "&" if "?" in self.postgres_url else "?"
        return f"{self.postgres_url}{separator}options=-csearch_path%3D{schema}"

    def drop(self) -> None:
        if not self.schemas:
            return
        import psycopg
        with psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=5) as conn:
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.schemas.clear()


def run_once(settings, way: str, batch: list[bytes], threads: int) -> dict:
    """One run: a hub on `settings` (a fresh database), the messages through intake with `threads` threads."""
    from hub.engine import Hub
    from hub.intake.door import Arrival
    hub = Hub(settings)
    try:
        hub.migrate()
        if way == "one-by-one":
            write_one_by_one(hub)
        for data in batch[:threads]:  # warm: connections opened, statements compiled (not timed)
            hub.receive(Arrival("registry", data=data, caller="REGISTRY"))
        timed = batch[threads:]
        start = threading.Barrier(threads + 1)
        outcomes: list[str] = []

        def worker(index: int) -> None:
            start.wait()
            for data in timed[index::threads]:
                receipt = hub.receive(Arrival("registry", data=data, caller="REGISTRY"))
                outcomes.append("duplicate" if receipt.duplicate else "accepted")

        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(worker, i) for i in range(threads)]
            start.wait()
            cpu, wall = _cpu_seconds(), time.perf_counter()
            for future in futures:
                future.result()
            wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        accepted = outcomes.count("accepted")
        if accepted != len(timed):
            raise SystemExit(f"{way}: {accepted} of {len(timed)} messages accepted")
        return {"way": way, "messages": accepted, "seconds": wall, "per_second": accepted / wall,
                "cpu_ms_per_message": cpu * 1000 / accepted}
    finally:
        hub.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("HUB_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--messages", type=int, default=2000, help="per run (default %(default)s)")
    parser.add_argument("--threads", type=int, default=16, help="callers of hub.receive (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each way, alternating (default %(default)s)")
    args = parser.parse_args(argv)

    from hub.settings import Settings
    from hub.trust import pki
    run_id = uuid.uuid4().hex[:8].upper()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as scratch:
        directory = Path(scratch)
        pki_dir = directory / "pki"
        pki.init_dev_keys(pki_dir, PARTIES)
        print(f"pre-signing {args.messages} messages ...", flush=True)
        batch = messages.build(pki_dir, run_id, args.messages)
        databases = Databases(args.database, args.postgres_url, directory)
        results: dict[str, list[dict]] = {way: [] for way in WAYS}
        try:
            for round_ in range(args.rounds):
                for way in WAYS:
                    name = f"{run_id.lower()}_{round_}_{way.replace('-', '_')}"
                    var_dir = directory / name
                    settings = Settings.from_env(var_dir=var_dir, pki_dir=pki_dir,
                                                 database_url=databases.fresh(name))
                    result = run_once(settings, way, batch, args.threads)
                    results[way].append(result)
                    print(f"  round {round_ + 1} {way:>10}: {result['per_second']:6.0f} messages/s, "
                          f"{result['cpu_ms_per_message']:.2f} ms CPU per message", flush=True)
        finally:
            databases.drop()
    print(f"\n{args.database}, {args.messages - args.threads} messages a run, {args.threads} threads, "
          f"median of {args.rounds} rounds ({os.cpu_count()} CPUs):")
    for way in WAYS:
        rates = statistics.median(r["per_second"] for r in results[way])
        cpu = statistics.median(r["cpu_ms_per_message"] for r in results[way])
        print(f"  {way:>10}: {rates:6.0f} accepted messages/s, {cpu:.2f} ms hub CPU per message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
