"""`hub dev init`: the development keys (and `hub dev catalogues`: the console's translations kept whole) the demo, the sandboxes and the tests use, made on request only.

    hub dev init    under HUB_PKI_DIR (var/pki by default): a development CA; a key and certificate signed
                    by it for the hub (of HUB_SIGNING_ALGORITHM's kind) and for every party in config/
                    (the registry and the sandbox partners); the SSH keys of the SFTP exchange (the hub's
                    client key, CDG's host key). What exists is kept. Prints the files it created.

Nothing else makes a key: `hub serve` refuses to start, naming the file, when one is missing. The folder
then holds the sandboxes' private keys too: it is for development only, never a production hub's.
"""
from __future__ import annotations

from rich.markup import escape

from hub.cli import console


def cmd_dev_init(args) -> int:
    from hub.config import load_config
    from hub.settings import Settings
    from hub.trust import pki
    settings = Settings.from_env()
    parties = list(load_config(settings).parties)
    created = pki.init_dev_keys(settings.pki_dir, parties, hub_algorithm=settings.signing_algorithm)
    for path in created:
        console.print(f"  created {escape(str(path))}", highlight=False, soft_wrap=True)  # paths stay whole
    console.print(f"development keys for the hub, {', '.join(parties)} in {escape(str(settings.pki_dir))}: "
                  f"{len(created)} file(s) created" + ("" if created else " (all were there)")
                  + ". For development only: a production hub holds its own key and its partners' certificates.",
                  highlight=False, soft_wrap=True)
    return 0


def cmd_dev_catalogues(args) -> int:
    from hub.monitor.catalogue import update
    missing = update()
    for lang, msgids in missing.items():
        console.print(f"{lang}: {len(msgids)} untranslated" + (": " + "; ".join(escape(m) for m in msgids[:20])
                                                              if msgids else ""), highlight=False)
    return 1 if any(missing.values()) else 0


def add_commands(subparsers) -> None:
    import argparse
    p = subparsers.add_parser("dev", help="development helpers (`hub dev init`: the development keys)")
    dsub = p.add_subparsers(dest="action", required=True)
    q = dsub.add_parser("init", help="make the development CA, keys and certificates, and SSH keys",
                        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    q.set_defaults(func=cmd_dev_init)
    q = dsub.add_parser("catalogues", help="bring the console's translations (hub/monitor/locale) in line with its "
                                           "strings; exits 1 while some are untranslated")
    q.set_defaults(func=cmd_dev_catalogues)
