"""Start the six sandbox partners and the hub (SQLite under var/demo/), run every service's scenario,
wait until every case is final, then print and write (`var/demo-report.json`) what happened."""
from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.markup import escape

from demo.context import POSTS, DemoContext, register_citizens
from hub.evidence.chains import verify_chains
from hub.settings import Settings

# partner -> (sandbox name, preferred port, what it speaks); CDG's port is SFTP, its HTTP control port is apart
SANDBOXES = {
    "NARSA": ("narsa", 8711, "REST"),
    "DGSN": ("dgsn", 8712, "SOAP"),
    "JUSTICE": ("justice", 8713, "SOAP"),
    "CDG": ("cdg", 8722, "SFTP"),
    "SANTE": ("sante", 8715, "REST"),
    "ETAT_CIVIL": ("etat_civil", 8716, "REST"),
}
CDG_CONTROL_PORT = 8714
CITIZENS = 40


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


class DemoTokens:
    """The demo's API tokens, made in its own database (recorded in the audit log like `hub tokens create`)."""

    ACTOR = "demo"

    def __init__(self, hub):
        self.hub = hub

    def mint(self, role: str, *, post: str | None = None, partner: str | None = None) -> str:
        from hub.evidence import audit
        from hub.access.tokens import create_token
        name = f"demo {role.replace('_', ' ')}" + (f" {post or partner}" if post or partner else "")
        with self.hub.sessions.begin() as session:
            token, secret = create_token(session, role=role, name=name, created_by=self.ACTOR, post_code=post,
                                         partner=partner, expires_in_days=1)
            audit.record(session, actor=self.ACTOR, action="TOKEN_CREATED", subject=token.token_id,
                         detail=f"{role}{' ' + (post or partner) if post or partner else ''} '{name}'")
        return secret

    def client(self, hub_url: str, role: str, post: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=hub_url, timeout=60,
                            headers={"Authorization": f"Bearer {self.mint(role, post=post)}"})


# The console's people in the demo: (role, username, name); the consular agent is at the demo's first post.
LOGINS = [("supervisor", "supervisor", "Amina El Idrissi"), ("integration", "integration", "Yassine Berrada"),
          ("consular_agent", "agent.{city}", "Karim Benali"), ("administrator", "admin", "Salma Tazi")]


def create_logins(hub, post: str) -> list[dict]:
    """One console account per role, each with a random password of its own (made for this demo's database
    and shown once, as `hub users create` would be used in earnest); recorded in the audit log."""
    from hub.access.accounts import create_user
    from hub.evidence import audit
    made = []
    with hub.sessions.begin() as session:
        for role, username, name in LOGINS:
            username = username.format(city=post.split("-", 1)[-1].lower())
            password = secrets.token_urlsafe(12)
            user = create_user(session, username=username, name=name, role=role, password=password,
                               created_by=DemoTokens.ACTOR, post_code=post if role == "consular_agent" else None)
            audit.record(session, actor=DemoTokens.ACTOR, action="USER_CREATED", subject=user.username,
                         detail=f"{role}{' ' + post if user.post_code else ''} '{name}'")
            made.append({"role": role, "username": user.username, "password": password, "post": user.post_code})
    return made


class SandboxProcess:
    def __init__(self, partner: str, port: int, control_port: int, settings: Settings, hub_url: str,
                 token: str | None = None):
        self.partner, self.port = partner, port
        self.url = f"http://127.0.0.1:{control_port}"
        name = SANDBOXES[partner][0]
        args = [sys.executable, "-m", "sandbox", name, "--port", str(port), "--hub-url", hub_url,
                "--pki-dir", str(settings.pki_dir), "--data-dir", str(settings.var_dir / "sandbox")]
        if partner == "CDG":
            args += ["--control-port", str(control_port)]
        self.log_path = settings.var_dir / "demo" / f"sandbox-{name}.log"
        # its partner token for callbacks to the hub's /api: in the environment, never on the command line
        env = {**settings.environment, **({"HUB_PARTNER_TOKEN": token} if token else {})}
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, env=env)

    def wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.partner} sandbox exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the {self.partner} sandbox did not start within 30 s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_demo(*, cases: int, serve: bool, console: Console) -> int:
    from hub.trust import pki
    from demo import scenarios
    from hub.service import HubService

    base = Settings.from_env()
    demo_dir = base.var_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    shutil.rmtree(base.var_dir / "sandbox", ignore_errors=True)
    demo_dir.mkdir(parents=True)
    hub_port = _free_port(8700)
    hub_url = f"http://127.0.0.1:{hub_port}"
    ports = {partner: _free_port(port) for partner, (_, port, _) in SANDBOXES.items()}
    environment = {**base.environment, **{f"HUB_{p}_URL": f"http://127.0.0.1:{port}" for p, port in ports.items()},
                   "HUB_CDG_SFTP_PORT": str(ports["CDG"])}
    settings = Settings.from_env(database_url=f"sqlite:///{demo_dir / 'hub.sqlite'}", environment=environment,
                                 evidence_checkpoint_file=demo_dir / "checkpoints.log")  # new with its database
    modules = scenarios.load()
    started = time.perf_counter()
    console.print(f"[bold]Consular exchange hub — demo[/]: {len(modules)} services, {cases} cases each "
                  f"(life certificates: one batch of at least 100)")
    console.print(f"  database  {settings.database_url}\n  keys      {settings.pki_dir}")
    # The development keys first (what `hub dev init` makes), in this process: the sandboxes then find them
    # instead of racing to create them, and the hub, which never makes a key, finds its own.
    pki.init_dev_keys(settings.pki_dir, ["REGISTRY", *SANDBOXES], hub_algorithm=settings.signing_algorithm)
    service = HubService(settings)
    tokens = DemoTokens(service.hub)
    sandboxes: list[SandboxProcess] = []
    clients: list[httpx.Client] = []
    try:
        for partner, (name, _, transport) in SANDBOXES.items():
            control = _free_port(CDG_CONTROL_PORT) if partner == "CDG" else ports[partner]
            sandboxes.append(SandboxProcess(partner, ports[partner], control, settings, hub_url,
                                            token=tokens.mint("partner", partner=partner)))
        deadline = time.monotonic() + 30
        for box in sandboxes:
            box.wait_healthy(deadline)
            console.print(f"  {box.partner:<10} sandbox {SANDBOXES[box.partner][2]:<4} on 127.0.0.1:{box.port}")
        service.serve_in_thread("127.0.0.1", hub_port)
        console.print(f"  hub        {hub_url} (API docs at {hub_url}/docs)\n")
        def new_client(role: str, post: str | None = None) -> httpx.Client:
            clients.append(tokens.client(hub_url, role, post))
            return clients[-1]

        supervisor = new_client("supervisor")
        ctx = DemoContext(hub_url=hub_url, sandbox_urls={b.partner: b.url for b in sandboxes},
                          posts=_available_posts(supervisor), staff=new_client("integration"),
                          new_client=new_client)
        report = _drive(ctx, modules, cases, console, service, supervisor)
        report["duration_seconds"] = round(time.perf_counter() - started, 2)
        report["messages_per_second"] = round(report["messages_total"] / report["duration_seconds"], 1)
        report["sandbox_signatures"] = _check_sandbox_signatures(settings, service.hub.signer.certificate)
        service.seal_now()  # what the sealer has not reached yet (verify never seals)
        service.checkpoint_now()
        evidence = verify_chains(service.hub)  # walks every chain, compared with the checkpoint just written
        report["evidence"] = {"verified": evidence.ok, "summary": evidence.lines()}
        _print_summary(console, report)
        report_path = base.var_dir / "demo-report.json"
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        console.print(f"\nreport written to {report_path}")
        console.print(f"check the evidence yourself: HUB_DATABASE_URL={settings.database_url} "
                      f"HUB_EVIDENCE_CHECKPOINT_FILE={settings.evidence_checkpoint_file} "
                      f"{sys.executable.rsplit('/', 1)[0]}/hub evidence verify  (or: evidence export CASE)",
                      highlight=False, soft_wrap=True)
        ok = (report["all_cases_final"] and report["sandbox_signatures"]["failed"] == 0 and not report["dead_letters"]
              and not report["messages_in_flight"] and report["all_partners_used"] and evidence.ok)
        if not serve:
            console.print(f"to open the console (/monitor/): {sys.executable.rsplit('/', 1)[0]}/hub demo --serve "
                          "keeps everything running and prints a login per role", highlight=False, soft_wrap=True)
        if serve:
            first = next((c["registration_id"] for c in ctx.citizens if c["post_code"] == ctx.posts[0]), None)
            _print_serving(console, hub_url, create_logins(service.hub, ctx.posts[0]), tokens.mint("administrator"),
                           sandboxes, citizen=first)
            signal.signal(signal.SIGTERM, _stop)  # stopped by a process manager: as Ctrl-C, the sandboxes too
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        for c in clients:
            c.close()
        service.stop()
        for box in sandboxes:
            box.stop()


def _stop(signum, frame):
    raise KeyboardInterrupt


def _print_serving(console: Console, hub_url: str, logins: list[dict], admin_token: str,
                   sandboxes: list[SandboxProcess], citizen: str | None = None) -> None:
    console.print(f"\n[bold]still serving[/] (Ctrl-C stops)\n\n"
                  f"  the console   {hub_url}/monitor/   sign in as one of (made for this demo, shown once):",
                  highlight=False, soft_wrap=True)
    for login in logins:
        role = login["role"].replace("_", " ") + (f" ({login['post']})" if login["post"] else "")
        console.print(f"      {role:<28} {login['username']:<14} {login['password']}", highlight=False,
                      soft_wrap=True)
    console.print(f"\n  the API       {hub_url}/docs   \"Authorize\" with this administrator token (one day):\n"
                  f"      {admin_token}\n\n  sandboxes     " + ", ".join(f"{b.partner} {b.url}" for b in sandboxes),
                  highlight=False, soft_wrap=True)
    if citizen:
        console.print(f"\n  a document    {hub_url}/monitor/citizens/{citizen}/certificate.pdf?lang=ar   "
                      f"the registration certificate of {citizen} (signed in as the consular agent; lang=fr in "
                      f"French), checked by its code at {hub_url}/verify", highlight=False, soft_wrap=True)


def _available_posts(api: httpx.Client) -> list[str]:
    known = {p["code"] for p in api.get("/api/v1/posts").raise_for_status().json()}
    return [p for p in POSTS if p in known] or sorted(known)[:8]


def _drive(ctx: DemoContext, modules: list, cases: int, console: Console, service, api: httpx.Client) -> dict:
    """Every scenario started, then advanced until every case is final; `api` is a supervisor's client."""
    progress = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    with progress:
        task = progress.add_task("citizens registered", total=CITIZENS)
        register_citizens(api, ctx, CITIZENS, on_each=lambda: progress.advance(task))
        tasks = {m.SERVICE: progress.add_task(f"{m.SERVICE.lower().replace('_', ' ')}", total=None)
                 for m in modules}
        for module in modules:
            module.start(api, ctx, cases)
        deadline = time.monotonic() + max(120, cases * 10)
        while time.monotonic() < deadline:
            for module in modules:
                if hasattr(module, "advance"):
                    module.advance(api, ctx)
            done_all = True
            services = _services(api)
            for module in modules:
                cases, finals = services[module.SERVICE]["cases"], services[module.SERVICE]["final_statuses"]
                total, done = sum(cases.values()), sum(n for status, n in cases.items() if status in finals)
                progress.update(tasks[module.SERVICE], total=total, completed=done)
                done_all &= bool(total) and done == total
            in_flight = api.get("/api/v1/messages", params={"state": "ACCEPTED", "limit": 1}).json()["total"]
            if done_all and not in_flight:  # every case final, and nothing left in the outbox
                break
            time.sleep(0.5)
    return _report(service, api)


def _services(api: httpx.Client) -> dict[str, dict]:
    """The registry's services as its API lists them: service -> {final_statuses, cases: {status: count}}."""
    return {s["service"]: s for s in api.get("/api/v1/services").raise_for_status().json()}


def _report(service, api: httpx.Client) -> dict:
    from sqlalchemy import func, select

    from hub.store.models import Delivery, Message

    services = _services(api)
    with service.hub.sessions() as session:
        deliveries = session.execute(select(Delivery.partner, Delivery.state, func.count())
                                     .group_by(Delivery.partner, Delivery.state)).all()
        inbound = session.execute(select(Message.sender, Message.state, func.count())
                                  .where(Message.sender != "REGISTRY").group_by(Message.sender, Message.state)).all()
        dead = session.execute(select(Message.message_id, Delivery.partner, Delivery.last_error)
                               .join(Delivery, Delivery.message_pk == Message.id)
                               .where(Delivery.state == "DEAD")).all()
        message_count = session.scalar(select(func.count()).select_from(Message))
        in_flight = session.scalar(select(func.count()).select_from(Message).where(Message.state == "ACCEPTED"))
    transports = {code: party.transport.upper() for code, party in service.hub.config.parties.items()}
    by_service: dict = {}
    total = finals = 0
    for svc, entry in services.items():
        for status, n in entry["cases"].items():
            by_service.setdefault(svc, {})[status] = n
            total += n
            finals += n if status in entry["final_statuses"] else 0
    by_partner: dict = {}
    for partner, state, n in deliveries:
        entry = by_partner.setdefault(partner, {"transport": transports[partner], "outbound": {}, "inbound": {}})
        entry["outbound"][state] = n
    for sender, state, n in inbound:
        entry = by_partner.setdefault(sender, {"transport": transports.get(sender, "?"), "outbound": {}, "inbound": {}})
        entry["inbound"][state] = n
    partners_used = {p for p, e in by_partner.items() if p != "REGISTRY" and sum(e["outbound"].values()) +
                     sum(e["inbound"].values())}
    expected = {p for p, t in transports.items() if t != "LOCAL"}
    return {
        "database": service.hub.settings.database_url,
        "cases_total": total,
        "all_cases_final": total > 0 and finals == total,
        "cases_by_service_and_status": {svc: dict(sorted(st.items())) for svc, st in sorted(by_service.items())},
        "messages_total": message_count,
        "messages_in_flight": in_flight,
        "messages_by_partner": dict(sorted(by_partner.items())),
        "transports_used": sorted({transports[p] for p in partners_used}),
        "all_partners_used": partners_used == expected,
        "dead_letters": [{"message_id": m, "partner": p, "reason": r} for m, p, r in dead],
    }


def _check_sandbox_signatures(settings: Settings, hub_certificate) -> dict:
    """Every document a sandbox received from the hub must verify against the hub's certificate."""
    from hub.trust.signing import verify
    from hub.xml.safe import parse_trusted

    received = sorted((settings.var_dir / "sandbox").glob("*/received/*.xml"))
    failed = []
    for path in received:
        try:
            verify(parse_trusted(path.read_bytes()), hub_certificate, signer_name="hub")
        except Exception as exc:  # report every failure, whatever it is
            failed.append(f"{path.parent.parent.name}/{path.name}: {exc}")
    by_partner = Counter(p.parent.parent.name for p in received)
    return {"checked": len(received), "failed": len(failed), "failures": failed[:10], "by_partner": dict(by_partner),
            "certificate": str(settings.pki_dir / "hub.crt")}


def _print_summary(console: Console, report: dict) -> None:
    table = Table(title="Cases by service and final status")
    for col in ("service", "status", "cases"):
        table.add_column(col, justify="right" if col == "cases" else "left")
    for svc, statuses in report["cases_by_service_and_status"].items():
        for status, n in statuses.items():
            table.add_row(svc, status, str(n))
    console.print(table)
    table = Table(title="Messages by partner, transport and state")
    for col in ("partner", "transport", "direction", "state", "messages"):
        table.add_column(col, justify="right" if col == "messages" else "left")
    for partner, info in report["messages_by_partner"].items():
        for direction in ("outbound", "inbound"):
            for state, n in sorted(info[direction].items()):
                table.add_row(partner, info["transport"], "hub → party" if direction == "outbound" else "party → hub",
                              state, str(n))
    console.print(table)
    sig = report["sandbox_signatures"]
    console.print(f"sandboxes received {sig['checked']} documents from the hub; {sig['checked'] - sig['failed']} verify "
                  f"against {sig['certificate']}" + (f", [red]{sig['failed']} do not[/]" if sig["failed"] else ""))
    for line in report["evidence"]["summary"]:
        console.print(f"evidence {escape(line)}" if report["evidence"]["verified"] else f"[red]evidence {escape(line)}[/]")
    if report["messages_in_flight"]:
        console.print(f"[red]{report['messages_in_flight']} messages still waiting for delivery[/]")
    for dead in report["dead_letters"]:
        console.print(f"[red]dead letter[/] {dead['message_id']} to {dead['partner']}: {dead['reason']}")
    console.print(f"transports used: {', '.join(report['transports_used'])}; "
                  + ("every partner used" if report["all_partners_used"] else "[red]some partner unused[/]"))
    console.print(f"{report['cases_total']} cases, {report['messages_total']} messages in "
                  f"{report['duration_seconds']} s ({report['messages_per_second']} messages/s); "
                  + ("[green]every case reached a final state[/]" if report["all_cases_final"]
                     else "[red]some cases did not reach a final state[/]"))
