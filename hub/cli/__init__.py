"""Command groups of the `hub` command line, one module each with `add_commands(subparsers)`.

Shared here: the console every command prints to, and `open_hub()` (settings from the environment,
database migrated, the installed apps' evidence chains known; closed by `main()` when the command ends)."""
from __future__ import annotations

from importlib import import_module

from rich.console import Console

GROUPS = ("certificates", "tokens", "users", "evidence", "config", "dev", "mapping_checks")
console = Console()
_opened: list = []


def open_hub():
    from hub.apps import app_chains
    from hub.engine import Hub
    from hub.service import INSTALLED_APPS
    from hub.settings import Settings
    hub = Hub(Settings.from_env())
    _opened.append(hub)
    hub.migrate()
    hub.chained_histories.extend(app_chains(INSTALLED_APPS))  # `hub evidence verify` checks them too
    return hub


def with_resend_hooks(hub):
    """`hub` with the installed apps' resend hooks (hub/apps.py), for a command that resends: what the dead
    letter failed (a registry case) then waits again, as when the console resends. An app that cannot be built
    here (its keys missing) is said and skipped: the resend goes on, and the partner's late answer still
    closes the case."""
    from hub.service import INSTALLED_APPS
    for build in INSTALLED_APPS:
        try:
            app = build(hub)
        except Exception as exc:  # noqa: BLE001 - told, not fatal
            console.print(f"[yellow]{getattr(build, 'name', build)}: not told of the resend ({exc})[/]")
            continue
        hooks = getattr(app, "resend_hooks", None)
        if callable(hooks):
            hub.resend_listeners.extend(hooks())
    return hub


def close_hubs() -> None:
    """Close every hub a command opened (its connections, its connectors)."""
    while _opened:
        _opened.pop().close()


def add_all(subparsers) -> None:
    for name in GROUPS:
        import_module(f"hub.cli.{name}").add_commands(subparsers)
