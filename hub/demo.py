"""`hub demo`: the sandbox and the hub on SQLite, consular cases driven through the whole flow.

A consular application registers citizens and opens driving-licence authentication cases over the
hub's HTTP API; the registry sends each request through the hub to the NARSA sandbox over REST;
NARSA acknowledges, then calls back with its verdict; the hub verifies, maps and correlates the
answer; the case reaches its final state. The summary and `var/demo-report.json` show the result.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from hub.settings import Settings

# (given Latin, family Latin, given Arabic, family Arabic, sex)
PEOPLE = [
    ("Youssef", "El Amrani", "يوسف", "العمراني", "M"), ("Fatima Zahra", "Benali", "فاطمة الزهراء", "بنعلي", "F"),
    ("Mohamed", "Ouazzani", "محمد", "الوزاني", "M"), ("Khadija", "Alaoui", "خديجة", "العلوي", "F"),
    ("Rachid", "Bennani", "رشيد", "بناني", "M"), ("Salma", "Tazi", "سلمى", "التازي", "F"),
    ("Hamza", "Chraibi", "حمزة", "الشرايبي", "M"), ("Imane", "Berrada", "إيمان", "برادة", "F"),
    ("Omar", "Idrissi", "عمر", "الإدريسي", "M"), ("Nadia", "Fassi Fihri", "نادية", "الفاسي الفهري", "F"),
    ("Karim", "Lahlou", "كريم", "لحلو", "M"), ("Samira", "Ait Ouahmane", "سميرة", "آيت واحمان", "F"),
]
POSTS = ["FR-PARIS", "ES-MADRID", "IT-MILANO", "BE-BRUX", "NL-AMSTER", "DE-DUSSEL", "FR-LYON", "ES-BARCEL"]


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def _start_sandbox(settings: Settings, port: int, hub_url: str) -> subprocess.Popen:
    log = open(settings.var_dir / "sandbox.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "narsa", "--port", str(port), "--hub-url", hub_url,
                             "--pki-dir", str(settings.pki_dir), "--data-dir", str(settings.var_dir / "sandbox")],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the NARSA sandbox exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the NARSA sandbox did not start within 30 s")


def _licence_number(i: int) -> str:
    # NARSA's sandbox decides by the last digit: 0-6 authentic, 7-8 discrepancy, 9 not authentic.
    return f"{(i % 60) + 1}/{100000 + i * 37:06d}"[:-1] + str(i % 10)


def _available_posts(client: httpx.Client) -> list[str]:
    known = {p["code"] for p in client.get("/api/v1/posts").raise_for_status().json()}
    return [p for p in POSTS if p in known] or sorted(known)[:8]


def run_demo(*, cases: int, serve: bool, console: Console) -> int:
    from hub.models import Delivery, Message
    from hub.server import HubService
    from hub.signing import verify
    from hub.xmlsafe import parse_trusted
    from registry.models import Case
    from registry.statuses import final_statuses, LICENCE_AUTHENTICATION

    base = Settings.from_env()
    demo_dir = base.var_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    shutil.rmtree(base.var_dir / "sandbox", ignore_errors=True)
    demo_dir.mkdir(parents=True)
    hub_port, narsa_port = _free_port(8700), _free_port(8711)
    hub_url = f"http://127.0.0.1:{hub_port}"
    settings = Settings.from_env(database_url=f"sqlite:///{demo_dir / 'hub.sqlite'}",
                                 environment={**os.environ, "HUB_NARSA_URL": f"http://127.0.0.1:{narsa_port}"})
    started = time.perf_counter()
    console.print(f"[bold]Consular exchange hub — demo[/] ({cases} driving-licence authentication cases)")
    console.print(f"  database  {settings.database_url}\n  keys      {settings.pki_dir}")
    service = HubService(settings)
    sandbox = _start_sandbox(settings, narsa_port, hub_url)
    console.print(f"  NARSA     sandbox on http://127.0.0.1:{narsa_port} (REST, own XML format)")
    service.serve_in_thread("127.0.0.1", hub_port)
    console.print(f"  hub       {hub_url} (API docs at {hub_url}/docs)\n")
    try:
        with httpx.Client(base_url=hub_url, timeout=30) as client:
            posts = _available_posts(client)
            references = []
            progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console)
            with progress:
                submit = progress.add_task("cases opened", total=cases)
                for i in range(cases):
                    given, family, given_ar, family_ar, sex = PEOPLE[i % len(PEOPLE)]
                    citizen = client.post("/api/v1/citizens", json={
                        "post_code": posts[i % len(posts)], "given_name_latin": given, "family_name_latin": family,
                        "given_name_arabic": given_ar, "family_name_arabic": family_ar,
                        "birth_date": f"{1960 + i % 40}-{1 + i % 12:02d}-{1 + i % 28:02d}", "sex": sex,
                        "cnie": f"{'BK' if i % 2 else 'J'}{100000 + i:06d}", "country": posts[i % len(posts)][:2],
                        "city": "—"}).raise_for_status().json()
                    case = client.post("/api/v1/cases", json={
                        "registration_id": citizen["registration_id"],
                        "licence": {"number": _licence_number(i), "categories": ["B"] if i % 3 else ["A", "B"],
                                    "issue_date": f"{2000 + i % 24}-06-15"}}).raise_for_status().json()
                    references.append(case["reference"])
                    progress.advance(submit)
                finals = final_statuses(LICENCE_AUTHENTICATION)
                done_task = progress.add_task("cases in a final state", total=cases)
                deadline = time.monotonic() + max(60, cases * 2)
                while time.monotonic() < deadline:
                    statuses = [c["status"] for c in client.get("/api/v1/cases", params={"limit": 500}).json()]
                    done = sum(1 for s in statuses if s in finals)
                    progress.update(done_task, completed=done)
                    if done >= cases:
                        break
                    time.sleep(0.2)
        elapsed = time.perf_counter() - started
        report = _report(service, settings, elapsed, Message, Delivery, Case, func, select)
        report["sandbox_signatures"] = _check_sandbox_signatures(settings, service.hub.signer.certificate,
                                                                 verify, parse_trusted)
        _print_summary(console, report)
        report_path = base.var_dir / "demo-report.json"
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        console.print(f"\nreport written to {report_path}")
        ok = report["all_cases_final"] and report["sandbox_signatures"]["failed"] == 0
        if serve:
            console.print(f"\nstill serving: hub {hub_url}, NARSA sandbox http://127.0.0.1:{narsa_port}. Ctrl-C stops.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        service.stop()
        sandbox.terminate()
        try:
            sandbox.wait(10)
        except subprocess.TimeoutExpired:
            sandbox.kill()


def _report(service, settings, elapsed, Message, Delivery, Case, func, select) -> dict:
    from registry.statuses import final_statuses
    with service.hub.sessions() as session:
        cases = Counter()
        finals_total, total = 0, 0
        for svc, status, n in session.execute(select(Case.service, Case.status, func.count())
                                              .group_by(Case.service, Case.status)):
            cases[(svc, status)] = n
            total += n
            finals_total += n if status in final_statuses(svc) else 0
        deliveries = session.execute(select(Delivery.partner, Delivery.state, func.count())
                                     .group_by(Delivery.partner, Delivery.state)).all()
        messages = session.execute(select(Message.sender, Message.recipient, Message.state, func.count())
                                   .group_by(Message.sender, Message.recipient, Message.state)).all()
        message_count = session.scalar(select(func.count()).select_from(Message))
    transports = {code: party.transport.upper() for code, party in service.hub.config.parties.items()}
    by_partner: dict = {}
    for partner, state, n in deliveries:
        by_partner.setdefault(partner, {"transport": transports[partner], "outbound": {}, "inbound": {}})
        by_partner[partner]["outbound"][state] = n
    for sender, _recipient, state, n in messages:
        if sender in by_partner or sender != "REGISTRY":
            by_partner.setdefault(sender, {"transport": transports.get(sender, "?"), "outbound": {}, "inbound": {}})
            by_partner[sender]["inbound"][state] = by_partner[sender]["inbound"].get(state, 0) + n
    return {
        "duration_seconds": round(elapsed, 2),
        "database": settings.database_url,
        "cases_total": total,
        "all_cases_final": total > 0 and finals_total == total,
        "cases_by_service_and_status": {svc: {st: n for (s2, st), n in cases.items() if s2 == svc}
                                        for svc in sorted({s for s, _ in cases})},
        "messages_total": message_count,
        "messages_per_second": round(message_count / elapsed, 1) if elapsed else None,
        "messages_by_partner": by_partner,
    }


def _check_sandbox_signatures(settings, hub_certificate, verify, parse_trusted) -> dict:
    """Every message the sandbox received must verify against the hub's certificate."""
    received = sorted((settings.var_dir / "sandbox").glob("*/received/*.xml"))
    received = [p for p in received if not p.name.endswith(".ack.xml")]
    failed = []
    for path in received:
        try:
            verify(parse_trusted(path.read_bytes()), hub_certificate, signer_name="hub")
        except Exception as exc:  # report every failure, whatever it is
            failed.append(f"{path.name}: {exc}")
    return {"checked": len(received), "failed": len(failed), "failures": failed[:10],
            "certificate": str(settings.pki_dir / "hub.crt")}


def _print_summary(console: Console, report: dict) -> None:
    table = Table(title="Cases by service and final status")
    table.add_column("service")
    table.add_column("status")
    table.add_column("cases", justify="right")
    for svc, statuses in report["cases_by_service_and_status"].items():
        for status, n in sorted(statuses.items()):
            table.add_row(svc, status, str(n))
    console.print(table)
    table = Table(title="Messages by party, transport and state")
    for col in ("party", "transport", "direction", "state", "messages"):
        table.add_column(col, justify="right" if col == "messages" else "left")
    for partner, info in report["messages_by_partner"].items():
        for direction in ("outbound", "inbound"):
            for state, n in sorted(info[direction].items()):
                table.add_row(partner, info["transport"], "hub → party" if direction == "outbound" else
                              "party → hub", state, str(n))
    console.print(table)
    sig = report["sandbox_signatures"]
    console.print(f"sandbox received {sig['checked']} messages; {sig['checked'] - sig['failed']} verify against "
                  f"{sig['certificate']}" + (f", [red]{sig['failed']} do not[/]" if sig["failed"] else ""))
    console.print(f"{report['cases_total']} cases, {report['messages_total']} messages in "
                  f"{report['duration_seconds']} s ({report['messages_per_second']} messages/s); "
                  + ("[green]every case reached a final state[/]" if report["all_cases_final"]
                     else "[red]some cases did not reach a final state[/]"))
