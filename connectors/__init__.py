"""Transports. Each package implements the contract in `connectors.base`; the engine knows no protocol.

Connectors are found through `CONNECTORS` (transport name -> import path), imported lazily; what each
can do (send, poll, serve an inbound route, consume in process) the engine learns from the capability
protocols it implements. docs/howto/add-a-transport.md adds one.
"""
from __future__ import annotations

import difflib
import importlib

CONNECTORS = {
    "rest": "connectors.rest.connector:RestConnector",
    "soap": "connectors.soap.connector:SoapConnector",
    "sftp": "connectors.sftp.connector:SftpConnector",
    "local": "connectors.local:LocalConnector",
}


def connector_class(transport: str):
    if transport not in CONNECTORS:
        close = difflib.get_close_matches(transport, CONNECTORS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown transport {transport!r}{hint}; known: {', '.join(sorted(CONNECTORS))}")
    module, _, name = CONNECTORS[transport].partition(":")
    return getattr(importlib.import_module(module), name)
