"""Hardened parsing of untrusted XML.

Every byte that reaches the hub from outside goes through `parse_untrusted`: the size cap is checked
before any parsing, the parser never resolves entities, never loads a DTD and never touches the
network, and a document that declares a DOCTYPE is refused outright (entity expansion attacks such
as billion laughs and XXE live there).
"""
from __future__ import annotations

import threading

from lxml import etree

from hub.errors import MalformedXml, MessageTooLarge, Problem

_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parser objects must not be shared between threads.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            no_network=True,
            huge_tree=False,
            remove_blank_text=False,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def parse_untrusted(data: bytes, *, max_bytes: int, what: str = "message") -> etree._Element:
    """Parse `data` and return its root element, or raise MessageTooLarge / MalformedXml."""
    if len(data) > max_bytes:
        raise MessageTooLarge(f"{what} is {len(data)} bytes; the limit is {max_bytes} bytes")
    if not data.strip():
        raise MalformedXml(f"{what} is empty", [Problem("empty body")])
    # DOCTYPE must precede the root element: a cheap look at the head refuses it before parsing;
    # the check after parsing catches one hidden behind a long prolog.
    if b"<!doctype" in data[:4096].lower():
        raise MalformedXml(f"{what} declares a DOCTYPE or entities, which the hub refuses",
                           [Problem("DOCTYPE and entity declarations are not allowed")])
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        problems = [Problem(e.message, line=e.line) for e in exc.error_log] or [Problem(str(exc), line=exc.lineno)]
        raise MalformedXml(f"{what} is not well-formed XML: {exc.msg}", problems) from None
    if root.getroottree().docinfo.doctype:
        raise MalformedXml(f"{what} declares a DOCTYPE, which the hub refuses",
                           [Problem("DOCTYPE declarations are not allowed")])
    return root


def parse_trusted(data: bytes) -> etree._Element:
    """Parse bytes the hub itself stored or produced (already checked at intake)."""
    return etree.fromstring(data, _parser())


def to_bytes(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")
