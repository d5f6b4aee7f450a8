"""Hardened parsing of untrusted XML.

Every byte that reaches the hub from outside (REST and SOAP bodies, SFTP files, partners' synchronous
answers) goes through `parse_untrusted`, which refuses, in this order and before any schema,
signature or mapping work:

    size       over `max_bytes` (HUB_MAX_MESSAGE_BYTES)                        -> 413 MessageTooLarge
    encoding   anything but UTF-8, UTF-16, US-ASCII or ISO-8859-1             -> 400 MalformedXml
    DOCTYPE    any document type declaration, wherever it hides in the prolog  -> 400 MalformedXml
               (behind a BOM, in UTF-16, after kilobytes of comments): entity declarations, and so
               XXE, billion laughs and quadratic blowup, can only live there
    depth      elements nested deeper than `max_depth` (HUB_MAX_XML_DEPTH)     -> 400 XmlTooComplex
    count      more than `max_elements` elements (HUB_MAX_XML_ELEMENTS)        -> 400 XmlTooComplex
    syntax     not well-formed                                                 -> 400 MalformedXml

Depth and count are checked while parsing (lxml's pull parser, fed in chunks): a document over a cap
is abandoned as soon as it crosses it, never built whole. A document of one chunk (64 KB) or less, such as
every message of the usual kind, is parsed whole instead and its caps checked on the tree: the pull parser's
event per element cost three times the parse, and a tree of 64 KB is small whatever it holds (at most
16,384 elements). Both ways refuse the same documents with the same answers. The parser itself never
resolves entities, never loads a DTD or anything else, and never touches the network; a DOCTYPE that
slipped past the prolog scan would still be refused after parsing.
"""
from __future__ import annotations

import re
import threading

from lxml import etree

from hub.errors import MalformedXml, MessageTooLarge, Problem
from hub.settings import Settings


# The caps when a caller gives none: the settings' defaults (callers holding a Hub pass
# `**limits(hub.settings)`, so HUB_MAX_XML_DEPTH / HUB_MAX_XML_ELEMENTS apply to everything it parses).
DEFAULT_MAX_DEPTH: int = Settings.model_fields["max_xml_depth"].default
DEFAULT_MAX_ELEMENTS: int = Settings.model_fields["max_xml_elements"].default
_CHUNK = 64 * 1024

_PARSER_OPTIONS = dict(resolve_entities=False, load_dtd=False, dtd_validation=False, no_network=True,
                       huge_tree=False, remove_blank_text=False, collect_ids=False)

_local = threading.local()


class XmlTooComplex(MalformedXml):
    """Well-formed so far, but nested deeper or holding more elements than the hub's caps."""
    title = "XML over the hub's depth or element cap"


def _parser() -> etree.XMLParser:
    # lxml parser objects must not be shared between threads.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(**_PARSER_OPTIONS)
        _local.parser = parser
    return parser


# -- encoding: decided from the first bytes as XML 1.0 appendix F says, then from the declaration ------
_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"), (b"\xef\xbb\xbf", "utf-8"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_PATTERNS = ((b"\x00\x00\x00<", "UTF-32"), (b"<\x00\x00\x00", "UTF-32"), (b"<\x00?\x00", "utf-16-le"),
             (b"\x00<\x00?", "utf-16-be"), (b"\x4c\x6f\xa7\x94", "EBCDIC"))
_DECLARED = re.compile(r"""\A<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_ACCEPTED = {"utf-8": "utf-8", "utf8": "utf-8", "us-ascii": "ascii", "ascii": "ascii", "iso-8859-1": "latin-1",
             "latin1": "latin-1", "latin-1": "latin-1", "iso_8859-1": "latin-1", "utf-16": None, "utf-16le": None,
             "utf-16be": None}
ACCEPTED_ENCODINGS = "UTF-8, UTF-16, US-ASCII, ISO-8859-1"


def _text(data: bytes, what: str) -> str:
    """`data` decoded as the XML parser will read it; other encodings (UTF-7, EBCDIC, UTF-32...) refused:
    a parser decoding them through iconv would read markup that a byte-level look never sees."""
    codec = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    codec = codec or next((name for pattern, name in _PATTERNS if data.startswith(pattern)), None)
    if codec in ("UTF-32", "EBCDIC"):
        raise MalformedXml(f"{what} is encoded in {codec}, which the hub refuses (accepted: {ACCEPTED_ENCODINGS})",
                           [Problem(f"encoding {codec} not accepted", line=1)])
    text = data.decode(codec or "utf-8", errors="replace").lstrip("\ufeff")
    declared = _DECLARED.match(text)
    if declared:
        name = declared.group(1).lower()
        if name not in _ACCEPTED:
            raise MalformedXml(f"{what} declares encoding {declared.group(1)!r}, which the hub refuses "
                               f"(accepted: {ACCEPTED_ENCODINGS})",
                               [Problem(f"encoding {declared.group(1)} not accepted", line=1)])
        if codec is None and _ACCEPTED[name] not in (None, "utf-8"):
            text = data.decode(_ACCEPTED[name], errors="replace")
    return text


_SPACE = re.compile(r"[ \t\r\n]*")


def _refuse_doctype_in_prolog(text: str, what: str) -> None:
    """Walk the prolog (declaration, comments, processing instructions, white space) up to the root
    element; a DOCTYPE anywhere in it is refused before the parser reads a byte of it."""
    pos = 0
    while True:
        pos = _SPACE.match(text, pos).end()
        if text.startswith("<?", pos):
            end, close = text.find("?>", pos + 2), "?>"
        elif text.startswith("<!--", pos):
            end, close = text.find("-->", pos + 4), "-->"
        elif text.startswith("<!", pos):  # <!DOCTYPE, in any case, or anything else declared
            line = text.count("\n", 0, pos) + 1
            raise MalformedXml(f"{what} declares a DOCTYPE or entities, which the hub refuses",
                               [Problem("DOCTYPE and entity declarations are not allowed", line=line)])
        else:
            return  # the root element (or something the parser will call malformed)
        if end < 0:
            return
        pos = end + len(close)


def parse_untrusted(data: bytes, *, max_bytes: int, what: str = "message", max_depth: int = DEFAULT_MAX_DEPTH,
                    max_elements: int = DEFAULT_MAX_ELEMENTS) -> etree._Element:
    """Parse `data` and return its root element, or raise MessageTooLarge (413), MalformedXml or
    XmlTooComplex (400) naming the rule broken."""
    if len(data) > max_bytes:
        raise MessageTooLarge(f"{what} is {len(data)} bytes; the limit is {max_bytes} bytes (HUB_MAX_MESSAGE_BYTES)",
                              [Problem(f"over {max_bytes} bytes")])
    if not data.strip():
        raise MalformedXml(f"{what} is empty", [Problem("empty body")])
    _refuse_doctype_in_prolog(_text(data, what), what)
    etree.clear_error_log()  # this thread's log: only this document's errors are reported
    if len(data) <= _CHUNK:
        try:
            root = etree.fromstring(data, _parser())
        except etree.XMLSyntaxError as exc:
            raise _malformed(exc, what, max_depth) from None
        _check_caps(root, what, max_depth, max_elements)
    else:
        root = _parse_streaming(data, what, max_depth, max_elements)
    if root.getroottree().docinfo.doctype:
        raise MalformedXml(f"{what} declares a DOCTYPE, which the hub refuses",
                           [Problem("DOCTYPE declarations are not allowed")])
    return root


def _parse_streaming(data: bytes, what: str, max_depth: int, max_elements: int) -> etree._Element:
    """Parse in chunks with the pull parser, refusing at the first element over a cap."""
    parser = etree.XMLPullParser(events=("start", "end"), **_PARSER_OPTIONS)
    depth = count = 0
    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(data[offset:offset + _CHUNK])
            for event, element in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                if count == 0 and element.getroottree().docinfo.doctype:
                    raise MalformedXml(f"{what} declares a DOCTYPE, which the hub refuses",
                                       [Problem("DOCTYPE declarations are not allowed", line=element.sourceline)])
                depth, count = depth + 1, count + 1
                if depth > max_depth:
                    raise _too_deep(what, max_depth, element.sourceline)
                if count > max_elements:
                    raise _too_many(what, max_elements, element.sourceline)
        return parser.close()
    except etree.XMLSyntaxError as exc:
        raise _malformed(exc, what, max_depth) from None


def _xpath(expression: str) -> etree.XPath:
    """Compiled once per thread, as lxml objects are not shared between threads."""
    compiled = _local.__dict__.setdefault("xpaths", {})
    if expression not in compiled:
        compiled[expression] = etree.XPath(expression)
    return compiled[expression]


def _check_caps(root: etree._Element, what: str, max_depth: int, max_elements: int) -> None:
    """The caps checked on a whole tree, answering as the pull parser would have: the first element over a
    cap in document order decides (depth first, as it is looked at first), with its line. Each look is one walk
    of the tree at most, whatever its shape: the first element deeper than the cap is the first one exactly one
    level deeper (any deeper one has such an ancestor before it)."""
    count = int(_xpath("count(//*)")(root))
    if count <= max_depth and count <= max_elements:
        return  # no element can be deeper than the elements there are
    deeper = _xpath("(" + "/*" * (max_depth + 1) + ")[1]")(root) if count > max_depth else []
    too_many = count > max_elements
    if deeper and not (too_many and _xpath("count(preceding::*) + count(ancestor::*)")(deeper[0]) >= max_elements + 1):
        raise _too_deep(what, max_depth, deeper[0].sourceline)
    if too_many:
        raise _too_many(what, max_elements, _xpath("(//*)[$n]")(root, n=max_elements + 1)[0].sourceline)


def _too_deep(what: str, max_depth: int, line: int | None) -> XmlTooComplex:
    return XmlTooComplex(f"{what} nests elements more than {max_depth} deep; the limit is {max_depth} "
                         "(HUB_MAX_XML_DEPTH)", [Problem(f"element nesting over {max_depth}", line=line)])


def _too_many(what: str, max_elements: int, line: int | None) -> XmlTooComplex:
    return XmlTooComplex(f"{what} has more than {max_elements} elements; the limit is {max_elements} "
                         "(HUB_MAX_XML_ELEMENTS)", [Problem(f"over {max_elements} elements", line=line)])


def _malformed(exc: etree.XMLSyntaxError, what: str, max_depth: int) -> MalformedXml:
    if "Excessive depth" in exc.msg:  # libxml2's own cap (256), met before ours was looked at
        return _too_deep(what, max_depth, exc.lineno)
    problems = [Problem(e.message, line=e.line) for e in exc.error_log]
    return MalformedXml(f"{what} is not well-formed XML: {exc.msg}", problems or [Problem(exc.msg, line=exc.lineno)])


def limits(settings) -> dict:
    """The caps of `settings` as keyword arguments of parse_untrusted (besides max_bytes)."""
    return {"max_depth": settings.max_xml_depth, "max_elements": settings.max_xml_elements}


def parse_trusted(data: bytes) -> etree._Element:
    """Parse bytes the hub itself stored or produced (already checked at intake)."""
    return etree.fromstring(data, _parser())


def to_bytes(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")
