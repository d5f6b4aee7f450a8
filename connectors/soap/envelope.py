"""SOAP 1.1 envelopes and faults, with lxml: the one place that knows their shape.

Used by both sides: the hub's outbound connector and inbound endpoints, and the SOAP sandboxes.
The business document travels as the single child of soap:Body, byte-for-byte the element that was
signed (exclusive canonicalisation makes its signature independent of the envelope around it).

A fault is permanent unless the sender marks it transient by putting an element whose local name
is `RetryAfter` (seconds, a whole number) anywhere in its `detail`.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from lxml import etree

from hub.errors import MessageTooLarge, NotUnderstood, Problem, SchemaInvalid
from hub.xml.safe import parse_untrusted, to_bytes
from hub.xml.text import shown

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CONTENT_TYPE = "text/xml; charset=utf-8"
MAX_HEADER_BYTES = 32_768   # a soap:Header larger than this is refused (WS-Security with a certificate is ~6 KiB)
FAULT_DETAIL_NS = "urn:ma:gov:consular:hub:soap-fault:1"
_S = f"{{{SOAP_ENV}}}"


@dataclass(frozen=True)
class Fault:
    code: str                 # "soap:Client" (the request is wrong) or "soap:Server" (the receiver failed)
    string: str               # what happened, for people
    retry_after: float | None = None   # set when the sender marks the fault transient
    problems: list[Problem] = field(default_factory=list)

    @property
    def transient(self) -> bool:
        return self.retry_after is not None


def build_envelope(document: etree._Element) -> bytes:
    """An envelope whose Body holds a copy of `document` (the caller's tree is left as it was)."""
    envelope = etree.Element(f"{_S}Envelope", nsmap={"soap": SOAP_ENV})
    etree.SubElement(envelope, f"{_S}Body").append(copy.deepcopy(document))
    return to_bytes(envelope)


_PROLOG = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*(<\?xml\s[^>]*\?>)?\s*")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_OPEN = (f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{SOAP_ENV}">'
         '<soap:Body>').encode()
_CLOSE = b"</soap:Body></soap:Envelope>"


def wrap_document_bytes(document: bytes) -> bytes:
    """An envelope whose Body holds `document` BYTE FOR BYTE (only its XML declaration is dropped).

    For signed documents that must arrive exactly as signed. `document` must be UTF-8 (or ASCII)
    and hold one element; raises ValueError otherwise (a bug of the caller, not of the partner)."""
    prolog = _PROLOG.match(document)
    declaration = prolog.group(1) or b""
    encoding = _ENCODING.search(declaration)
    if encoding and encoding.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        raise ValueError(f"document is encoded in {encoding.group(1).decode()}; only UTF-8 can be wrapped as is")
    content = document[prolog.end():]
    if not content.startswith(b"<") or content.startswith(b"<!"):
        raise ValueError("document does not start with an element")
    return _OPEN + content + _CLOSE


def body_document_bytes(element: etree._Element) -> bytes:
    """A Body child serialised on its own, with only the namespace declarations it uses.

    Exclusive canonicalisation makes the namespaces the envelope declared irrelevant to the
    element's own enveloped signature, so it still verifies."""
    return to_bytes(copy.deepcopy(element))


def build_fault(fault: Fault) -> bytes:
    """A soap:Fault envelope; problems and the transient mark go in `detail`. Text that came from the
    request (a code in the URL, a path) may hold what XML cannot: such characters are written as \\uXXXX."""
    envelope = etree.Element(f"{_S}Envelope", nsmap={"soap": SOAP_ENV})
    element = etree.SubElement(etree.SubElement(envelope, f"{_S}Body"), f"{_S}Fault")
    etree.SubElement(element, "faultcode").text = fault.code
    etree.SubElement(element, "faultstring").text = shown(fault.string, 4000)
    if fault.problems or fault.retry_after is not None:
        detail = etree.SubElement(element, "detail")
        d = lambda tag: f"{{{FAULT_DETAIL_NS}}}{tag}"  # noqa: E731
        if fault.retry_after is not None:
            etree.SubElement(detail, d("RetryAfter"), nsmap={"f": FAULT_DETAIL_NS}).text = str(int(fault.retry_after))
        for problem in fault.problems[:20]:
            p = etree.SubElement(detail, d("Problem"), nsmap={"f": FAULT_DETAIL_NS})
            p.text = shown(problem.message, 2000)
            if problem.line:
                p.set("line", str(problem.line))
            if problem.path:
                p.set("path", shown(problem.path, 200))
    return to_bytes(envelope)


def parse_envelope(data: bytes, *, max_bytes: int, what: str = "SOAP envelope", **caps) -> etree._Element:
    """The Body's single child, parsed with the hardened parser (hub.xml.safe: size, DOCTYPE, depth and
    element caps, `caps` being its max_depth / max_elements); a soap:Fault element is returned as is.

    The Envelope holds an optional Header, then exactly one Body, and nothing else.
    Raises hub.errors.InputError subclasses (MessageTooLarge, MalformedXml, SchemaInvalid) naming what is wrong."""
    root = parse_untrusted(data, max_bytes=max_bytes, what=what, **caps)
    if root.tag != f"{_S}Envelope":
        raise SchemaInvalid(f"{what}: expected a SOAP 1.1 Envelope ({{{SOAP_ENV}}}Envelope), got {shown(root.tag, 200)}",
                            [Problem("wrong root element", line=root.sourceline, path="/*")])
    parts = [c for c in root if isinstance(c.tag, str)]
    names = [etree.QName(c).localname if c.tag.startswith(_S) else "other" for c in parts]
    if names not in (["Body"], ["Header", "Body"]):
        raise SchemaInvalid(f"{what}: a SOAP Envelope holds an optional Header and exactly one Body, found "
                            f"{', '.join(names) or 'nothing'}", [Problem("Envelope content", line=root.sourceline,
                                                                         path="/Envelope")])
    body = parts[-1]
    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    if len(children) != 1:
        raise SchemaInvalid(f"{what}: soap:Body must hold exactly one element, found {len(children)}",
                            [Problem("Body content", line=(body if body is not None else root).sourceline,
                                     path="/Envelope/Body")])
    return children[0]


def check_header(document: etree._Element, *, max_bytes: int = MAX_HEADER_BYTES) -> None:
    """The soap:Header of the envelope holding `document` (parse_envelope's result), for a receiver that
    processes no header entry: refused when over `max_bytes` serialised (MessageTooLarge), or when an
    entry says mustUnderstand="1" (NotUnderstood, answered with a soap:MustUnderstand fault)."""
    envelope = document.getparent().getparent()
    header = envelope.find(f"{_S}Header")
    if header is None:
        return
    size = len(etree.tostring(header))
    if size > max_bytes:
        raise MessageTooLarge(f"the soap:Header is {size} bytes; the limit is {max_bytes} bytes",
                              [Problem(f"over {max_bytes} bytes", line=header.sourceline, path="/Envelope/Header")])
    for entry in header:
        if isinstance(entry.tag, str) and (entry.get(f"{_S}mustUnderstand") or "").strip() in ("1", "true"):
            name = etree.QName(entry)
            raise NotUnderstood(f"the header entry {{{shown(name.namespace or '', 200)}}}{shown(name.localname, 100)} "
                                "must be understood, and the hub processes no header entry",
                                [Problem("mustUnderstand header not processed", line=entry.sourceline,
                                         path=f"/Envelope/Header/{shown(name.localname, 100)}")])


def read_fault(element: etree._Element) -> Fault | None:
    """The Fault carried by a Body child, or None when it is not a soap:Fault."""
    if element.tag != f"{_S}Fault":
        return None
    code = (element.findtext("faultcode") or "").strip() or "soap:Server"
    string = (element.findtext("faultstring") or "").strip() or "no faultstring"
    retry_after, problems = None, []
    detail = element.find("detail")
    if detail is not None:
        for node in detail.iter():
            if not isinstance(node.tag, str):
                continue
            name = etree.QName(node).localname
            if name == "RetryAfter" and (node.text or "").strip().isdigit():
                retry_after = float(node.text.strip())
            elif name == "Problem":
                problems.append(Problem((node.text or "").strip(), line=int(node.get("line")) if
                                        (node.get("line") or "").isdigit() else None, path=node.get("path")))
    return Fault(code, string, retry_after, problems)

