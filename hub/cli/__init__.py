"""Command groups of the `hub` command line, one module each with `add_commands(subparsers)`.

Shared here: the console every command prints to, and `open_hub()` (settings from the environment,
database migrated)."""
from __future__ import annotations

from importlib import import_module

from rich.console import Console

GROUPS = ("certificates", "tokens", "evidence", "config")
console = Console()


def open_hub():
    from hub.engine import Hub
    from hub.settings import Settings
    hub = Hub(Settings.from_env())
    hub.migrate()
    return hub


def add_all(subparsers) -> None:
    for name in GROUPS:
        import_module(f"hub.cli.{name}").add_commands(subparsers)
