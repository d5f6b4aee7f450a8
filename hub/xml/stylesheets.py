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
- run within a time, memory and output-size limit. libxslt cannot be interrupted, and a stylesheet whose
  templates call themselves twice runs for ever within any depth limit, so `transform` runs it in a worker
  process of its own (one per hub process, started on first use, its address space capped at
  WORKER_MEMORY_BYTES): past `seconds` the worker is killed and the next call starts another. Recursion is
  also bounded by libxslt's template depth (MAX_DEPTH), so a stylesheet that recurses forever ends at once
  with an error. The delivery path maps with activated versions in-process (hub/xml/mapping.py): they passed
  these limits on their sample cases before going live.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from lxml import etree

from hub.errors import StylesheetRefused

TIME_LIMIT_SECONDS = 2.0
OUTPUT_LIMIT_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 1000
WORKER_MEMORY_BYTES = 1024 * 1024 * 1024
WORKER_START_SECONDS = 60
BATCH_SECONDS_EACH = 0.05  # the time a batch may take per document, beyond `seconds`
_OUTPUT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)

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
            for template in _value_templates(value):
                yield template, True


def _value_templates(value: str) -> list[str]:
    """The expressions of an attribute value template, read as XSLT does: `{{` is a brace, `{` opens an expression
    and a `}` inside one of its string literals does not close it."""
    found, i = [], 0
    while i < len(value):
        if value.startswith("{{", i) or value.startswith("}}", i):
            i += 2
        elif value[i] == "{":
            j, quote = i + 1, None
            while j < len(value) and (quote is not None or value[j] != "}"):
                quote = None if value[j] == quote else (value[j] if quote is None and value[j] in "'\"" else quote)
                j += 1
            found.append(value[i + 1:j])
            i = j + 1
        else:
            i += 1
    return found


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


class Stylesheet:
    """A compiled stylesheet, with the text and folder it came from (what `transform`'s worker compiles again);
    called as an `etree.XSLT` is."""

    def __init__(self, text: bytes, folder: Path, compiled: etree.XSLT):
        self.text, self.folder, self.compiled = text, folder, compiled
        self.sha256 = hashlib.sha256(text).hexdigest()

    def __call__(self, *args, **kwargs):
        return self.compiled(*args, **kwargs)

    @property
    def error_log(self):
        return self.compiled.error_log


def compile_stylesheet(text: bytes, *, folder: Path) -> Stylesheet:
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
        return Stylesheet(text, folder, etree.XSLT(tree, access_control=access))
    except StylesheetRefused:
        raise
    except etree.XSLTParseError as exc:
        entry = exc.error_log.last_error if exc.error_log else None
        line = entry.line if entry is not None and entry.line else None
        raise _refuse(line, f"does not compile: {exc}") from None


def transform(xslt: Stylesheet, document: etree._Element, *, seconds: float = TIME_LIMIT_SECONDS,
              max_bytes: int = OUTPUT_LIMIT_BYTES) -> etree._Element:
    """`xslt` applied to `document` in the worker process; StylesheetRefused when it fails, runs past `seconds`,
    exhausts the worker's memory or writes more than `max_bytes`."""
    answer = _WORKER.run((xslt.sha256, xslt.text, str(xslt.folder), etree.tostring(document), max_bytes), seconds)
    if answer is None:
        raise StylesheetRefused(f"runs longer than {seconds:g} s")
    kind, value = answer
    if kind == "refused":
        raise StylesheetRefused(value)
    return etree.fromstring(value, _OUTPUT_PARSER)


def transform_many(xslt: Stylesheet, documents: list[etree._Element | bytes], *, seconds: float = TIME_LIMIT_SECONDS,
                   max_bytes: int = OUTPUT_LIMIT_BYTES) -> list[etree._Element | StylesheetRefused]:
    """`xslt` applied to each of `documents` in one exchange with the worker (a replay's batch): each output, or
    the StylesheetRefused saying why there is none. A batch that runs past `seconds` plus BATCH_SECONDS_EACH per
    document is run again one document at a time, so that only the one at fault is refused. A document may be
    given as the bytes it was parsed from (trusted: stored by the hub), which saves serialising it again."""
    if not documents:
        return []
    request = (xslt.sha256, xslt.text, str(xslt.folder),
               [d if isinstance(d, bytes) else etree.tostring(d) for d in documents], max_bytes)
    answers = _WORKER.run(request, seconds + BATCH_SECONDS_EACH * len(documents))
    if answers is None:
        out: list[etree._Element | StylesheetRefused] = []
        for document in documents:
            try:
                parsed = etree.fromstring(document, _OUTPUT_PARSER) if isinstance(document, bytes) else document
                out.append(transform(xslt, parsed, seconds=seconds, max_bytes=max_bytes))
            except StylesheetRefused as exc:
                out.append(exc)
        return out
    if answers[0] == "refused" and isinstance(answers[1], str):  # the stylesheet itself, for every document
        return [StylesheetRefused(answers[1]) for _ in documents]
    return [etree.fromstring(value, _OUTPUT_PARSER) if kind == "ok" else StylesheetRefused(value)
            for kind, value in answers]


def _apply(compiled: Stylesheet, document: bytes, max_bytes: int) -> tuple[str, str | bytes]:
    """In the worker: ("ok", the output's bytes) or ("refused", why)."""
    try:
        result = compiled(etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True)))
    except etree.XSLTApplyError as exc:
        details = "; ".join(dict.fromkeys(entry.message.strip() for entry in compiled.error_log if entry.message))
        return "refused", f"fails on this document: {details or exc}"
    except MemoryError:
        return "refused", f"needs more than the {WORKER_MEMORY_BYTES // 2**20} MiB of memory allowed"
    root = result.getroot()
    if root is None:
        return "refused", "produces no document"
    output = etree.tostring(root)
    if len(output) > max_bytes:
        return "refused", f"writes {len(output)} bytes, more than the {max_bytes} allowed"
    return "ok", output


def _serve(connection) -> None:
    """The worker's loop: compile (once per stylesheet) and apply, until the hub closes the pipe."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    compiled: dict[str, Stylesheet] = {}
    connection.send("ready")  # the time limit counts from here: starting the worker is not the stylesheet's time
    while True:
        try:
            sha, text, folder, document, max_bytes = connection.recv()
        except EOFError:
            return
        try:
            if sha not in compiled:
                if len(compiled) > 64:
                    compiled.clear()
                compiled[sha] = compile_stylesheet(text, folder=Path(folder))
            answer = ([_apply(compiled[sha], one, max_bytes) for one in document] if isinstance(document, list)
                      else _apply(compiled[sha], document, max_bytes))
        except StylesheetRefused as exc:
            answer = ("refused", exc.detail)
        except MemoryError:
            answer = ("refused", f"needs more than the {WORKER_MEMORY_BYTES // 2**20} MiB of memory allowed")
        connection.send(answer)


class _Worker:
    """One worker process for this process's transforms, one request at a time, replaced when it is killed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._process = self._connection = None

    def run(self, request: tuple, seconds: float):
        """The worker's answer to `request`, or None when it took longer than `seconds` (the worker is killed)."""
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            self._connection.send(request)
            if self._connection.poll(seconds):
                try:
                    return self._connection.recv()
                except EOFError:  # killed from outside, or its memory cap reached outside libxml
                    self._stop()
                    return "refused", "stopped the worker that ran it"
            self._stop()
            return None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # nothing of this process's threads or state
        self._connection, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs,), name="hub-xslt-worker", daemon=True)
        self._process.start()
        theirs.close()
        if not self._connection.poll(WORKER_START_SECONDS) or self._connection.recv() != "ready":
            self._stop()
            raise RuntimeError(f"the stylesheet worker did not start within {WORKER_START_SECONDS} s")

    def _stop(self) -> None:
        self._process.kill()
        self._process.join(5)
        self._connection.close()
        self._process = self._connection = None


_WORKER = _Worker()
