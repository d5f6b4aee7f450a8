"""The hub's own WSDLs as served: the static file with its endpoint and schema locations filled in."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
_XS = "http://www.w3.org/2001/XMLSchema"


def render_wsdl(path: Path, schemas_dir: Path, *, endpoint: str, schemas_url: str | None) -> bytes:
    """The static WSDL with its soap:address set to `endpoint` and, when `schemas_url` is given, relative
    schema locations made absolute under it (so a client loading the WSDL over HTTP finds them)."""
    tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    for address in tree.iter(f"{{{_WSDL_SOAP}}}address"):
        address.set("location", endpoint)
    if schemas_url is None:
        return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    schemas_dir = schemas_dir.resolve()
    for node in tree.iter(f"{{{_XS}}}import", f"{{{_XS}}}include"):
        location = node.get("schemaLocation")
        if not location or urlsplit(location).scheme:
            continue
        target = (path.parent / location).resolve()
        if target.is_relative_to(schemas_dir):
            node.set("schemaLocation", schemas_url + target.relative_to(schemas_dir).as_posix())
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
