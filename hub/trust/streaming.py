"""Enveloped XML signatures over documents too large to hold: written and verified as streams.

hub/trust/signing.py signs and verifies trees: right for messages, wrong for a 40 MB batch file
of 100,000 life certificates, whose tree alone takes hundreds of megabytes. The profile is the same
(enveloped, Reference URI="", transforms enveloped-signature then exclusive c14n, SHA-256 digest,
rsa-sha256 or ecdsa-sha256, the signer's certificate in KeyInfo/X509Data), so xmlsec1, signxml and
hub.trust.signing.verify accept what is written here, and what is verified here passes the same checks.

Why it can be streamed: with an enveloped signature over URI="", the digest is the SHA-256 of the
exclusive-c14n form of the document without its ds:Signature element.

  * Writing (`CanonicalWriter`): the document is written in exclusive-c14n form already (one
    default namespace, no attributes, no XML declaration, `<a></a>` for empty elements, text
    escaped as c14n escapes it). The bytes written are then their own canonical form, so the
    digest is the SHA-256 of the bytes as they go to the file, the Signature excepted; it is
    inserted before the root's end tag once the digest is known: the same ds:Signature that
    `Signer.sign` puts into a tree (`Signer.signature_for`, a template filled with the digest).
  * Verifying (`verify_stream`): lxml's iterparse reads the file in chunks (hardened: no DTD, no
    entities, no network, DOCTYPE refused, depth capped), validates it against the XSD while
    parsing (libxml2's streaming validation), and canonicalises it on the fly: the elements near
    the root ("frames") are written by hand, each element at `apex_depth` (one certificate, one
    acknowledgement line) is canonicalised by lxml as a subtree, re-homed in its output context,
    then cleared. The digest is compared with the DigestValue, and SignedInfo checked with the
    pinned certificate through hub.trust.signing's own structure and key checks. Memory stays that of
    one item whatever the file's size. A document using namespaces in a way this hand-written
    frame cannot re-home exactly (a prefix first used below an item that a frame already rendered)
    is refused rather than verified approximately.

Nothing read from a streamed document may be acted on for good before `verify_stream` returns: the
caller applies what it reads inside a transaction it commits only then.
"""
from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import dataclass
from typing import BinaryIO, Callable

from lxml import etree

from hub.errors import MalformedXml, Problem, SchemaInvalid, SignatureInvalid
from hub.trust.signing import (DS_NS, SIGNATURE_METHODS, Signer, certificate_problem, check_structure, describe,
                               made_with, signed_info_c14n)

XML_NS = "http://www.w3.org/XML/1998/namespace"
_SIGNATURE = f"{{{DS_NS}}}Signature"


# -- canonical text -----------------------------------------------------------------------------------

def escape_text(text: str) -> str:
    """Text content as exclusive c14n writes it."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#xD;")
    return text


def escape_attribute(value: str) -> str:
    """An attribute value as exclusive c14n writes it."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .replace("\t", "&#x9;").replace("\n", "&#xA;").replace("\r", "&#xD;"))


# -- writing ------------------------------------------------------------------------------------------

def signature_bytes(digest: bytes, signer: Signer) -> bytes:
    """The ds:Signature element for a document whose canonical form (signature excluded) has SHA-256 `digest`:
    the one `Signer.sign` puts into a tree, written here as bytes."""
    return signer.signature_for(digest)


class CanonicalWriter:
    """Writes a document in one default namespace, in exclusive-c14n form, to `out`, hashing as it goes.

        writer = CanonicalWriter(out, "LotCertificatsVie", NS)
        writer.leaf("IdentifiantLot", "LCB-2026-000001")
        writer.start("Certificats"); ...; writer.end("Certificats")
        size, sha256_of_file = writer.finish(signer)   # the Signature, then the root's end tag

    Names are local names in the root's namespace; no attributes (the partner formats have none)."""

    def __init__(self, out: BinaryIO, root: str, namespace: str):
        self.out, self.root = out, root
        self._digest = hashlib.sha256()   # the canonical form without the Signature: the reference digest
        self._file = hashlib.sha256()     # every byte of the file, Signature included: the evidence digest
        self.size = 0
        self._pending: list[str] = []
        self._pending_size = 0
        self._emit(f'<{root} xmlns="{escape_attribute(namespace)}">')

    def _emit(self, text: str) -> None:
        self._pending.append(text)
        self._pending_size += len(text)
        if self._pending_size >= 64 * 1024:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = "".join(self._pending).encode("utf-8")
            self._pending.clear()
            self._pending_size = 0
            self._digest.update(data)
            self._write(data)

    def _write(self, data: bytes) -> None:
        self._file.update(data)
        self.out.write(data)
        self.size += len(data)

    def leaf(self, name: str, text: str) -> None:
        self._emit(f"<{name}>{escape_text(text)}</{name}>")

    def start(self, name: str) -> None:
        self._emit(f"<{name}>")

    def end(self, name: str) -> None:
        self._emit(f"</{name}>")

    def fragment(self, text: str) -> None:
        """Markup already written by this writer's rules (e.g. one whole item built as a string)."""
        self._emit(text)

    def canonical(self, data: bytes) -> None:
        """Bytes already in canonical form in this context (e.g. elements spooled by this same writer's rules)."""
        self._flush()
        self._digest.update(data)
        self._write(data)

    def finish(self, signer: Signer) -> tuple[int, str]:
        """Sign, write the Signature and the root's end tag; returns (file size, sha256 hex of the file)."""
        self._flush()
        close = f"</{self.root}>".encode()
        self._digest.update(close)
        self._write(signature_bytes(self._digest.digest(), signer))
        self._write(close)
        return self.size, self._file.hexdigest()


# -- verifying ----------------------------------------------------------------------------------------

@dataclass
class _Frame:
    element: etree._Element
    rendered: dict            # prefix ("" for the default) -> namespace URI in scope in the output
    last_child: etree._Element | None = None
    apexes: dict | None = None  # (tag, prefix) of an apex without attributes -> its declarations fix


@dataclass
class StreamResult:
    """What `verify_stream` found (the signature covers the whole document); `signed_by` describes the
    certificate that verified it."""

    root_tag: str
    digest: str                  # SHA-256 (hex) of the canonical form without the Signature
    elements: int
    signed_by: str


def _prefix_of(element: etree._Element, uri: str) -> str:
    if uri == XML_NS:
        return "xml"
    for prefix, value in element.nsmap.items():
        if prefix is not None and value == uri:
            return prefix
    raise MalformedXml(f"attribute namespace {uri} has no prefix on {element.tag}")


def _utilized(element: etree._Element) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]]]:
    """(namespaces visibly utilized: (prefix, uri)), (attributes: (uri, local, qualified name, value))."""
    qname = etree.QName(element)
    used = {(element.prefix or ""): (qname.namespace or "")}
    attributes = []
    for name, value in element.attrib.items():
        aq = etree.QName(name)
        if aq.namespace:
            prefix = _prefix_of(element, aq.namespace)
            if prefix != "xml":
                used[prefix] = aq.namespace
            attributes.append((aq.namespace, aq.localname, f"{prefix}:{aq.localname}", value))
        else:
            attributes.append(("", aq.localname, aq.localname, value))
    return sorted(used.items()), sorted(attributes)


def _declarations(utilized: list[tuple[str, str]], context: dict) -> tuple[str, dict]:
    """Namespace declarations exclusive c14n renders on an element, and the output context after it."""
    rendered = dict(context)
    parts = []
    for prefix, uri in utilized:
        if context.get(prefix, "") == uri:
            continue
        name = f"xmlns:{prefix}" if prefix else "xmlns"
        parts.append(f' {name}="{escape_attribute(uri)}"')
        rendered[prefix] = uri
    return "".join(parts), rendered


def _qualified(element: etree._Element) -> str:
    local = etree.QName(element).localname
    return f"{element.prefix}:{local}" if element.prefix else local


def _start_tag(element: etree._Element, context: dict) -> tuple[str, dict]:
    utilized, attributes = _utilized(element)
    declarations, rendered = _declarations(utilized, context)
    attrs = "".join(f' {qualified}="{escape_attribute(value)}"' for _, _, qualified, value in attributes)
    return f"<{_qualified(element)}{declarations}{attrs}>", rendered


def _apex(element: etree._Element, frame: _Frame) -> bytes:
    """Exclusive c14n of a subtree as it appears inside the document: lxml's canonical form of the
    subtree alone, with the declarations its apex would not repeat in context taken out."""
    alone = etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
    key = None if element.attrib else (element.tag, element.prefix)
    fix = frame.apexes.get(key) if key is not None and frame.apexes is not None else None
    if fix is None:
        context = frame.rendered
        utilized, _ = _utilized(element)
        standalone, _ = _declarations(utilized, {})
        in_context, _ = _declarations(utilized, context)
        head = f"<{_qualified(element)}"
        fix = ((head + standalone).encode(), (head + in_context).encode(),
               [(f' xmlns="{uri}"' if not prefix else f' xmlns:{prefix}="{uri}"').encode()
                for prefix, uri in context.items()])
        if key is not None:
            if frame.apexes is None:
                frame.apexes = {}
            frame.apexes[key] = fix
    expected, replacement, inherited = fix
    if not alone.startswith(expected):
        raise MalformedXml(f"cannot canonicalise {element.tag} in a stream (unexpected namespace layout)")
    body = alone[len(expected):]
    if b" xmlns" in body and any(declared in body for declared in inherited):
        raise MalformedXml(f"cannot canonicalise {element.tag} in a stream: a namespace used inside it "
                           "is declared on an ancestor it does not use")
    if expected == replacement:
        return alone
    return replacement + body


def _parse_errors(exc: etree.XMLSyntaxError, what: str):
    """What stopped an iterparse: its error log's last entry gives the kind, and the entries of that kind are
    listed. lxml's iterparse reports the thread's error log, which also holds the errors of whatever else the
    thread parsed or validated (another document's schema errors): `_read` clears it before parsing."""
    entries = list(exc.error_log) if exc.error_log else []
    stopping = entries[-1].domain_name if entries else None
    problems = [Problem(e.message, line=e.line or None) for e in entries if e.domain_name == stopping][:20] \
        or [Problem(str(exc))]
    if stopping == "SCHEMASV":
        return SchemaInvalid(f"{what} is not valid against its schema: {problems[0].message}", problems)
    return MalformedXml(f"{what} is not well-formed XML: {problems[0].message}", problems)


def verify_stream(source: BinaryIO, *, signer_name: str, what: str, roots: set[str] | None,
                  schema: etree.XMLSchema | None, apex_depth: int, certificates: list | None = None, trust=None,
                  on_element: Callable[[etree._Element], None] | None = None,
                  max_depth: int = 64) -> StreamResult:
    """Read `source` once: hardened parse, XSD (streaming), the signer's enveloped signature.

    `on_element(element)` is called for every element at depth 1..`apex_depth` (the root is depth
    0) once it is complete, except the Signature; the element is cleared afterwards. Raises
    MalformedXml, SchemaInvalid or SignatureInvalid; what was read must not be trusted before this
    returns. Who may have signed: `trust`, a TrustStore (the party's pinned certificates or one its CA
    issued, as for every message: `TrustStore.signing_certificate`), or else `certificates`, pinned
    certificates one of which must have made the signature. `roots`: the root elements accepted (None:
    whatever the schema accepts)."""
    read = _read(source, what=what, roots=roots, schema=schema, apex_depth=apex_depth, on_element=on_element,
                 max_depth=max_depth)
    if len(read.signatures) != 1:
        raise SignatureInvalid(f"{what}: exactly one ds:Signature from {signer_name} is expected, "
                               f"found {len(read.signatures)}",
                               [Problem("signature missing or repeated", path="/*/ds:Signature")])
    certificate = _check_signature(read.signatures[0], read.root_tag, read.digest, certificates, signer_name, what,
                                   trust)
    return StreamResult(root_tag=read.root_tag, digest=read.digest.hex(), elements=read.elements,
                        signed_by=describe(certificate))


def resign_stream(source: BinaryIO, out: BinaryIO, signer: Signer, *, what: str, apex_depth: int) -> tuple[int, str]:
    """Write the document read from `source` to `out` in exclusive-c14n form, its ds:Signature replaced by
    `signer`'s (the hub signing a document in a partner's format, as it signs every mapped document);
    returns (size, sha256 hex) of what was written. The content is unchanged: the new signature covers the
    same canonical form as the old one did. Memory stays that of one item, as in `verify_stream`."""
    written = hashlib.sha256()
    size = 0

    def write(data: bytes) -> None:
        nonlocal size
        written.update(data)
        out.write(data)
        size += len(data)

    held = bytearray()  # the canonical bytes are written as they come, except the root's end tag, held back

    def absorb(data: bytes) -> None:
        held.extend(data)
        if len(held) > 256 * 1024:
            keep = 1024
            write(bytes(held[:-keep]))
            del held[:-keep]

    read = _read(source, what=what, roots=None, schema=None, apex_depth=apex_depth, canonical_out=absorb)
    close = f"</{read.root_name}>".encode()
    if not held.endswith(close):
        raise MalformedXml(f"{what}: cannot re-sign: the canonical form does not end with {close.decode()}")
    write(bytes(held[:-len(close)]))
    write(signature_bytes(read.digest, signer))
    write(close)
    return size, written.hexdigest()


def item_depth(path) -> int:
    """The depth at which a document's repeated items sit, for `apex_depth` (the root is depth 0): 2 when
    the first child of the root that holds elements holds elements that hold elements themselves (a list
    of items: Certificats/Certificat/Reference), else 1 (the items are the root's children: Ligne/Statut).
    Read from the start of the file only, until it is known. Canonicalising each item whole (the deepest
    apex that keeps one item in memory) is several times faster than canonicalising its fields one by one."""
    depth = 0
    with open(path, "rb") as source:
        try:
            for event, element in etree.iterparse(source, events=("start", "end"), resolve_entities=False,
                                                  load_dtd=False, no_network=True, huge_tree=False):
                if event == "start":
                    if depth == 3 and not element.tag.startswith(f"{{{DS_NS}}}"):
                        return 2
                    depth += 1
                    continue
                depth -= 1
                if depth == 1 and len(element) and not element.tag.startswith(f"{{{DS_NS}}}"):
                    return 1  # a child of the root with children, none with children of its own
        except etree.XMLSyntaxError:
            pass  # the verification that follows says what is wrong
    return 1


@dataclass
class _Read:
    root_tag: str
    root_name: str            # the root's qualified name as written (its end tag)
    digest: bytes             # SHA-256 of the canonical form without the Signature
    elements: int
    signatures: list


def _read(source: BinaryIO, *, what: str, roots: set[str] | None, schema: etree.XMLSchema | None, apex_depth: int,
          on_element: Callable[[etree._Element], None] | None = None, max_depth: int = 64,
          canonical_out: Callable[[bytes], None] | None = None) -> _Read:
    """One hardened, schema-validating pass computing the canonical form (without the Signature): its digest,
    and its bytes given to `canonical_out` when asked for."""
    parser_options = dict(events=("start", "end", "pi"), resolve_entities=False, load_dtd=False, no_network=True,
                          remove_comments=True, huge_tree=False, collect_ids=False)
    if schema is not None:
        parser_options["schema"] = schema
    hasher = hashlib.sha256()
    pending: list[str] = []
    pending_size = 0
    stack: list[_Frame] = []
    depth, elements, signatures, skipping = 0, 0, [], 0
    root_tag = root_name = None

    def absorb(data: bytes) -> None:
        hasher.update(data)
        if canonical_out is not None:
            canonical_out(data)

    def emit(text: str) -> None:
        nonlocal pending_size
        if text:
            pending.append(text)
            pending_size += len(text)
            if pending_size > 64 * 1024:
                flush()

    def flush() -> None:
        nonlocal pending_size
        if pending:
            absorb("".join(pending).encode("utf-8"))
            pending.clear()
            pending_size = 0

    def text_before(frame: _Frame) -> str:
        text = frame.element.text if frame.last_child is None else frame.last_child.tail
        return escape_text(text) if text else ""

    etree.clear_error_log()  # this thread's earlier errors are not this document's (`_parse_errors`)
    try:
        for event, element in etree.iterparse(source, **parser_options):
            if event == "pi":
                raise MalformedXml(f"{what}: processing instructions are not accepted",
                                   [Problem(f"processing instruction {element.target}", line=element.sourceline)])
            if event == "start":
                if depth == 0:
                    if element.getroottree().docinfo.doctype:
                        raise MalformedXml(f"{what}: a DOCTYPE is not accepted",
                                           [Problem("document type declaration", line=1)])
                    if roots is not None and element.tag not in roots:
                        raise SchemaInvalid(f"{what}: expected {' or '.join(sorted(roots))}, got {element.tag}",
                                            [Problem("unexpected root element", line=element.sourceline, path="/*")])
                    root_tag, root_name = element.tag, _qualified(element)
                depth += 1
                elements += 1
                if depth > max_depth:
                    raise MalformedXml(f"{what}: elements nested deeper than {max_depth}",
                                       [Problem("too deep", line=element.sourceline)])
                if skipping:  # inside the Signature
                    skipping += 1
                    continue
                if depth - 1 > apex_depth:
                    if element.tag == _SIGNATURE:
                        raise SignatureInvalid(f"{what}: a ds:Signature below the root's children is not accepted")
                    continue
                parent = stack[-1] if stack else None
                if parent is not None:
                    emit(text_before(parent))
                if element.tag == _SIGNATURE:
                    if depth != 2:
                        raise SignatureInvalid(f"{what}: the signature must be a child of the root element",
                                               [Problem("misplaced ds:Signature", line=element.sourceline)])
                    skipping = 1
                    continue
                if depth - 1 < apex_depth:
                    tag, rendered = _start_tag(element, parent.rendered if parent else {})
                    emit(tag)
                    stack.append(_Frame(element, rendered))
                continue
            # end
            depth -= 1
            if skipping:
                skipping -= 1
                if skipping == 0:  # the Signature itself: kept aside, excluded from the digest
                    signatures.append(element)
                    stack[-1].last_child = element
                continue
            level = depth  # the root is level 0
            if level > apex_depth:
                continue
            if level == apex_depth:
                parent = stack[-1]
                flush()
                absorb(_apex(element, parent))
                if on_element is not None:
                    on_element(element)
                parent.last_child = element
                element.clear(keep_tail=True)
                while element.getprevious() is not None:
                    previous = element.getprevious()
                    if previous.tag == _SIGNATURE:
                        break
                    del element.getparent()[0]
                continue
            frame = stack.pop()
            emit(text_before(frame))
            emit(f"</{_qualified(element)}>")
            if level > 0:
                if on_element is not None:
                    on_element(element)
                stack[-1].last_child = element
                while element.getprevious() is not None and element.getprevious().tag != _SIGNATURE:
                    del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        raise _parse_errors(exc, what) from None
    flush()
    return _Read(root_tag, root_name, hasher.digest(), elements, signatures)


def _check_signature(signature: etree._Element, root_tag: str, digest: bytes, certificates: list | None,
                     signer_name: str, what: str, trust=None):
    """hub.trust.signing's structural checks on the signature (in a stand-in root), the SignatureValue over
    SignedInfo with one of the pinned keys, that certificate's validity, then the digest computed while
    reading; returns the certificate that verified."""
    holder = etree.Element(root_tag)
    holder.append(copy.deepcopy(signature))
    parts = check_structure(holder, signer_name)
    if parts.method not in SIGNATURE_METHODS:
        raise SignatureInvalid(f"{what}: unexpected signature method")
    if trust is not None:  # the party's pinned certificates or its CA, as for every message
        certificate = trust.signing_certificate(parts, signer_name)
    else:
        signed_info = signed_info_c14n(parts)
        certificate = next((c for c in certificates or [] if made_with(parts, c, signed_info)), None)
        if certificate is None:
            raise SignatureInvalid(f"{what}: the signature does not verify as {signer_name}'s: it was made with none "
                                   f"of {signer_name}'s pinned certificates", [Problem("bad SignatureValue")])
        problem = certificate_problem(certificate)
        if problem:
            raise SignatureInvalid(f"{signer_name}'s signature was made with its pinned {describe(certificate)}, "
                                   f"which {problem}", [Problem(f"{describe(certificate)} {problem}")])
    value = parts.signed_info.find(f"{{{DS_NS}}}Reference/{{{DS_NS}}}DigestValue")
    try:
        expected = base64.b64decode("".join((value.text or "").split()), validate=True)
    except ValueError:
        raise SignatureInvalid(f"{what}: DigestValue is not base64") from None
    if expected != digest:
        raise SignatureInvalid(f"{what}: signed content was altered after {signer_name} signed it "
                               f"(the signature's digest does not match the document)",
                               [Problem("digest of the signed content does not match the signature")])
    return certificate
