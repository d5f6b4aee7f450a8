"""Command line: `python -m sandbox narsa [options]` runs the NARSA sandbox (see sandbox/narsa.py).

Relative --pki-dir and --data-dir are taken from the project root (the folder holding sandbox/),
whatever the current directory.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _project_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _positive_port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


def _non_negative(value: str) -> float:
    seconds = float(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Run a sandbox partner on loopback.")
    partners = parser.add_subparsers(dest="partner", required=True, metavar="PARTNER")
    narsa = partners.add_parser("narsa", help="NARSA: driving-licence authentication (REST/XML, async callback)",
                                description="NARSA sandbox: authenticates driving licences and calls the hub back.")
    narsa.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    narsa.add_argument("--port", type=_positive_port, default=8711, help="port to listen on (default %(default)s)")
    narsa.add_argument("--hub-url", default="http://127.0.0.1:8700",
                       help="the hub's base URL for callbacks (default %(default)s)")
    narsa.add_argument("--pki-dir", type=_project_path, default="var/pki",
                       help="development PKI folder, created if missing (default %(default)s)")
    narsa.add_argument("--data-dir", type=_project_path, default="var/sandbox",
                       help="where received requests and callbacks are kept (default %(default)s)")
    narsa.add_argument("--answer-delay", type=_non_negative, default=0.2,
                       help="seconds between acknowledging a request and calling back (default %(default)s)")
    narsa.add_argument("--mode", choices=["normal", "fail", "slow"], default="normal",
                       help="initial behaviour; change it at run time with POST /_sandbox/behaviour")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.partner == "narsa":
        from sandbox.narsa import serve

        return serve(host=args.host, port=args.port, hub_url=args.hub_url, pki_dir=args.pki_dir,
                     data_dir=args.data_dir, answer_delay=args.answer_delay, mode=args.mode)
    return 2


if __name__ == "__main__":
    sys.exit(main())
