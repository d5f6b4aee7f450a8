"""Command line: `python -m sandbox PARTNER [options]` runs one sandbox partner on loopback.

Each sandbox module exposes `add_arguments(parser)` and `run(args) -> int`; SANDBOXES lists them,
and only the one asked for is imported. Relative --pki-dir and --data-dir are taken from the project root (the folder
holding sandbox/), whatever the current directory.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from hub import cpu

# partner name on the command line -> (module, one-line description)
SANDBOXES = {
    "narsa": ("sandbox.narsa", "NARSA: driving-licence authentication (REST/XML, answer by callback)"),
    "dgsn": ("sandbox.dgsn", "DGSN: identity, passports, border clearance (SOAP 1.1, status callbacks)"),
    "justice": ("sandbox.justice", "JUSTICE: judicial documents to serve, delivery certificates (SOAP 1.1 both ways)"),
    "cdg": ("sandbox.cdg", "CDG: life certificates and death notices (SFTP batch files, acknowledgement files)"),
    "sante": ("sandbox.sante", "SANTE: health clearance of remains (REST/XML, synchronous answer)"),
    "etat_civil": ("sandbox.etat_civil", "ETAT_CIVIL: extracts, transcriptions (callback), burial notices (REST/XML)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SANDBOXES:  # import only the partner asked for
        module_name, description = SANDBOXES[argv[0]]
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"python -m sandbox {argv[0]}", description=description)
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        cpu.apply(args.cpu_scheduling)  # first, in the main thread: the threads started from now on inherit it
        return module.run(args)
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Run a sandbox partner on loopback.",
                                     epilog="partners:\n" + "\n".join(f"  {name:<11} {description}" for name, (_, description)
                                                                   in SANDBOXES.items()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("partner", choices=list(SANDBOXES), metavar="PARTNER", help="one of: " + ", ".join(SANDBOXES))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the partner's options (PARTNER --help lists them)")
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
