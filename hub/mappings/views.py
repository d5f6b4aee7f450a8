"""What the API and the CLI show of a mapping: plain dictionaries built from hub/mappings/store.py."""
from __future__ import annotations

import difflib

from sqlalchemy.orm import Session

from hub.mappings import store


def routes_using(config, mapping: str) -> list[str]:
    """The routes that use `mapping`: a canonical type's target (`type -> PARTNER`) or a partner's inbound
    document (`PARTNER {namespace}Root`)."""
    used = [f"{route.type} -> {target.partner}" for route in config.routes for target in route.to
            if target.mapping == mapping]
    used += [f"{entry.partner} {entry.root}" for entry in config.inbound if entry.mapping == mapping]
    return used


def summary(session: Session, config, mapping: str) -> dict:
    current = store.active(session, mapping)
    history = store.activations(session, mapping)
    return {"name": mapping, "partner": store.partner_of(mapping), "direction": store.direction_of(mapping),
            "routes": routes_using(config, mapping), "active": current.as_dict(),
            "last_change": history[-1].as_dict() if history else None}


def listing(session: Session, config) -> list[dict]:
    return [summary(session, config, name) for name in store.names(session)]


def detail(session: Session, config, mapping: str) -> dict:
    return {**summary(session, config, mapping),
            "versions": [{**v.as_dict(), "last_replay": store.last_replay(session, mapping, v.number)}
                         for v in store.versions(session, mapping)],
            "activations": [a.as_dict() for a in store.activations(session, mapping)]}


def diff(session: Session, mapping: str, older: str, newer: str) -> str:
    """A unified diff of two versions' XSLT (by number or sha256)."""
    a, b = store.get(session, mapping, older), store.get(session, mapping, newer)
    return "".join(difflib.unified_diff(a.xslt.decode("utf-8", "replace").splitlines(keepends=True),
                                        b.xslt.decode("utf-8", "replace").splitlines(keepends=True),
                                        fromfile=f"{mapping} version {a.number}",
                                        tofile=f"{mapping} version {b.number}"))
