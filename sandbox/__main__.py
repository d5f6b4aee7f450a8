"""Command line: `python -m sandbox PARTNER [options]` runs one sandbox partner on loopback.

Each sandbox module exposes `add_arguments(parser)` and `run(args) -> int`; SANDBOXES lists them
(imported lazily). Relative --pki-dir and --data-dir are taken from the project root (the folder
holding sandbox/), whatever the current directory.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# partner name on the command line -> (module, one-line description)
SANDBOXES = {
    "narsa": ("sandbox.narsa", "NARSA: driving-licence authentication (REST/XML, answer by callback)"),
    "dgsn": ("sandbox.dgsn", "DGSN: identity, passports, border clearance (SOAP 1.1, status callbacks)"),
    "justice": ("sandbox.justice", "JUSTICE: judicial documents to serve, delivery certificates (SOAP 1.1 both ways)"),
    "cdg": ("sandbox.cdg", "CDG: life certificates and death notices (SFTP batch files, acknowledgement files)"),
    "sante": ("sandbox.sante", "SANTE: health clearance of remains (REST/XML, synchronous answer)"),
    "etat_civil": ("sandbox.etat_civil", "ETAT_CIVIL: extracts, transcriptions (callback), burial notices (REST/XML)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Run a sandbox partner on loopback.")
    partners = parser.add_subparsers(dest="partner", required=True, metavar="PARTNER")
    for name, (module, description) in SANDBOXES.items():
        sub = partners.add_parser(name, help=description, description=description)
        importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return importlib.import_module(SANDBOXES[args.partner][0]).run(args)


if __name__ == "__main__":
    sys.exit(main())
