"""The hub's own WSDLs: as served (the static file with its endpoint and schema locations filled in), and
what each operation takes (`operations`: SOAPAction -> the Body's document element)."""
from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
_XS = "http://www.w3.org/2001/XMLSchema"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"


@cache
def operations(path: Path) -> dict[str, str]:
    """SOAPAction -> the Clark name ({namespace}local) of the element its input message's part holds, for
    every operation of the WSDL's bindings (document/literal, one part)."""
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()

    def local(qname: str) -> str:
        return qname.rsplit(":", 1)[-1]

    messages = {}
    for message in root.iter(f"{{{_WSDL}}}message"):
        part = message.find(f"{{{_WSDL}}}part")
        if part is not None and part.get("element"):
            prefix, _, name = part.get("element").rpartition(":")
            messages[message.get("name")] = f"{{{part.nsmap.get(prefix or None, '')}}}{name}"
    inputs = {}
    for operation in root.iterfind(f"{{{_WSDL}}}portType/{{{_WSDL}}}operation"):
        source = operation.find(f"{{{_WSDL}}}input")
        if source is not None and local(source.get("message", "")) in messages:
            inputs[operation.get("name")] = messages[local(source.get("message"))]
    actions = {}
    for operation in root.iterfind(f"{{{_WSDL}}}binding/{{{_WSDL}}}operation"):
        soap = operation.find(f"{{{_WSDL_SOAP}}}operation")
        if soap is not None and soap.get("soapAction") and operation.get("name") in inputs:
            actions[soap.get("soapAction")] = inputs[operation.get("name")]
    return actions


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
