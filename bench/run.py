"""`python -m bench`: the hub under load, on loopback, against the NARSA REST sandbox.

    1. the floor: each step's median cost on one core, in this process (bench/floor.py)
    2. N canonical LicenceAuthenticationRequest messages pre-signed by REGISTRY (bench/messages.py)
    3. `hub serve` (its own HUB_VAR_DIR, a fresh SQLite file or PostgreSQL schema) and the NARSA
       sandbox (`python -m sandbox narsa`) started as processes; an administrator token made with
       `hub tokens create`
    4. the phases asked for (--phases), each with its own pre-signed messages:
       throughput    the load process (bench/load.py) POSTs the messages with C keep-alive connections while
                     this process polls the database until every delivery to NARSA is DELIVERED (or DEAD,
                     or stalled)
       sustained     --rate messages/s offered for --duration seconds, open loop (latency from each
                     message's due time), intake and end-to-end percentiles at that rate
       soap          PassportApplication to the DGSN SOAP sandbox (bench/scenarios.py)
       repatriation  RepatriationRequest fanned out to SANTE, ETAT_CIVIL and DGSN (bench/scenarios.py)
       search        GET /api/v1/messages with typical filters, timed (bench/search.py)
    5. with --check, the report judged against the targets (bench/targets.py)
    6. with --console, the console phase (bench/console.py): the overview and message search pages
       timed through a signed-in console session, then the load sent twice more, once while
       --live-views open overviews refresh their live fragment and once without: the intake drop
    7. the report: JSON (var/bench.json) and a table

`--preload N` stores N messages (with their deliveries and sealed timeline) in bulk before the hub
starts (bench/preload.py): run once with it and once without to compare intake on a full and an
empty database. `--hub-processes N` starts N `hub serve` processes on one database, the load
spread over them; their CPU is summed.

NARSA's verdict callbacks are held back by default (the sandbox's --answer-delay is a day): the
registry has no case for these references, so each callback would end as a dead letter at the
registry. `--callbacks` lets them through (the load on the hub then includes them). Delivery is
measured to NARSA only either way.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench import console as console_phase
from bench import floor, messages, preload, scenarios, search, targets
from bench.procs import Process, cpu_seconds, database_server, family, free_port, peak_rss_bytes, progress_bar

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PARTIES = ["hub", "REGISTRY", "DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"]
PROJECT_ROOT = Path(__file__).resolve().parent.parent
HUB_COMMAND = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the hub: start `hub serve` and the NARSA REST sandbox on loopback, post N pre-signed "
                    "canonical messages (~3.5 KB) from a separate process over C keep-alive connections, wait until "
                    "NARSA has them all, and report accepted and delivered messages/s, intake and end-to-end latency "
                    "percentiles, the hub's CPU time per message and peak memory, and the floor (parse + validate + "
                    "verify + map + sign + commit of one message on one core) measured in the same run.",
        epilog="Writes var/bench.json (or --output). Example: python -m bench --messages 20000 --database postgresql")
    parser.add_argument("--messages", "-n", type=_positive, default=2000, metavar="N",
                        help="messages to send (default %(default)s)")
    parser.add_argument("--concurrency", "-c", type=_positive, default=16, metavar="C",
                        help="concurrent connections of the load process (default %(default)s)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite",
                        help="a fresh SQLite file, or a fresh schema in PostgreSQL (default %(default)s)")
    parser.add_argument("--postgres-url", default=os.environ.get("HUB_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
                        help="PostgreSQL database in which a schema is made and dropped "
                             "(default $HUB_BENCH_POSTGRES_URL or %(default)s)")
    parser.add_argument("--output", "-o", type=Path, default=None,
                        help="the JSON report (default <HUB_VAR_DIR>/bench.json, i.e. var/bench.json)")
    parser.add_argument("--callbacks", action="store_true",
                        help="let NARSA send its verdicts back (they dead-letter at the registry, which has no such "
                             "cases); by default they are held back")
    parser.add_argument("--timeout", type=float, default=60, metavar="SECONDS",
                        help="give up waiting for deliveries after this long without progress (default %(default)s)")
    parser.add_argument("--floor-rounds", type=_positive, default=5, metavar="R",
                        help="rounds of 100 calls per floor step (default %(default)s)")
    parser.add_argument("--preload", type=_not_negative, default=0, metavar="N",
                        help="messages stored in bulk before the load starts, as a history (default %(default)s; "
                             "1000000 takes a few minutes and ~14 GB)")
    parser.add_argument("--history-schema", default=None, metavar="SCHEMA",
                        help="PostgreSQL: run on this existing schema, which holds a history already (made once with "
                             "`python -m bench.preload`), instead of a fresh one; it is kept afterwards")
    parser.add_argument("--hub-processes", type=_positive, default=os.cpu_count() or 1, metavar="N",
                        help="API processes: the hub runs as `hub serve --processes N --delivery-processes M`, N "
                             "processes sharing one port (default: the number of CPUs, %(default)s)")
    parser.add_argument("--delivery-processes", type=_not_negative, default=2, metavar="M",
                        help="processes that only deliver beside the N (default %(default)s; 0: each of the N "
                             "also delivers)")
    parser.add_argument("--signing-algorithm", choices=["rsa-sha256", "ecdsa-sha256"], default="rsa-sha256",
                        help="the hub's own key and signatures (HUB_SIGNING_ALGORITHM; the partners' stay RSA): "
                             "ecdsa-sha256 shows what an ECDSA hub key would save, with its own development keys "
                             "under <HUB_VAR_DIR>/pki-ecdsa (default %(default)s)")
    parser.add_argument("--searches", type=_not_negative, default=25, metavar="K",
                        help="rounds of the search phase after the load, each asking %d typical queries "
                             "(default %%(default)s; 0: none)" % len(search.queries("")))
    parser.add_argument("--console", action="store_true",
                        help="the console phase: overview and search pages timed through a signed-in session, and "
                             "intake with --live-views open overviews against intake without")
    parser.add_argument("--console-requests", type=_positive, default=50, metavar="R",
                        help="requests per console page timed (default %(default)s)")
    parser.add_argument("--live-views", type=_not_negative, default=50, metavar="V",
                        help="open overviews refreshing while the load runs again (default %(default)s)")
    parser.add_argument("--live-every", type=float, default=5.0, metavar="SECONDS",
                        help="how often each open overview refreshes (default %(default)s, as console.js)")
    parser.add_argument("--phases", type=_phases, default=",".join(PHASES), metavar="LIST",
                        help="phases to run, separated by commas, among " + ", ".join(PHASES)
                             + " (default all; --console adds the console phase)")
    parser.add_argument("--rate", type=float, default=150, metavar="R",
                        help="sustained phase: messages offered per second (default %(default)s; 0 skips the phase)")
    parser.add_argument("--duration", type=float, default=60, metavar="SECONDS",
                        help="sustained phase: how long the rate is offered (default %(default)s)")
    parser.add_argument("--sustained-connections", type=_positive, default=64, metavar="C",
                        help="sustained phase: the load's pool of connections, large enough not to queue at the "
                             "client (default %(default)s)")
    parser.add_argument("--scenario-messages", type=_positive, default=1000, metavar="N",
                        help="messages of the soap and repatriation phases each (default %(default)s)")
    parser.add_argument("--check", nargs="?", const=True, default=None, metavar="FILE",
                        help="judge the report against the targets (bench/targets.py): exit 1 naming each one missed; "
                             "with FILE, judge that report without running anything")
    parser.add_argument("--keep", action="store_true",
                        help="afterwards, keep the hub and the sandbox running (until Ctrl-C), the run's files under "
                             "var/bench/run-<id> and the PostgreSQL schema")
    return parser


PHASES = ("throughput", "sustained", "soap", "repatriation", "search")


def _phases(value: str) -> list[str]:
    asked = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in asked if name not in PHASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {', '.join(unknown)}: choose among {', '.join(PHASES)}")
    return asked


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return number


def _not_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 0")
    return number


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.history_schema and (args.database != "postgresql" or args.preload):
        parser.error("--history-schema is a PostgreSQL schema holding a history already: use it with "
                     "--database postgresql and without --preload")
    console = Console()
    if isinstance(args.check, str):  # --check FILE: judge a report written before
        try:
            report = json.loads(Path(args.check).read_text())
        except (OSError, ValueError) as exc:
            console.print(f"[red]--check {args.check}: cannot read the report: {exc}[/]", highlight=False)
            return 2
        return targets.print_verdicts(console, targets.judge(report))
    if isinstance(args.phases, str):
        args.phases = _phases(args.phases)
    if args.rate <= 0 and "sustained" in args.phases:
        args.phases.remove("sustained")
    if args.searches == 0 and "search" in args.phases:
        args.phases.remove("search")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return Bench(args, console).run()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every process the benchmark started was stopped[/]")
        return 130


class Bench:
    def __init__(self, args, console: Console):
        from hub.settings import Settings
        self.args, self.console = args, console
        base = Settings.from_env()
        self.var_dir = base.var_dir
        # an ECDSA hub key needs development keys of its own: the hub refuses a key of another kind
        self.pki_dir = base.pki_dir if args.signing_algorithm == "rsa-sha256" else base.var_dir / "pki-ecdsa"
        self.output = args.output or self.var_dir / "bench.json"
        self.run_id = uuid.uuid4().hex[:8].upper()
        self.run_dir = self.var_dir / "bench" / f"run-{self.run_id}"  # a run of its own: runs may overlap
        self.processes: list[Process] = []
        self.schemas: list[str] = []
        self.database_pid: int | None = None  # PostgreSQL's server on this machine (`database_cpu`)
        self.preloaded: dict | None = None                       # what --preload stored (bench/preload.py)
        self.baseline = {"messages": 0, "deliveries": 0}         # highest ids before the (latest) load
        self.baseline_first = self.baseline                      # ... before the first load: the history's size

    # -- databases ---------------------------------------------------------------------------------

    def _database(self, name: str) -> str:
        if self.args.database == "sqlite":
            return f"sqlite:///{self.run_dir / (name + '.sqlite')}"
        import psycopg
        separator = "&" if "?" in self.args.postgres_url else "?"
        if name == "hub" and self.args.history_schema:  # a history stored before: used as it is, and kept
            return f"{self.args.postgres_url}{separator}options=-csearch_path%3D{self.args.history_schema}"
        schema = f"bench_{self.run_id.lower()}_{name}"
        with psycopg.connect(self.args.postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self.schemas.append(schema)
        return f"{self.args.postgres_url}{separator}options=-csearch_path%3D{schema}"

    def _drop_schemas(self) -> None:
        if not self.schemas:
            return
        import psycopg
        with psycopg.connect(self.args.postgres_url, autocommit=True, connect_timeout=5) as conn:
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.schemas.clear()

    # -- the run -----------------------------------------------------------------------------------

    def run(self) -> int:
        from hub.trust import pki
        from hub.settings import Settings

        args, console = self.args, self.console
        phases = args.phases
        self.run_dir.mkdir(parents=True)
        ok = False
        try:
            # the development keys (`hub dev init`): the hub makes none
            pki.init_dev_keys(self.pki_dir, PARTIES, hub_algorithm=args.signing_algorithm)
            hub_url_db, floor_db = self._database("hub"), self._database("floor")
            if args.database == "postgresql":
                self.database_pid = database_server(args.postgres_url)
            hub_ports = [free_port()]  # one `hub serve`, its processes sharing the port
            hub_urls = [f"http://127.0.0.1:{p}" for p in hub_ports]
            hub_url = hub_urls[0]
            sandbox_urls = {name: f"http://127.0.0.1:{free_port()}" for name in scenarios.SANDBOXES}
            env = {**os.environ, "HUB_VAR_DIR": str(self.run_dir), "HUB_PKI_DIR": str(self.pki_dir),
                   "HUB_SIGNING_ALGORITHM": args.signing_algorithm,
                   "HUB_DATABASE_URL": hub_url_db,
                   **{variable: sandbox_urls[name] for name, (_, variable) in scenarios.SANDBOXES.items()},
                   "HUB_CDG_SFTP_PORT": str(free_port())}  # nobody listens there: CDG's polling fails fast
            env.pop("HUB_PARTNER_TOKEN", None)
            narsa_url = sandbox_urls["narsa"]
            console.print(f"[bold]Hub benchmark[/] {args.messages} messages, {args.concurrency} connections, "
                          f"{args.database}, hub: {args.hub_processes} API + {args.delivery_processes} delivery "
                          f"process(es)"
                          + (f", {args.preload} messages preloaded" if args.preload else "")
                          + f"; phases {', '.join(phases) or 'none'}; run {self.run_id}, files under {self.run_dir}")

            # 1. the floor, before anything else runs
            floor_settings = Settings.from_env(var_dir=self.run_dir, pki_dir=self.pki_dir, database_url=floor_db,
                                               environment=env)
            with console.status("floor: building a sample message") as status:
                sample = messages.build(self.pki_dir, self.run_id + "F", 1)[0]
                measured = floor.measure(floor_settings, sample, rounds=args.floor_rounds,
                                         on_step=lambda step: status.update(f"floor: measuring {step}"))
            console.print("  floor measured: " + ", ".join(f"{k} {v * 1e6:.0f} µs" for k, v in
                                                           measured["steps_seconds"].items())
                          + f"; total {measured['total_seconds'] * 1e6:.0f} µs")

            # 2. messages, signed before any timing: each phase its own
            inputs: dict[str, Path] = {}
            sizes: list[int] = []
            to_sign = {"throughput": ("licence", self.run_id, args.messages),
                       "sustained": ("licence", self.run_id + "S", max(1, round(args.rate * args.duration))),
                       **{name: (s.kind, self.run_id, args.scenario_messages)
                          for name, s in scenarios.SCENARIOS.items()}}
            for phase in phases:
                if phase not in to_sign:
                    continue
                kind, run_id, count = to_sign[phase]
                with _progress(console) as progress:
                    task = progress.add_task(f"pre-signing: {phase} ({kind})", total=count)
                    batch = messages.build(self.pki_dir, run_id, count, kind=kind,
                                           on_progress=lambda n: progress.update(task, completed=n))
                inputs[phase] = self.run_dir / f"messages-{phase}.bin"
                messages.write(inputs[phase], batch)
                if kind == "licence" and not sizes:
                    sizes = [len(m) for m in batch]
                del batch

            # 3. the history (--preload), the hubs (one after the other: the first migrates), a token, the sandboxes
            self.preloaded = self._preload(hub_url_db) if args.preload else None
            self.baseline = self.baseline_first = self._baseline(hub_url_db)
            hubs = self._start_hubs(env, hub_ports, hub_urls)
            token = self._token(env, "administrator")
            sandbox_env = dict(env)
            if args.callbacks:
                sandbox_env["HUB_PARTNER_TOKEN"] = self._token(env, "partner", partner="NARSA")
            needed = (["narsa"] if {"throughput", "sustained", "search"} & set(phases) or args.console else [])
            needed += [name for phase in phases if phase in scenarios.SCENARIOS
                       for name in scenarios.SCENARIOS[phase].sandboxes if name not in needed]
            needed = list(dict.fromkeys(needed))
            sandboxes = {}
            for name in needed:
                delay = "0.2" if (args.callbacks and name == "narsa") else "86400"  # callbacks held back
                port = sandbox_urls[name].rsplit(":", 1)[1]
                sandboxes[name] = self._start(name, [sys.executable, "-m", "sandbox", name, "--port", port,
                                                     "--hub-url", hub_url, "--pki-dir", str(self.pki_dir),
                                                     "--data-dir", str(self.run_dir / "sandbox"),
                                                     "--answer-delay", delay, "--journal-only"],
                                              sandbox_env, f"{sandbox_urls[name]}/healthz")
            console.print("  " + ", ".join([f"hub {h.url} (pid {h.pid})" for h in hubs]
                                           + [f"{scenarios.SANDBOXES[n][0]} sandbox {p.url} (pid {p.pid})"
                                              for n, p in sandboxes.items()]), highlight=False)

            report = self._base_report(measured, sizes)
            results: list[bool] = []

            # 4. throughput: the load, and deliveries to NARSA
            load = None
            if "throughput" in phases:
                narsa = sandboxes["narsa"]
                console.print("[bold]throughput[/]: closed loop to NARSA (REST)")
                cpu_before = {"hub": sum(cpu_seconds(h.pid) for h in hubs), "narsa": cpu_seconds(narsa.pid),
                              "database": self.database_cpu()}
                load, outcome = self._drive(env, hub_urls, token, inputs["throughput"], hubs, total=args.messages)
                cpu_after = {"hub": sum(cpu_seconds(h.pid) for h in hubs), "narsa": cpu_seconds(narsa.pid),
                             "database": self.database_cpu()}
                report.update(self._report(load, outcome, measured, cpu_before, cpu_after))
                results.append(report["accepted"] == report["sent"] and report["delivered"] == report["accepted"])

            # 5. sustained: a fixed offered rate, open loop
            if "sustained" in phases:
                report["sustained"] = self._sustained(env, hub_urls, token, inputs["sustained"], hubs,
                                                      sandboxes["narsa"])
                results.append(report["sustained"]["accepted"] == report["sustained"]["sent"]
                               and report["sustained"]["delivered"] == report["sustained"]["accepted"])

            # 6. the scenarios: SOAP, and the repatriation fan-out
            for phase in phases:
                if phase in scenarios.SCENARIOS:
                    report[phase] = self._scenario(scenarios.SCENARIOS[phase], env, hub_urls, token, inputs[phase],
                                                   hubs, [sandboxes[n] for n in scenarios.SCENARIOS[phase].sandboxes])
                    results.append(not report[phase]["stalled"] and report[phase]["accepted"] == report[phase]["sent"])

            # 7. searches
            report["search"] = self._search(hub_urls, token) if "search" in phases else None

            # 8. the console
            report["console"] = self._console(env, hub_urls, token, load) if args.console else None

            # 9. the report
            peaks = {"hub": [peak_rss_bytes(pid) for h in hubs for pid in family(h.pid)[1:] or [h.pid]],
                     **{name: peak_rss_bytes(p.pid) for name, p in sandboxes.items()}}
            report["hub_peak_rss_mb"] = round(max(peaks["hub"]) / 2**20, 1)
            report["hub_peak_rss_mb_summed"] = round(sum(peaks["hub"]) / 2**20, 1)
            report["sandbox_peak_rss_mb"] = round(peaks["narsa"] / 2**20, 1) if "narsa" in peaks else None
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self.output.write_text(json.dumps(report, indent=2))
            _print_report(console, report)
            console.print(f"report written to {self.output}")
            ok = all(results)
            code = 0 if ok else 1
            if args.check:
                code = max(code, targets.print_verdicts(console, targets.judge(report)))
            if args.keep:
                console.print(f"\n--keep: hub {', '.join(hub_urls)}, NARSA {narsa_url}, database {hub_url_db}\n"
                              f"an administrator token (valid one day): {token}\nCtrl-C stops them.", highlight=False)
                try:
                    while all(p.alive() for p in self.processes):
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            return code
        finally:
            for process in reversed(self.processes):
                process.stop()
            if not args.keep:
                try:
                    self._drop_schemas()
                except Exception as exc:  # PostgreSQL gone: say which schemas are left
                    console.print(f"[red]could not drop schemas {', '.join(self.schemas)}: {exc}[/]")
                if ok:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                else:
                    console.print(f"the run's files (logs, database) are kept in {self.run_dir}")

    def _start_hubs(self, env: dict, ports: list[int], urls: list[str]) -> list[Process]:
        """The hub as it runs in production: `hub serve --processes N --delivery-processes M` on one port (the
        CPU figures sum its processes: bench/procs.py `cpu_seconds`)."""
        command = HUB_COMMAND + ["serve", "--port", str(ports[0]), "--processes", str(self.args.hub_processes),
                                 "--delivery-processes", str(self.args.delivery_processes)]
        return [self._start("hub", command, env, f"{urls[0]}/healthz")]

    def _sustained(self, env: dict, hub_urls: list[str], token: str, input_path: Path, hubs: list[Process],
                   narsa: Process) -> dict:
        """--rate messages/s for --duration s, open loop, to NARSA; latencies from each message's due time."""
        args = self.args
        count = max(1, round(args.rate * args.duration))
        self.console.print(f"[bold]sustained[/]: {args.rate:g} messages/s offered for {args.duration:g} s "
                           f"({count} messages, {args.sustained_connections} connections)")
        self.baseline = self._baseline(env["HUB_DATABASE_URL"])
        before = {"hub": sum(cpu_seconds(h.pid) for h in hubs), "narsa": cpu_seconds(narsa.pid),
                  "database": self.database_cpu()}
        load, outcome = self._drive(env, hub_urls, token, input_path, hubs, total=count, rate=args.rate,
                                    connections=args.sustained_connections)
        database_after = self.database_cpu()
        hub_cpu = sum(cpu_seconds(h.pid) for h in hubs) - before["hub"]
        narsa_cpu = cpu_seconds(narsa.pid) - before["narsa"]
        accepted, delivered = load["accepted"], outcome["counts"].get("DELIVERED", 0)
        return {
            "rate": args.rate, "duration_seconds": args.duration, "connections": args.sustained_connections,
            "sent": load["sent"], "accepted": accepted, "statuses": load["statuses"], "errors": load["errors"],
            "delivered": delivered, "stalled": outcome["stalled"],
            "offered_per_second": load.get("offered_per_second"),
            "achieved_per_second": load.get("achieved_per_second"),
            "intake_latency_ms": _percentiles(sorted(x for x in load["latencies"] if x > 0)),
            "end_to_end_latency_ms": _percentiles(sorted(outcome["latencies"]["end_to_end"])),
            "hub_cpu_seconds": round(hub_cpu, 3),
            "hub_cpu_ms_per_message": round(hub_cpu / delivered * 1e3, 3) if delivered else None,
            "sandbox_cpu_ms_per_message": round(narsa_cpu / delivered * 1e3, 3) if delivered else None,
            "database_cpu_ms_per_message": _per(database_after, before["database"], delivered),
            "load_cpu_ms_per_message": round(load["cpu_seconds"] / load["sent"] * 1e3, 3),
        }

    def _scenario(self, scenario, env: dict, hub_urls: list[str], token: str, input_path: Path,
                  hubs: list[Process], sandboxes: list[Process]) -> dict:
        """One throughput scenario (bench/scenarios.py): closed loop, until every delivery is final."""
        from sqlalchemy import create_engine

        from hub.store.db import normalise_url
        count = self.args.scenario_messages
        self.console.print(f"[bold]{scenario.name}[/]: {scenario.what}, {count} messages")
        self.baseline = self._baseline(env["HUB_DATABASE_URL"])
        engine = create_engine(normalise_url(env["HUB_DATABASE_URL"]))
        try:
            with self.console.status(f"opening the registry's {count} cases") as status:
                scenarios.open_cases(engine, scenario, self.run_id, count, on_progress=lambda left: status.update(
                    f"opened the registry's {count} cases; the hub is sealing their history ({left} events left)"))
            hub_before = sum(cpu_seconds(h.pid) for h in hubs)
            sandbox_before = sum(cpu_seconds(p.pid) for p in sandboxes)
            database_before = self.database_cpu()
            load, outcome = self._drive(env, hub_urls, token, input_path, hubs, total=count,
                                        partners=scenario.partners, answers_to="REGISTRY")
            hub_cpu = sum(cpu_seconds(h.pid) for h in hubs) - hub_before
            sandbox_cpu = sum(cpu_seconds(p.pid) for p in sandboxes) - sandbox_before
            database_cpu = None if database_before is None else self.database_cpu() - database_before
            cases = scenarios.completed_cases(engine, self.baseline["deliveries"], scenario.partners)
            statuses = scenarios.cases_moved_on(engine, scenario, self.run_id)
        finally:
            engine.dispose()
        return scenarios.report(scenario, load, outcome, hub_cpu, sandbox_cpu, cases, statuses, _percentiles,
                                database_cpu=database_cpu)

    def database_cpu(self) -> float | None:
        """PostgreSQL's CPU seconds so far, all its processes (bench/procs.py `database_server`); None on SQLite,
        whose work is the hub's own, or a server on another machine."""
        return cpu_seconds(self.database_pid, reaped=True) if self.database_pid is not None else None

    def _start(self, name: str, command: list[str], env: dict, health_url: str) -> Process:
        process = Process(name, command, env=env, log_path=self.run_dir / f"{name}.log", health_url=health_url)
        process.url = health_url.rsplit("/healthz", 1)[0]
        self.processes.append(process)
        process.wait_healthy(90)
        return process

    def _preload(self, database_url: str) -> dict:
        """The history, written in bulk before any hub runs (bench/preload.py)."""
        with _progress(self.console) as progress:
            task = progress.add_task(f"preloading {self.args.preload} messages", total=self.args.preload)
            done = preload.preload(database_url, self.args.preload, self.pki_dir, tag=self.run_id[:6],
                                   on_progress=lambda n: progress.update(task, completed=n))
        self.console.print(f"  preloaded {done['messages']} messages and {done['events']} sealed timeline events "
                           f"in {done['seconds']} s ({done['messages'] / max(done['seconds'], 0.1):.0f} messages/s)")
        return done

    def _baseline(self, database_url: str) -> dict:
        """The highest message and delivery ids before the load: the run's own rows come after them."""
        from sqlalchemy import create_engine, text

        from hub.store.db import migrate, normalise_url
        engine = create_engine(normalise_url(database_url))
        try:
            migrate(engine)
            with engine.connect() as conn:
                return {table: conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one()
                        for table in ("messages", "deliveries")}
        finally:
            engine.dispose()

    def _search(self, hub_urls: list[str], token: str) -> dict:
        rounds = self.args.searches
        with _progress(self.console) as progress:
            task = progress.add_task("searching (GET /api/v1/messages)", total=rounds * len(search.queries("")))
            result = search.run(hub_urls, token, messages.reference(self.run_id, 0), rounds,
                                on_progress=lambda n: progress.update(task, completed=n))
        return search.summary(result, _percentiles)

    def _console(self, env: dict, hub_urls: list[str], token: str, first_load: dict) -> dict:
        """Page timings through a signed-in console session; intake with and without open live views."""
        args, console = self.args, self.console
        hub_url = hub_urls[0]
        account = console_phase.create_account(HUB_COMMAND, env, self.run_id)
        session = console_phase.sign_in(hub_url, *account) if account else None
        if session is None:
            console.print("  [yellow]console: no console session could be signed in; pages not available[/]")
        api = httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        try:
            case = messages.reference(self.run_id, 0)
            with _progress(console) as progress:
                task = progress.add_task("console pages", total=args.console_requests * len(console_phase.pages(case)))
                timings = console_phase.time_pages(session, api, case, args.console_requests,
                                                   on_progress=lambda n: progress.update(task, completed=n))
            if first_load is None:  # the throughput phase did not run: a first load of the console's own
                first_load = self._load_again(env, hub_urls, token, "U")
            rates = {"without views (first load)": _rate(first_load)}
            views_report = None
            if args.live_views:
                if session is not None:
                    views = console_phase.LiveViews(hub_url, session.cookies, count=args.live_views,
                                                    every=args.live_every)
                else:  # no console: the views ask the overview's JSON, which is what the fragment shows
                    views = console_phase.LiveViews(hub_url, None, count=args.live_views, every=args.live_every,
                                                    path="/api/v1/monitor/overview",
                                                    headers={"Authorization": f"Bearer {token}"})
                with views:
                    time.sleep(args.live_every)  # every view has refreshed once before the load starts
                    rates[f"with {args.live_views} live views"] = _rate(self._load_again(env, hub_urls, token, "V"))
                views_report = views.report()
                rates["without views (after)"] = _rate(self._load_again(env, hub_urls, token, "W"))
            without = [rate for name, rate in rates.items() if name.startswith("without")]
            with_views = [rate for name, rate in rates.items() if name.startswith("with ")]
            drop = (round((1 - with_views[0] / statistics.mean(without)) * 100, 1)
                    if with_views and statistics.mean(without) else None)
            return {"signed_in": session is not None, "pages": timings, "accepted_per_second": rates,
                    "intake_drop_percent": drop, "live_views": views_report}
        finally:
            api.close()
            if session is not None:
                session.close()

    def _load_again(self, env: dict, hub_urls: list[str], token: str, suffix: str) -> dict:
        """The load once more with messages of its own (the same count); returns the load's result."""
        batch = messages.build(self.pki_dir, self.run_id + suffix, self.args.messages)
        path = self.run_dir / f"messages-{suffix}.bin"
        messages.write(path, batch)
        del batch
        self.baseline = self._baseline(env["HUB_DATABASE_URL"])  # this load's rows come after these ids
        hubs = [p for p in self.processes if p.name.startswith("hub")]
        load, _outcome = self._drive(env, hub_urls, token, path, hubs, total=self.args.messages)
        return load

    def _token(self, env: dict, role: str, *, partner: str | None = None) -> str:
        command = HUB_COMMAND + ["tokens", "create", "--role", role, "--name", f"bench {self.run_id} {role}",
                                 "--expires-in-days", "1"] + (["--partner", partner] if partner else [])
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"`hub tokens create --role {role}` failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip().splitlines()[-1]

    def _drive(self, env: dict, hub_urls: list[str], token: str, input_path: Path, hubs: list[Process], *,
               total: int, partners: tuple[str, ...] = ("NARSA",), rate: float | None = None,
               connections: int | None = None, answers_to: str | None = None):
        """Run the load process; poll the deliveries to `partners` until all accepted are final or progress
        stalls (and, with `answers_to`, the partners' answers delivered to that party are final too)."""
        from sqlalchemy import create_engine, text

        from hub.store.db import normalise_url

        args = self.args
        name = input_path.stem
        result_path = self.run_dir / f"load-result-{name}.json"
        load_log = open(self.run_dir / f"load-{name}.log", "wb")
        command = [sys.executable, "-m", "bench.load", "--url", ",".join(hub_urls), "--input", str(input_path),
                   "--concurrency", str(connections or args.concurrency), "--result", str(result_path)]
        if rate:
            command += ["--rate", str(rate)]
        load = subprocess.Popen(command, env={**env, "BENCH_TOKEN": token, "PYTHONPATH": _pythonpath(env)},
                                cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=load_log, stdin=subprocess.DEVNULL,
                                text=True)
        state = {"done": 0, "errors": 0, "finished": False}

        def read_progress() -> None:
            for line in load.stdout:
                try:
                    state.update(json.loads(line))
                except ValueError:
                    pass

        reader = threading.Thread(target=read_progress, daemon=True)
        reader.start()
        engine = create_engine(normalise_url(env["HUB_DATABASE_URL"]))
        counts: dict[str, int] = {}
        by_partner: dict[str, dict[str, int]] = {}
        last_progress, last_delivered = time.monotonic(), -1
        partners_final_at = None
        stalled = False
        where = "/".join(partners)
        try:
            with _progress(self.console) as progress:
                sending = progress.add_task("sending (202 received)", total=total)
                delivering = progress.add_task(f"delivered to {where}", total=total * len(partners))
                while True:
                    time.sleep(0.5)
                    for hub in hubs:
                        if not hub.alive():
                            raise RuntimeError(f"{hub.name} exited with {hub.proc.returncode}; see {hub.log_path}")
                    with engine.connect() as conn:  # this run's deliveries only (an id range), not the history
                        by_partner = {}
                        for partner, delivery_state, n in conn.execute(text(
                                "SELECT partner, state, count(*) FROM deliveries WHERE id > :after "
                                "GROUP BY partner, state"), {"after": self.baseline["deliveries"]}):
                            by_partner.setdefault(partner, {})[delivery_state] = n
                    counts = {}
                    for partner in partners:
                        for delivery_state, n in by_partner.get(partner, {}).items():
                            counts[delivery_state] = counts.get(delivery_state, 0) + n
                    delivered = counts.get("DELIVERED", 0)
                    answers = by_partner.get(answers_to, {}) if answers_to else {}
                    progress_mark = delivered + sum(answers.values()) - answers.get("PENDING", 0)
                    progress.update(sending, completed=state["done"] - state["errors"],
                                    description=f"sending (202 received){'' if not state['errors'] else ', [red]' + str(state['errors']) + ' refused[/]'}")
                    progress.update(delivering, completed=delivered,
                                    description=f"delivered to {where}" + (f", [red]{counts['DEAD']} dead[/]" if counts.get("DEAD") else ""))
                    if progress_mark != last_delivered or load.poll() is None:
                        last_progress, last_delivered = time.monotonic(), progress_mark
                    if load.poll() is not None:
                        reader.join(5)
                        if load.returncode != 0:
                            raise RuntimeError(f"the load process exited with {load.returncode}; see {load_log.name}")
                        accepted = state["done"] - state["errors"]
                        if delivered + counts.get("DEAD", 0) >= accepted * len(partners):
                            if not answers_to:
                                break
                            # the answers taken in for `answers_to`: final, all of them (or no more for 5 s)
                            partners_final_at = partners_final_at or time.monotonic()
                            if not answers.get("PENDING") and (sum(answers.values()) >= delivered
                                                               or time.monotonic() - partners_final_at > 5):
                                break
                        if time.monotonic() - last_progress > args.timeout:
                            stalled = True
                            break
        finally:
            if load.poll() is None:
                load.terminate()
                load.wait(10)
            load_log.close()
        with open(result_path) as handle:
            result = json.load(handle)
        if self.args.callbacks:  # give NARSA's verdicts a moment to come back and be handled
            time.sleep(3)
        latencies = self._delivery_latencies(engine, partners[0])
        with engine.connect() as conn:
            every = [{"partner": p, "state": s, "count": n} for p, s, n in conn.execute(text(
                "SELECT partner, state, count(*) FROM deliveries WHERE id > :after GROUP BY partner, state "
                "ORDER BY partner, state"), {"after": self.baseline["deliveries"]})]
        engine.dispose()
        return result, {"counts": counts, "stalled": stalled, "latencies": latencies, "every": every}

    def _delivery_latencies(self, engine, partner: str = "NARSA") -> dict:
        """(received_at, delivered_at) of every delivery to `partner` that was delivered."""
        from sqlalchemy import text

        from hub.store.db import UtcDateTime
        query = text("SELECT m.received_at, d.delivered_at FROM deliveries d JOIN messages m ON m.id = d.message_pk "
                     "WHERE d.id > :after AND d.partner = :partner AND d.state = 'DELIVERED'").columns(
            received_at=UtcDateTime(), delivered_at=UtcDateTime())
        with engine.connect() as connection:
            rows = connection.execute(query, {"after": self.baseline["deliveries"], "partner": partner}).all()
        return {"end_to_end": [(d - r).total_seconds() for r, d in rows],
                "last_delivered": max((d.timestamp() for _, d in rows), default=None),
                "first_received": min((r.timestamp() for r, _ in rows), default=None)}

    def _base_report(self, measured: dict, sizes: list[int]) -> dict:
        """What every report carries, whichever phases ran: the run's settings and the floor."""
        args = self.args
        floor_seconds = measured["total_seconds"]
        return {
            "database": args.database,
            "phases": list(args.phases),
            "messages": args.messages,
            "concurrency": args.concurrency,
            "callbacks": args.callbacks,
            "signing_algorithm": args.signing_algorithm,
            "hub_processes": args.hub_processes,
            "delivery_processes": args.delivery_processes,
            "preloaded": self.preloaded["messages"] if self.preloaded else 0,
            "history_schema": args.history_schema,
            "history_highest_message_id": self.baseline_first["messages"],
            "preload_seconds": self.preloaded["seconds"] if self.preloaded else None,
            "message_bytes_median": statistics.median(sizes) if sizes else None,
            "cpus": os.cpu_count(),
            "floor": {
                "steps_us": {k: round(v * 1e6, 1) for k, v in measured["steps_seconds"].items()},
                "total_us": round(floor_seconds * 1e6, 1),
                "messages_per_second_one_core": round(1 / floor_seconds, 1),
                "hardened_parse_us": round(measured["hardened_parse_seconds"] * 1e6, 1),
                "rounds": measured["rounds"], "calls_per_round": measured["calls_per_round"],
            },
        }

    def _report(self, load: dict, outcome: dict, measured: dict, cpu_before: dict, cpu_after: dict) -> dict:
        """The throughput phase's figures (the report's top level, as before the other phases existed)."""
        accepted = load["accepted"]
        delivered = outcome["counts"].get("DELIVERED", 0)
        window = ((outcome["latencies"]["last_delivered"] or load["wall_end"]) - load["wall_start"])
        intake = sorted(latency for latency in load["latencies"] if latency > 0)
        e2e = sorted(outcome["latencies"]["end_to_end"])
        hub_cpu = cpu_after["hub"] - cpu_before["hub"]
        narsa_cpu = cpu_after["narsa"] - cpu_before["narsa"]
        accepted_rate = accepted / load["elapsed_seconds"] if load["elapsed_seconds"] else 0.0
        floor_seconds = measured["total_seconds"]
        return {
            "sent": load["sent"],
            "accepted": accepted,
            "statuses": load["statuses"],
            "errors": load["errors"],
            "delivered": delivered,
            "deliveries_by_state": outcome["counts"],
            "deliveries_by_partner": outcome["every"],
            "stalled": outcome["stalled"],
            "send_seconds": round(load["elapsed_seconds"], 3),
            "delivery_seconds": round(window, 3),
            "accepted_per_second": round(accepted_rate, 1),
            "delivered_per_second": round(delivered / window, 1) if window > 0 else 0.0,
            "intake_latency_ms": _percentiles(intake),
            "end_to_end_latency_ms": _percentiles(e2e),
            "hub_cpu_seconds": round(hub_cpu, 3),
            "hub_cpu_ms_per_message": round(hub_cpu / accepted * 1e3, 3) if accepted else None,
            "hub_cpu_ms_per_delivered": round(hub_cpu / delivered * 1e3, 3) if delivered else None,
            "hub_cores_busy": round(hub_cpu / window, 2) if window > 0 else None,
            "sandbox_cpu_ms_per_message": round(narsa_cpu / accepted * 1e3, 3) if accepted else None,
            "database_cpu_ms_per_delivered": _per(cpu_after["database"], cpu_before["database"], delivered),
            "load_cpu_ms_per_message": round(load["cpu_seconds"] / len(load["latencies"]) * 1e3, 3),
            "accepted_to_floor_ratio": round(accepted_rate * floor_seconds, 3),
            "delivered_to_floor_ratio": round((delivered / window if window > 0 else 0.0) * floor_seconds, 3),
        }


def _per(after: float | None, before: float | None, count: int) -> float | None:
    """CPU ms per item between two readings (None without readings or items)."""
    return round((after - before) / count * 1e3, 3) if after is not None and before is not None and count else None


def _rate(load: dict) -> float:
    """Accepted messages per second of one load."""
    return round(load["accepted"] / load["elapsed_seconds"], 1) if load["elapsed_seconds"] else 0.0


def _pythonpath(env: dict) -> str:
    """The project root first: `bench` is not an installed package."""
    return os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)


def _percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    def at(q: float) -> float:  # nearest rank
        return round(seconds[min(len(seconds) - 1, max(0, int(q * len(seconds) + 0.5) - 1))] * 1e3, 2)
    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(seconds[-1] * 1e3, 2)}


_progress = progress_bar


def _print_report(console: Console, r: dict) -> None:
    table = Table(title=f"Hub benchmark: {r['messages']} messages, {r['concurrency']} connections, {r['database']}, "
                        f"hub: {r['hub_processes']} API + {r.get('delivery_processes', 0)} delivery process(es)"
                        + (f", hub key {r['signing_algorithm']}" if r.get("signing_algorithm", "rsa-sha256") != "rsa-sha256"
                           else "")
                        + (f", {r['preloaded']} messages preloaded" if r["preloaded"] else "")
                        + (f", history of schema {r['history_schema']} (ids up to {r['history_highest_message_id']})"
                           if r.get("history_schema") else "") + f" ({r['cpus']} CPUs)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    ms = lambda d: f"{d['p50']} / {d['p95']} / {d['p99']}"  # noqa: E731
    rows = []
    if "accepted" in r:  # the throughput phase
        rows += [
            ("accepted (202) / sent", f"{r['accepted']} / {r['sent']}"),
            ("delivered to NARSA", f"{r['delivered']}" + (f" ({r['deliveries_by_state'].get('DEAD', 0)} dead)"
                                                           if r['deliveries_by_state'].get('DEAD') else "")),
            ("accepted messages/s", f"{r['accepted_per_second']}"),
            ("delivered messages/s", f"{r['delivered_per_second']}"),
            ("intake latency p50 / p95 / p99 (ms)", ms(r["intake_latency_ms"])),
            ("end-to-end latency p50 / p95 / p99 (ms)", ms(r["end_to_end_latency_ms"])),
            ("hub CPU per message (ms), all its processes",
             f"{r['hub_cpu_ms_per_message']}"),
            ("hub cores busy (CPU s / wall s)", f"{r['hub_cores_busy']}"),
            ("NARSA sandbox CPU per message (ms)", f"{r['sandbox_cpu_ms_per_message']}"),
            ("load process CPU per message (ms)", f"{r['load_cpu_ms_per_message']}"),
        ]
        if r.get("database_cpu_ms_per_delivered") is not None:
            rows.append(("PostgreSQL CPU per delivered message (ms), all its processes",
                         f"{r['database_cpu_ms_per_delivered']}"))
    rows.append(("hub peak RSS (MB), largest process / summed",
                 f"{r['hub_peak_rss_mb']} / {r['hub_peak_rss_mb_summed']}"))
    if r.get("sustained"):
        s = r["sustained"]
        rows += [
            (f"sustained: offered / achieved messages/s ({s['duration_seconds']:g} s)",
             f"{s['offered_per_second']} / {s['achieved_per_second']}"),
            ("sustained: accepted / delivered / sent", f"{s['accepted']} / {s['delivered']} / {s['sent']}"),
            ("sustained: intake latency p50 / p95 / p99 (ms)", ms(s["intake_latency_ms"])),
            ("sustained: end-to-end latency p50 / p95 / p99 (ms)", ms(s["end_to_end_latency_ms"])),
            ("sustained: hub CPU per message (ms)", f"{s['hub_cpu_ms_per_message']}"),
        ]
        if s.get("database_cpu_ms_per_message") is not None:
            rows.append(("sustained: PostgreSQL CPU per message (ms)", f"{s['database_cpu_ms_per_message']}"))
    for name in ("soap", "repatriation"):
        if r.get(name):
            p = r[name]
            rows.append((f"{name}: accepted / sent", f"{p['accepted']} / {p['sent']}"))
            if "cases_per_second" in p:
                rows.append((f"{name}: cases done (three answers applied) / cases per second",
                             f"{p['cases_done']} / {p['cases_per_second']}"))
            else:
                rows.append((f"{name}: delivered messages/s (answer applied)", f"{p['delivered_per_second']}"))
            rows += [
                (f"{name}: deliveries by partner", "; ".join(
                    f"{partner} " + ", ".join(f"{n} {state.lower()}" for state, n in states.items())
                    for partner, states in p["deliveries_by_partner"].items())),
                (f"{name}: hub CPU per message (ms)", f"{p['hub_cpu_ms_per_message']}"),
                (f"{name}: sandboxes' CPU per message (ms)", f"{p['sandbox_cpu_ms_per_message']}"),
            ]
            if p.get("database_cpu_ms_per_message") is not None:
                rows.append((f"{name}: PostgreSQL CPU per message (ms)", f"{p['database_cpu_ms_per_message']}"))
    if r.get("search"):
        rows.append((f"search latency p50 / p95 / p99 (ms), {r['search']['requests']} requests",
                     ms(r["search"]["latency_ms"])))
        slowest = max(r["search"]["queries"].items(), key=lambda item: item[1]["p95_ms"])
        rows.append(("search: slowest query's p95 (ms)", f"{slowest[1]['p95_ms']} ({slowest[0]})"))
    if r.get("console"):
        c = r["console"]
        for name, timing in c["pages"].items():
            rows.append((f"console: {name} p50 / p95 (ms)",
                         timing if isinstance(timing, str) else f"{timing['p50_ms']} / {timing['p95_ms']}"))
        for name, rate in c["accepted_per_second"].items():
            rows.append((f"console: accepted messages/s, {name}", f"{rate}"))
        if c["intake_drop_percent"] is not None:
            rows.append(("console: intake drop with live views (%)", f"{c['intake_drop_percent']}"))
    for name, value in rows:
        table.add_row(name, value)
    table.add_section()
    for step, us in r["floor"]["steps_us"].items():
        table.add_row(f"floor: {step} (µs, median)", f"{us}")
    table.add_row("floor: total (µs)", f"{r['floor']['total_us']}")
    table.add_row("floor: messages/s on one core", f"{r['floor']['messages_per_second_one_core']}")
    if "accepted" in r:
        table.add_row("accepted / floor ratio", f"{r['accepted_to_floor_ratio']}")
        table.add_row("delivered / floor ratio", f"{r['delivered_to_floor_ratio']}")
    console.print(table)
    for name, p in [("throughput", r)] + [(n, r[n]) for n in ("sustained", "soap", "repatriation") if r.get(n)]:
        if "accepted" not in p:
            continue
        if p["errors"]:
            console.print(f"[red]{name}: {p['sent'] - p['accepted']} refused; first: {p['errors'][0]}[/]",
                          highlight=False)
        if p["stalled"]:
            console.print(f"[red]{name}: deliveries stalled: not every accepted message reached its partner(s)[/]")
    for name in ("soap", "repatriation"):
        p = r.get(name) or {}
        if p and p["answers_dead_lettered"]:
            console.print(f"[red]{name}: {p['answers_dead_lettered']} answers dead-lettered at the registry[/]",
                          highlight=False)
        if p and p["cases_moved_on"] != p["accepted"]:
            console.print(f"[red]{name}: {p['cases_moved_on']} of {p['accepted']} cases reached "
                          f"{scenarios.SCENARIOS[name].answered}: {p['case_statuses']}[/]", highlight=False)
