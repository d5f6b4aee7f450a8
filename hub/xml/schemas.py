"""XSD schemas, compiled once per process and validated with lxml (the fast path).

Canonical business documents live in `schemas/canonical/*.xsd`; the envelope imports none of them,
so a catalogue schema is assembled at load time that imports every canonical XSD: validating an
envelope then validates its business document strictly. Partner formats live in
`schemas/partners/<partner>/*.xsd` and are addressed by their path relative to `schemas/`.
"""
from __future__ import annotations

import threading
from pathlib import Path

from lxml import etree

from hub.errors import ConfigError, Problem, SchemaInvalid

ENVELOPE_NS = "urn:ma:gov:consular:hub:envelope:1"


class SchemaSet:
    def __init__(self, schemas_dir: Path):
        self.schemas_dir = Path(schemas_dir).resolve()
        self._sources: dict[str, bytes] = {}
        self._local = threading.local()
        self._sources["canonical"] = self._catalogue()
        for path in sorted((self.schemas_dir / "partners").rglob("*.xsd")):
            self._sources[str(path.relative_to(self.schemas_dir))] = path.read_bytes()
        for name in self._sources:  # compile everything now: a broken XSD fails at start, not mid-traffic
            self._compiled(name)

    def _catalogue(self) -> bytes:
        files = sorted((self.schemas_dir / "canonical").glob("*.xsd"))
        if not files:
            raise ConfigError(self.schemas_dir / "canonical", "*.xsd", "no canonical schema found")
        imports = []
        for path in files:
            ns = etree.parse(str(path)).getroot().get("targetNamespace")
            imports.append(f'<xs:import namespace="{ns}" schemaLocation="{path.resolve().as_uri()}"/>')
        return ('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">' + "".join(imports) + "</xs:schema>").encode()

    def _compiled(self, name: str) -> etree.XMLSchema:
        cache = self._local.__dict__.setdefault("schemas", {})
        schema = cache.get(name)
        if schema is None:
            if name not in self._sources:
                raise ConfigError(self.schemas_dir, name, "no such schema")
            base = self.schemas_dir / name if name != "canonical" else self.schemas_dir / "canonical" / "catalogue.xsd"
            try:
                doc = etree.fromstring(self._sources[name], base_url=base.as_uri())
                schema = etree.XMLSchema(doc)
            except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
                raise ConfigError(base, "schema", f"does not compile: {exc}") from None
            cache[name] = schema
        return schema

    def names(self) -> list[str]:
        return list(self._sources)

    def validate(self, element: etree._Element, name: str = "canonical", *, what: str = "message") -> None:
        """Raise SchemaInvalid listing every error with its line and path."""
        schema = self._compiled(name)
        if schema.validate(element):
            return
        problems = [Problem(e.message, line=e.line, path=e.path) for e in schema.error_log]
        first = problems[0].message if problems else "invalid"
        raise SchemaInvalid(f"{what} is not valid against schema {name!r}: {first}", problems)
