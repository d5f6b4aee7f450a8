"""Several `hub serve` processes on one database: they share the deliveries (each message reaches the
partner once), and the scheduled jobs run in exactly one of them -- the leader -- and move to another
within seconds when the leader is killed."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from conftest import bearer, free_port, serve_tokens, wait_for, write_config
from hub.cluster.leader import Leadership, current_leader, process_name
from hub.settings import PROJECT_ROOT
from test_crash_recovery import HubProcess
from support import licence_request, scrape
from test_licence_flow import FINAL, open_case

PROCESSES = 3
CASES_PER_PROCESS = 8
RETRY = 0.5  # HUB_LEADER_RETRY_SECONDS in these tests

pytestmark = pytest.mark.both_databases  # storage is the subject


def postgres_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("several hub processes share work through PostgreSQL (advisory lock, SKIP LOCKED); "
                    "SQLite's lock file is tested below")


def leader_gauge(url: str) -> float:
    return scrape(url)[("hub_leader", ())]


def job_runs(url: str, job: str | None = None) -> float:
    return sum(value for (name, labels), value in scrape(url).items()
               if name == "hub_scheduled_job_runs_total" and (job is None or ("job", job) in labels))


def delivered_to_narsa(url: str) -> float:
    return scrape(url).get(("hub_delivery_attempts_total", (("outcome", "delivered"), ("partner", "NARSA"))), 0)


def hub_leader_command(env: dict) -> str:
    """What `hub leader` prints (it names the leading process as host:pid)."""
    result = subprocess.run([str(Path(sys.executable).with_name("hub")), "leader"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return " ".join(result.stdout.split())


def unsealed_events(database_url: str) -> int:
    from hub.store.db import make_engine
    from hub.store.models import AuditEntry, Event
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return (connection.scalar(select(func.count()).select_from(Event).where(Event.chain_seq.is_(None)))
                    + connection.scalar(select(func.count()).select_from(AuditEntry)
                                        .where(AuditEntry.chain_seq.is_(None))))
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.empty_database  # the processes started together migrate it, taking turns
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_three_processes_share_deliveries_and_one_leads_the_jobs(tmp_path, pki_dir, database_url, narsa_port,
                                                                   start_sandbox):
    postgres_only(database_url)
    config = write_config(tmp_path / "config", narsa_url=f"http://127.0.0.1:{narsa_port}")
    env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_PKI_DIR": str(pki_dir), "HUB_CONFIG_DIR": str(config),
           "HUB_LEASE_SECONDS": "20", "HUB_DELIVERY_WORKERS": "2", "HUB_LEADER_RETRY_SECONDS": str(RETRY)}
    hubs = [HubProcess({**env, "HUB_VAR_DIR": str(tmp_path / f"var{i}")}, free_port(), tmp_path / f"hub{i}.log")
            for i in range(PROCESSES)]
    try:
        # started together on an empty schema: they take turns to migrate, then all serve
        with ThreadPoolExecutor(PROCESSES) as pool:
            list(pool.map(HubProcess.start, hubs))
        # exactly one leads, and says so in /metrics, /healthz and its log
        gauges = [leader_gauge(h.url) for h in hubs]
        assert sorted(gauges) == [0, 0, 1], gauges
        leader = hubs[gauges.index(1)]
        followers = [h for h in hubs if h is not leader]
        assert [httpx.get(f"{h.url}/healthz", timeout=5).json()["leader"] for h in hubs] == [g == 1 for g in gauges]
        assert "became leader" in leader.log.read_text()
        assert all("following: another process leads" in h.log.read_text() for h in followers)
        assert f":{leader.proc.pid} " in hub_leader_command(env)

        # callbacks go to a follower, so that killing the leader later leaves NARSA a hub to answer to
        for other in leader, *followers[:-1]:  # every hub's citizens are seeded in the one database (support.py)
            serve_tokens(other.url, database_url)
        mint = serve_tokens(followers[-1].url, database_url)
        admin = bearer(mint("administrator"))
        sandbox = start_sandbox("narsa", followers[-1].url)
        sandbox.behave(mode="slow", delay_seconds=0.2)  # deliveries overlap, so every process's workers take some

        references = []
        clients = [httpx.Client(base_url=h.url, timeout=15, headers=admin) for h in hubs]
        try:
            for i in range(CASES_PER_PROCESS * PROCESSES):  # spread across the three
                references.append(open_case(clients[i % PROCESSES], f"12/34567{i % 7}"))

            def all_final(client):
                statuses = [client.get(f"/api/v1/cases/{r}").json()["status"] for r in references]
                return all(s in FINAL for s in statuses) and statuses
            statuses = wait_for(lambda: all_final(clients[0]), 90, interval=0.3, what="every case final")
            assert "FAILED" not in statuses
            messages = clients[1].get("/api/v1/messages", params={"type": "LicenceAuthenticationRequest",
                                                                  "limit": 100}).json()
            assert messages["total"] == len(references)
            assert {m["state"] for m in messages["items"]} == {"DELIVERED"}
        finally:
            for c in clients:
                c.close()
        stats = sandbox.stats()
        per_process = [delivered_to_narsa(h.url) for h in hubs]
        print(f"\nseveral processes: {len(references)} cases through {PROCESSES} hubs; NARSA received "
              f"{stats['received']} distinct, {stats['duplicates']} duplicates, {stats['results_sent']} answers; "
              f"deliveries to NARSA per process {per_process}")
        assert stats["received"] == len(references) and len(sandbox.received()) == len(references)
        assert stats["duplicates"] == 0              # no message delivered twice
        assert stats["results_sent"] == len(references)
        assert sum(per_process) == len(references)   # each delivery done once, by one process
        assert sum(1 for n in per_process if n) >= 2, f"deliveries not shared: {per_process}"

        # only the leader runs the scheduled jobs (the sealer runs every second)
        before = [job_runs(h.url) for h in hubs]
        time.sleep(3)
        after = [job_runs(h.url) for h in hubs]
        print(f"scheduled job runs per process before/after 3 s: {before} -> {after} "
              f"(leader is hub {hubs.index(leader)})")
        assert after[hubs.index(leader)] - before[hubs.index(leader)] >= 2
        assert [after[hubs.index(f)] for f in followers] == [0, 0]

        # SIGKILL the leader: another takes over within seconds, and runs the jobs there
        killed_at = time.monotonic()
        leader.kill()

        def new_leader():
            leading = [h for h in followers if httpx.get(f"{h.url}/healthz", timeout=5).json()["leader"]]
            return leading
        [successor] = wait_for(new_leader, 10, interval=0.1, what="a new leader after SIGKILL")
        takeover = time.monotonic() - killed_at
        assert leader_gauge(successor.url) == 1
        assert [leader_gauge(h.url) for h in followers].count(1) == 1
        wait_for(lambda: job_runs(successor.url, "seal-evidence") >= 2, 5, interval=0.2,
                 what="the new leader to run the sealer")
        other = next(h for h in followers if h is not successor)
        assert job_runs(other.url) == 0
        assert "became leader" in successor.log.read_text()
        assert f":{successor.proc.pid} " in hub_leader_command(env)

        # the work goes on: a new case through the survivor that does not lead, sealed by the new leader
        with httpx.Client(base_url=other.url, timeout=15, headers=admin) as client:
            late = open_case(client, "12/345673")
            wait_for(lambda: client.get(f"/api/v1/cases/{late}").json()["status"] in FINAL, 30,
                     interval=0.3, what="a case after the leader died")
        wait_for(lambda: unsealed_events(database_url) == 0, 10, interval=0.3,
                 what="the new leader to seal every evidence row")
        print(f"leader killed: hub {hubs.index(successor)} leads after {takeover:.2f} s "
              f"(retry every {RETRY} s); its sealer ran {job_runs(successor.url, 'seal-evidence'):.0f} times, "
              f"the other follower's jobs {job_runs(other.url):.0f}; NARSA received {sandbox.stats()['received']} "
              f"distinct, {sandbox.stats()['duplicates']} duplicates")
        assert takeover < 5
        assert sandbox.stats()["received"] == len(references) + 1 and sandbox.stats()["duplicates"] == 0
    finally:
        for h in hubs:
            h.stop()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_leadership_is_lost_at_once_when_its_connection_drops(database_url):
    """An administrator (or a failover) ends the leader's database session: the jobs stop at the next
    check, and leadership comes back once the lock can be taken again."""
    postgres_only(database_url)
    import psycopg
    events = []
    leadership = Leadership(database_url, retry_seconds=0.2, on_gain=lambda: events.append("gain"),
                            on_loss=lambda: events.append("loss"))
    try:
        assert leadership.start() is True and events == ["gain"]
        name = f"hub-leader {process_name()}"
        with psycopg.connect(database_url, autocommit=True) as admin:
            ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                  (name,)).fetchall()
        assert ended == [(True,)]
        started = time.monotonic()
        wait_for(lambda: "loss" in events, 5, interval=0.05, what="leadership lost")
        lost_after = time.monotonic() - started
        wait_for(lambda: events == ["gain", "loss", "gain"], 5, interval=0.05, what="leadership regained")
        print(f"\nleader connection terminated: jobs stopped after {lost_after:.2f} s, events {events}")
        assert lost_after < 1
    finally:
        leadership.stop()
    assert events[-1] == "loss"


HOLD_LOCK = """
import sys, time
from hub.cluster.leader import Leadership
leadership = Leadership(sys.argv[1], retry_seconds=0.2, on_gain=lambda: None, on_loss=lambda: None)
print("leader" if leadership.start() else "follower", flush=True)
time.sleep(60)
"""


def test_sqlite_leader_lock_file_moves_to_another_process_when_the_holder_dies(tmp_path):
    """On SQLite the leader holds a flock next to the database; the OS releases it when the process dies."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, url], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              text=True)
    events = []
    leadership = Leadership(url, retry_seconds=0.2, on_gain=lambda: events.append("gain"),
                            on_loss=lambda: events.append("loss"))
    try:
        assert holder.stdout.readline().strip() == "leader"
        lock_file = tmp_path / "hub.leader.lock"
        assert lock_file.read_text().strip().endswith(f":{holder.pid}")  # the file names who leads
        assert current_leader(url).endswith(f":{holder.pid}")  # what `hub leader` prints
        assert leadership.start() is False and events == []
        holder.kill()
        holder.wait(10)
        started = time.monotonic()
        wait_for(lambda: events == ["gain"], 5, interval=0.05, what="this process to lead")
        took = time.monotonic() - started
        print(f"\nSQLite lock holder killed: this process leads after {took:.2f} s")
        assert lock_file.read_text().strip() == process_name() == current_leader(url)
    finally:
        leadership.stop()
        if holder.poll() is None:
            holder.kill()
    assert events == ["gain", "loss"] and lock_file.read_text() == "" and current_leader(url) is None


def test_serve_processes_share_one_port_and_a_dead_process_is_started_again(tmp_path, pki_dir):
    """`hub serve --processes 2`: two complete hubs behind one port (SO_REUSEPORT), one leading; a child
    killed is replaced; SIGTERM to the parent stops them all."""
    port = free_port()
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir),
           "HUB_CONFIG_DIR": str(write_config(tmp_path / "config")), "HUB_LEADER_RETRY_SECONDS": str(RETRY)}
    env.pop("HUB_DATABASE_URL", None)
    parent = subprocess.Popen([str(Path(sys.executable).with_name("hub")), "serve", "--processes", "2",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "serve.log", "ab"))

    def children() -> set[int]:
        out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout
        return {int(pid) for pid in out.split()}

    def answers() -> list[bool]:
        seen = []
        for _ in range(40):  # a new connection each time: the kernel spreads them over both processes
            try:
                seen.append(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["leader"])
            except httpx.HTTPError:
                pass
        return seen

    try:
        wait_for(lambda: len(children()) == 2 and len(answers()) == 40, 90, what="both hub processes to answer")
        wait_for(lambda: set(answers()) == {True, False}, 30, what="answers from the leader and the follower")
        first = children()
        victim = min(first)
        os.kill(victim, 9)
        wait_for(lambda: len(children()) == 2 and victim not in children(), 60, what="the killed process replaced")
        wait_for(lambda: set(answers()) == {True, False}, 60, what="a leader and a follower again")
        print(f"processes {sorted(first)}; killed {victim}; now {sorted(children())}")
    finally:
        parent.terminate()
        parent.wait(60)
    assert parent.returncode == 0
    assert not children()


def thread_policies(pid: int) -> set[int]:
    """The scheduling policies of a process's threads (os.SCHED_OTHER, os.SCHED_BATCH, ...)."""
    policies = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            policies.add(os.sched_getscheduler(int(task.name)))
        except ProcessLookupError:  # a thread gone meanwhile
            pass
    return policies


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_api_and_delivery_processes_of_their_own(tmp_path, pki_dir, narsa_port, start_sandbox):
    """`hub serve --processes 1 --delivery-processes 1`: the API process takes messages in and delivers
    nothing; the delivery process, woken by it after each commit (not by its poll, set to a minute here),
    delivers them at once; killed, it is started again and delivers what came meanwhile."""
    port = free_port()
    var = tmp_path / "var"
    env = {**os.environ, "HUB_VAR_DIR": str(var), "HUB_PKI_DIR": str(pki_dir), "HUB_POLL_INTERVAL_SECONDS": "60",
           "HUB_CONFIG_DIR": str(write_config(tmp_path / "config", narsa_url=f"http://127.0.0.1:{narsa_port}"))}
    env.pop("HUB_DATABASE_URL", None)
    parent = subprocess.Popen([str(Path(sys.executable).with_name("hub")), "serve", "--processes", "1",
                               "--delivery-processes", "1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "ab"))
    url = f"http://127.0.0.1:{port}"

    def roles() -> dict[str, int]:
        found = {}
        for pid in subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:  # gone meanwhile
                continue
            if b"--role" in command:  # (not a child exiting, whose command line is empty)
                found[command[command.index(b"--role") + 1].decode()] = int(pid)
        return found

    def delivered(references: list[str]) -> bool:
        return set(references) <= {m["correlation_id"] for m in client.get(
            "/api/v1/messages", params={"state": "DELIVERED", "limit": 100}).json()["items"]}

    try:
        wait_for(lambda: set(roles()) == {"api", "delivery"}, 60, what="an API and a delivery process")
        wait_for(lambda: answers(f"{url}/healthz"), 60, what="the API to answer")
        for role, pid in roles().items():  # HUB_CPU_SCHEDULING's default, inherited by every thread
            assert thread_policies(pid) == {os.SCHED_BATCH}, f"the {role} process's threads: {thread_policies(pid)}"
        mint = serve_tokens(url, f"sqlite:///{var / 'hub.sqlite'}")
        sandbox = start_sandbox("narsa", url)
        client = httpx.Client(base_url=url, timeout=15, headers={**bearer(mint("administrator")),
                                                                 "Content-Type": "application/xml"})
        first = [f"LIC-2026-{n:06d}" for n in range(1, 6)]
        started = time.monotonic()
        for reference in first:
            assert client.post("/api/v1/messages", content=licence_request(pki_dir, reference=reference)
                               ).status_code == 202
        wait_for(lambda: delivered(first), 20, interval=0.1, what="the first messages delivered")
        took = time.monotonic() - started
        assert took < 10, f"delivered after {took:.1f} s: the delivery process was not woken"
        assert delivered_to_narsa(url) == 0  # the API process delivered none of them
        victim = roles()["delivery"]
        os.kill(victim, 9)
        later = [f"LIC-2026-{n:06d}" for n in range(6, 9)]
        for reference in later:
            assert client.post("/api/v1/messages", content=licence_request(pki_dir, reference=reference)
                               ).status_code == 202
        wait_for(lambda: roles().get("delivery") not in (None, victim), 60, what="the delivery process replaced")
        wait_for(lambda: delivered(later), 60, interval=0.2, what="what came meanwhile delivered")
        assert sandbox.stats()["received"] == len(first) + len(later)
        print(f"\nAPI and delivery processes: {len(first)} messages delivered {took:.2f} s after the first was "
              f"posted (poll interval 60 s); the delivery process killed and replaced, {len(later)} more delivered")
        client.close()
    finally:
        parent.terminate()
        parent.wait(60)
    assert parent.returncode == 0 and not roles()
