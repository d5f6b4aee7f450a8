"""`hub tokens ...`."""
from __future__ import annotations


def add_commands(subparsers) -> None:
    pass
