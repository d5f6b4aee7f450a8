"""Compiling and running a stylesheet someone submitted: what it may read, and how long and how much it may run.

`compile_stylesheet(text, folder=...)` refuses (StylesheetRefused, naming the line and the reason) a stylesheet
that does not compile or reaches outside what a mapping may; `transform(xslt, document)` runs one within the
time and size limits.

What a mapping may do, and how each rule is enforced:
- read only files inside its own folder (`xsl:include`, `xsl:import`, `document()`): literal references are
  checked before compiling, and every load at compile or run time goes through a resolver that refuses any
  path outside the folder and any URL that is not a plain file; libxslt's access control denies writing,
  creating folders and the network;
- call no extension: an `extension-element-prefixes` declaration (how `exsl:document`, which writes files, and
  libxslt's own elements are reached) is refused, and a function call in a namespace other than the harmless
  EXSLT ones (node-set, math, sets, strings, dates, regular expressions) is refused;
- no DOCTYPE (no entity expansion, no external DTD);
- run within a time and output-size limit. libxslt cannot be interrupted, so the transform runs on a thread
  of its own (lxml releases the GIL while it runs) and the caller stops waiting after `seconds`; recursion
  is bounded by libxslt's template depth (MAX_DEPTH), so a stylesheet that recurses forever ends with an
  error, and since XSLT 1.0 has no other loop, an abandoned run always ends; its thread is a daemon.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from lxml import etree

from hub.errors import StylesheetRefused

TIME_LIMIT_SECONDS = 2.0
OUTPUT_LIMIT_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 1000

XSLT_NS = "http://www.w3.org/1999/XSL/Transform"
# EXSLT namespaces whose functions only compute: they neither read, write nor call out.
SAFE_FUNCTION_NAMESPACES = {
    "http://exslt.org/math",
    "http://exslt.org/sets",
    "http://exslt.org/strings",
    "http://exslt.org/dates-and-times",
    "http://exslt.org/regular-expressions",
}
# From EXSLT common only these two functions (its `document` element writes files).
SAFE_COMMON_FUNCTIONS = {"node-set", "object-type"}
EXSLT_COMMON = "http://exslt.org/common"

# Attributes of XSLT instructions that hold an XPath expression; other attributes may hold templates ({...}).
_XPATH_ATTRIBUTES = {"select", "test", "match", "use", "count", "from", "value"}
_STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
_FUNCTION_CALL = re.compile(r"(?<![\w.:-])([A-Za-z_][\w.-]*):([A-Za-z_][\w.-]*)\s*\(")
_DOCUMENT_CALL = re.compile(r"(?<![\w.:-])document\s*\(\s*('[^']*'|\"[^\"]*\")?")

etree.XSLT.set_global_max_depth(MAX_DEPTH)


def _refuse(line: int | None, reason: str) -> StylesheetRefused:
    return StylesheetRefused(f"line {line}: {reason}" if line else reason)


def _inside(folder: Path, reference: str, base: Path) -> Path | None:
    """The file `reference` names (relative to `base`'s folder), or None when it lies outside `folder` or is
    not a plain file reference."""
    parsed = urlparse(reference)
    if parsed.scheme not in ("", "file") or parsed.netloc:
        return None
    raw = unquote(parsed.path)
    if not raw:
        return None
    path = Path(raw) if raw.startswith("/") else base.parent / raw
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return None
    if resolved != folder and folder not in resolved.parents:
        return None
    return resolved


class _FolderResolver(etree.Resolver):
    """Serves includes, imports and document() from the mapping's folder and refuses everything else (the
    refusal is an error, so nothing falls through to libxml2's own loading)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def resolve(self, system_url, public_id, context):
        path = _inside(self.folder, system_url or "", self.folder / "stylesheet.xsl")
        if path is None or not path.is_file():
            raise StylesheetRefused(f"reads {system_url!r}, outside the mapping's folder")
        return self.resolve_filename(str(path), context)


def _parser(folder: Path) -> etree.XMLParser:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    parser.resolvers.add(_FolderResolver(folder))
    return parser


def _expressions(element: etree._Element):
    """(text, is_xpath) for each expression an element carries."""
    in_xslt = element.tag.startswith("{" + XSLT_NS + "}") if isinstance(element.tag, str) else False
    for name, value in element.attrib.items():
        if in_xslt and name in _XPATH_ATTRIBUTES:
            yield value, True
        elif "{" in value:
            for template in re.findall(r"\{([^{}]*)\}", value):
                yield template, True


def _check_expression(element: etree._Element, expression: str, folder: Path, base: Path) -> None:
    line = element.sourceline
    for match in _DOCUMENT_CALL.finditer(expression):
        literal = match.group(1)
        if literal is not None:
            reference = literal[1:-1]
            if reference and _inside(folder, reference, base) is None:
                raise _refuse(line, f"document({literal}) reads outside the mapping's folder")
    bare = _STRING_LITERAL.sub("''", expression)
    for prefix, name in _FUNCTION_CALL.findall(bare):
        namespace = element.nsmap.get(prefix)
        if namespace is None:
            raise _refuse(line, f"calls {prefix}:{name}() with an undeclared prefix")
        if namespace in SAFE_FUNCTION_NAMESPACES:
            continue
        if namespace == EXSLT_COMMON and name in SAFE_COMMON_FUNCTIONS:
            continue
        raise _refuse(line, f"calls the extension function {prefix}:{name}() ({namespace}), which a mapping may not")


def _check_tree(tree: etree._ElementTree, folder: Path, base: Path, seen: set[Path]) -> None:
    """Every rule that can be checked before compiling, in this stylesheet and those it includes."""
    if tree.docinfo.doctype:
        raise _refuse(1, "a stylesheet may not carry a DOCTYPE (entities, external DTDs)")
    for element in tree.getroot().iter():
        if not isinstance(element.tag, str):
            continue
        line = element.sourceline
        for attribute in ("extension-element-prefixes", f"{{{XSLT_NS}}}extension-element-prefixes"):
            if element.get(attribute, "").strip():
                raise _refuse(line, "declares extension elements (extension-element-prefixes), which a "
                                    "mapping may not use")
        if element.tag in (f"{{{XSLT_NS}}}include", f"{{{XSLT_NS}}}import"):
            href = element.get("href", "")
            path = _inside(folder, href, base)
            if path is None:
                raise _refuse(line, f"{etree.QName(element).localname} of {href!r}, outside the mapping's folder")
            if not path.is_file():
                raise _refuse(line, f"{etree.QName(element).localname} of {href!r}: no such file in the folder")
            if path not in seen:
                seen.add(path)
                try:
                    included = etree.parse(str(path), _parser(folder))
                except etree.XMLSyntaxError as exc:
                    raise _refuse(line, f"{href!r} is not well-formed: {exc}") from None
                _check_tree(included, folder, path, seen)
        for expression, _ in _expressions(element):
            _check_expression(element, expression, folder, base)


def compile_stylesheet(text: bytes, *, folder: Path) -> etree.XSLT:
    """The compiled stylesheet; `folder` is the mapping's own folder (the only place it may read from)."""
    folder = Path(folder).resolve()
    base = folder / "stylesheet.xsl"
    parser = _parser(folder)
    try:
        root = etree.fromstring(text, parser, base_url=str(base))
    except etree.XMLSyntaxError as exc:
        raise _refuse(exc.lineno, f"is not well-formed XML: {exc.msg}") from None
    except ValueError as exc:
        raise _refuse(None, f"is not XML: {exc}") from None
    tree = root.getroottree()
    if root.tag not in (f"{{{XSLT_NS}}}stylesheet", f"{{{XSLT_NS}}}transform"):
        raise _refuse(root.sourceline, "is not an XSLT stylesheet (the root must be xsl:stylesheet)")
    _check_tree(tree, folder, base, {base})
    access = etree.XSLTAccessControl(read_file=True, write_file=False, create_dir=False,
                                     read_network=False, write_network=False)
    try:
        return etree.XSLT(tree, access_control=access)
    except StylesheetRefused:
        raise
    except etree.XSLTParseError as exc:
        entry = exc.error_log.last_error if exc.error_log else None
        line = entry.line if entry is not None and entry.line else None
        raise _refuse(line, f"does not compile: {exc}") from None


def transform(xslt: etree.XSLT, document: etree._Element, *, seconds: float = TIME_LIMIT_SECONDS,
              max_bytes: int = OUTPUT_LIMIT_BYTES) -> etree._Element:
    """`xslt` applied to `document`; StylesheetRefused when it fails, runs past `seconds` or writes more than
    `max_bytes`."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = xslt(document)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="xslt", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StylesheetRefused(f"runs longer than {seconds:g} s")
    error = outcome.get("error")
    if isinstance(error, StylesheetRefused):
        raise error
    if isinstance(error, etree.XSLTApplyError):
        details = "; ".join(dict.fromkeys(entry.message.strip() for entry in xslt.error_log if entry.message))
        raise StylesheetRefused(f"fails on this document: {details or error}") from None
    if error is not None:
        raise error
    result = outcome["result"]
    root = result.getroot()
    if root is None:
        raise StylesheetRefused("produces no document")
    size = len(etree.tostring(root))
    if size > max_bytes:
        raise StylesheetRefused(f"writes {size} bytes, more than the {max_bytes} allowed")
    return root
