"""`python -m sandbox.load`: what one message costs the NARSA sandbox, and the REST connector sending it.

The benchmark (bench/) runs the sandbox beside the hub on the same cores, so the sandbox's own CPU is
part of what it measures; this tool isolates the two costs a delivery adds outside the hub's own work:
it starts `python -m sandbox narsa` as a process (results held back, as in the benchmark), signs N
DemandeAuthentification documents with the hub's key beforehand, then posts them through the hub's
RestConnector from `--concurrency` threads (the partner's in-flight limit), and reports, per round:

    sandbox CPU per message     user + system CPU of the sandbox process, from /proc, over the round
    connector CPU per message   CPU of this process over the round: the connector's sends, and the
                                thread pool driving them (the documents are signed beforehand)
    messages per second         wall clock

and the medians over the rounds. Every message must be answered 202 (a refusal stops the run).

With --in-process, the same documents go through the sandbox's ASGI app in this process, one at a
time, without sockets, server or connector: the sandbox's own CPU per message (checks, signature,
journal, request handling), with less of the machine's noise in it.

    python -m sandbox.load --messages 1000 --rounds 3 --concurrency 2

To compare with an earlier commit in one run, extract it beside this tree and run this same tool
from both, one after the other (each runs its own tree's sandbox and connector):

    mkdir /tmp/before && git archive <commit> | tar -x -C /tmp/before && cp sandbox/load.py /tmp/before/sandbox/
    here=$PWD; (cd /tmp/before && $here/.venv/bin/python -m sandbox.load); .venv/bin/python -m sandbox.load
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from connectors.base import Outbound
from connectors.rest.connector import RestConnector
from hub.trust.pki import ensure_dev_pki, load_certificate, load_key
from hub.trust.signing import Signer
from hub.xml.safe import parse_trusted, to_bytes

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT_ROOT / "mappings/narsa/cases/licence-request.to-narsa/authentic-with-cnie.expected.xml"
SAMPLE_ID = b"REGISTRY-LIC-2026-180436"
OPERATION = "demandes-authentification"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the sandbox exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the sandbox did not listen at {url} within {seconds:g} s")


def signed_requests(pki_dir: Path, count: int, prefix: str) -> list[Outbound]:
    """`count` hub-signed DemandeAuthentification documents with fresh message ids."""
    signer = Signer(load_key(str(pki_dir / "hub.key")), load_certificate(str(pki_dir / "hub.crt")))
    template = SAMPLE.read_bytes()
    messages = []
    for n in range(count):
        message_id = f"REGISTRY-LIC-{prefix}-{n:06d}"
        document = parse_trusted(template.replace(SAMPLE_ID, message_id.encode()))
        messages.append(Outbound(message_id, "LicenceAuthenticationRequest", to_bytes(signer.sign(document)),
                                 operation=OPERATION))
    return messages


def run_round(connector: RestConnector, messages: list[Outbound], sandbox_pid: int, concurrency: int) -> dict:
    sandbox_before, own_before, started = cpu_seconds(sandbox_pid), time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(connector.send, messages))
    elapsed = time.perf_counter() - started
    sandbox_cpu, own_cpu = cpu_seconds(sandbox_pid) - sandbox_before, time.process_time() - own_before
    assert all(result.detail == "HTTP 202" for result in results), {result.detail for result in results}
    return {"sandbox_ms": sandbox_cpu / len(messages) * 1e3, "connector_ms": own_cpu / len(messages) * 1e3,
            "per_second": len(messages) / elapsed}


def in_process_rounds(messages: int, rounds: int) -> list[dict]:
    """Rounds of the NARSA app driven in this process (ASGI calls, no sockets); CPU per message."""
    from sandbox import common, narsa

    with tempfile.TemporaryDirectory(prefix="sandbox-load-") as folder:
        pki_dir = Path(folder) / "pki"
        ensure_dev_pki(pki_dir, ["hub", "REGISTRY", "NARSA"])
        sandbox = narsa.NarsaSandbox(pki_dir=pki_dir, data_dir=Path(folder) / "data", hub_url="http://127.0.0.1:9",
                                     answer_delay=86400)
        app = narsa.create_app(sandbox)
        front = getattr(common, "DocumentFront", None)  # what run_app serves (a tree before it: the app itself)
        app = front(app) if front is not None else app

        async def post(body: bytes) -> None:
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": narsa.PATH, "raw_path": narsa.PATH.encode(), "root_path": "",
                     "query_string": b"", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "state": {},
                     "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/xml"),
                                 (b"content-length", str(len(body)).encode())]}
            chunks = [{"type": "http.request", "body": body, "more_body": False}]
            statuses = []

            async def receive():
                if chunks:
                    return chunks.pop()
                await asyncio.sleep(3600)  # a client that says nothing more

            async def send(message):
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
            await app(scope, receive, send)
            assert statuses == [202], statuses

        async def run() -> list[dict]:
            sandbox.start()
            try:
                await post(signed_requests(pki_dir, 1, "warm")[0].body)
                results = []
                for number in range(1, rounds + 1):
                    bodies = [m.body for m in signed_requests(pki_dir, messages, f"R{number}")]
                    started = time.process_time()
                    for body in bodies:
                        await post(body)
                    results.append({"sandbox_ms": (time.process_time() - started) / messages * 1e3})
                    print(f"round {number}: sandbox in process {results[-1]['sandbox_ms']:.2f} ms CPU/message",
                          flush=True)
                return results
            finally:
                sandbox.stop()
        return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, medians reported (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="sends in flight, as HUB_PARTNER_CONCURRENCY (default %(default)s)")
    parser.add_argument("--in-process", action="store_true",
                        help="drive the sandbox's ASGI app in this process instead (its own CPU only)")
    args = parser.parse_args(argv)
    if args.in_process:
        rounds = in_process_rounds(args.messages, args.rounds)
        median = statistics.median(r["sandbox_ms"] for r in rounds)
        print(f"median of {len(rounds)} x {args.messages} messages, in process: sandbox {median:.2f} ms CPU/message")
        return 0
    with tempfile.TemporaryDirectory(prefix="sandbox-load-") as folder:
        pki_dir, data_dir, port = Path(folder) / "pki", Path(folder) / "data", free_port()
        ensure_dev_pki(pki_dir, ["hub", "REGISTRY", "NARSA"])
        url = f"http://127.0.0.1:{port}"
        sandbox = subprocess.Popen([sys.executable, "-m", "sandbox", "narsa", "--port", str(port),
                                    "--pki-dir", str(pki_dir), "--data-dir", str(data_dir),
                                    "--hub-url", "http://127.0.0.1:9", "--answer-delay", "86400"],
                                   cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
        connector = RestConnector("NARSA", RestConnector.Config(endpoint=f"{url}/narsa/v1"), timeout_seconds=10,
                                  settings=SimpleNamespace(partner_concurrency=args.concurrency))
        try:
            wait_until_listening(url, sandbox)
            connector.open()
            run_round(connector, signed_requests(pki_dir, 50, "warm"), sandbox.pid, args.concurrency)
            rounds = []
            for number in range(1, args.rounds + 1):
                figures = run_round(connector, signed_requests(pki_dir, args.messages, f"R{number}"), sandbox.pid,
                                    args.concurrency)
                rounds.append(figures)
                print(f"round {number}: sandbox {figures['sandbox_ms']:.2f} ms CPU/message, connector "
                      f"{figures['connector_ms']:.3f} ms CPU/message, {figures['per_second']:.0f} messages/s",
                      flush=True)
        finally:
            connector.close()
            sandbox.terminate()
            sandbox.wait(10)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"median of {len(rounds)} x {args.messages} messages, {args.concurrency} in flight: "
          f"sandbox {median['sandbox_ms']:.2f} ms CPU/message, connector {median['connector_ms']:.3f} ms "
          f"CPU/message, {median['per_second']:.0f} messages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
