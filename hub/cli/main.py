"""The `hub` command line."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from rich.markup import escape
from rich.table import Table

from hub.cli import add_all, close_hubs, console, open_hub, with_resend_hooks


def _settings(args):
    from hub.settings import Settings
    return Settings.from_env()


def cmd_serve(args) -> int:
    from hub import cpu
    from hub.service import HubService
    from hub.trust.tls import scheme
    settings = _settings(args)
    cpu.apply(settings.cpu_scheduling)  # first, in the main thread: every thread and child process inherits it
    child = args.reuse_port or args.role != "all"  # a child serves or delivers, never forks
    if args.delivery_processes is not None:
        settings = settings.model_copy(update={"delivery_processes": args.delivery_processes})
    processes = 1 if child else args.processes or settings.processes
    delivery = 0 if child else settings.delivery_processes
    if processes > 1 or delivery:
        from hub.cluster.processes import serve_processes
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        console.print(f"hub serving on {scheme(settings)}://{args.host}:{args.port} with {processes} processes"
                      + (f" and {delivery} delivery process{'es' if delivery > 1 else ''}" if delivery else ""))
        return serve_processes(processes, args.host, args.port, delivery=delivery)
    logging.getLogger("hub.cluster.leader").setLevel(logging.INFO)  # "became leader" / "lost leadership" are shown
    if args.role == "delivery":
        HubService(settings, role="delivery", delivery_slot=args.delivery_slot).deliver_forever()
        return 0
    service = HubService(settings, role=args.role)
    console.print(f"hub serving on {scheme(settings)}://{args.host}:{args.port} (database: {service.hub.engine.url.render_as_string()})")
    service.serve_forever(args.host, args.port, reuse_port=args.reuse_port)
    return 0


def cmd_leader(args) -> int:
    from hub.cluster.leader import current_leader
    settings = _settings(args)
    holder = current_leader(settings.database_url)
    if holder is None:
        console.print("no hub process leads on this database (none running, or one is taking over)")
        return 1
    console.print(f"leader: {escape(holder)} (runs the scheduled jobs; every process serves the API and delivers)")
    return 0


def _at_least_5(value: str) -> int:
    number = int(value)
    if number < 5:
        raise argparse.ArgumentTypeError(f"{value}: the demo needs at least 5 cases of each service")
    return number


def cmd_demo(args) -> int:
    from demo import run_demo  # the product's demo (sandboxes, hub, registry), a client of the hub
    return run_demo(cases=args.cases, serve=args.serve, console=console)


class _SampleHelp(argparse.Action):
    """`hub sample --help`: the help with the message types the installed apps give samples of (read only
    when asked: the apps are not imported to build the parser of every command)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from hub.service import app_samples
        parser.epilog = "message types:\n" + "\n".join(f"  {name}" for name in sorted(app_samples()))
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.print_help()
        parser.exit()


def cmd_sample(args) -> int:
    from hub.service import app_samples
    samples = app_samples()  # the installed apps contribute them
    if args.type not in samples:
        console.print(f"[red]no sample for {args.type!r}[/]; available: {', '.join(samples)}", highlight=False)
        return 2
    sys.stdout.flush()
    sys.stdout.buffer.write(samples[args.type](_settings(args)) + b"\n")  # UTF-8 bytes, whatever the terminal
    sys.stdout.buffer.flush()
    return 0


def cmd_messages_list(args) -> int:
    from sqlalchemy import select
    from hub.store.models import Message
    hub = open_hub()
    query = select(Message).order_by(Message.id.desc()).limit(args.limit)
    if args.state:
        query = query.where(Message.state == args.state.upper())
    table = Table("type", "sender", "recipient", "case", "state", "received")
    table.add_column("id", no_wrap=True, overflow="fold", min_width=12)  # always whole: operators copy it
    table.columns.insert(0, table.columns.pop())
    with hub.sessions() as session:
        for m in session.scalars(query):
            table.add_row(escape(m.message_id), m.type, m.sender, m.recipient, m.correlation_id, m.state,
                          f"{m.received_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)
    return 0


def cmd_messages_show(args) -> int:
    from hub.api.messages import find_message, message_detail
    from hub.errors import NotFound
    hub = open_hub()
    try:
        with hub.sessions() as session:
            detail = message_detail(find_message(session, args.id))
    except NotFound as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 1
    console.print_json(json.dumps(detail))
    return 0


def cmd_messages_resend(args) -> int:
    from hub.errors import InputError, NotFound
    from hub.evidence.audit import cli_actor
    from hub.delivery.operations import resend
    hub = with_resend_hooks(open_hub())
    try:
        count = resend(hub, args.id, actor=cli_actor())
    except (NotFound, InputError) as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 1
    console.print(f"{count} dead deliver{'y' if count == 1 else 'ies'} of {escape(args.id)} back in the outbox"
                  + ("" if count else " (nothing was dead)"))
    return 0


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def _not_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description="Consular exchange hub")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP API, delivery workers and scheduler")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--processes", type=_positive, default=None, metavar="N",
                   help="hub processes sharing the port, to use more than one core (default $HUB_PROCESSES or 1)")
    p.add_argument("--delivery-processes", type=_not_negative, default=None, metavar="M",
                   help="processes that only deliver, the N others then only serving the API (default "
                        "$HUB_DELIVERY_PROCESSES or 0: every process does both)")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a child of --processes
    p.add_argument("--role", choices=["all", "api", "delivery"], default="all", help=argparse.SUPPRESS)
    p.add_argument("--delivery-slot", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("leader", help="show which `hub serve` process on this database runs the scheduled jobs")
    p.set_defaults(func=cmd_leader)

    p = sub.add_parser("demo", help="start the six sandbox partners and the hub on SQLite and drive every "
                                    "consular service through")
    p.add_argument("--cases", type=_at_least_5, default=6, help="cases of each service (at least 5; default 6)")
    p.add_argument("--serve", action="store_true", help="keep the hub and sandboxes running afterwards")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sample", help="print a valid signed canonical message of TYPE (every type a party may "
                                      "send; `hub sample --help` lists them)", add_help=False)
    p.add_argument("-h", "--help", action=_SampleHelp, help="show this help, with the message types, and exit")
    p.add_argument("type", metavar="TYPE", help="a canonical message type, e.g. LicenceAuthenticationRequest")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("messages", help="inspect and resend stored messages")
    msub = p.add_subparsers(dest="action", required=True)
    q = msub.add_parser("list")
    q.add_argument("--state")
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=cmd_messages_list)
    q = msub.add_parser("show")
    q.add_argument("id")
    q.set_defaults(func=cmd_messages_show)
    q = msub.add_parser("resend")
    q.add_argument("id")
    q.set_defaults(func=cmd_messages_resend)
    add_all(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from hub.errors import ConfigError
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)  # unwrapped: paths stay copyable
        return 2
    finally:
        close_hubs()


if __name__ == "__main__":
    sys.exit(main())
