"""XSLT mappings between the canonical format and each partner's own, compiled once per thread.

Stylesheets may not read or write files or reach the network (lxml's access control denies all):
a mapping is a pure function of its input document.
"""
from __future__ import annotations

import threading
from pathlib import Path

from lxml import etree

from hub.errors import ConfigError, PermanentDeliveryError


class MappingSet:
    def __init__(self, mappings_dir: Path):
        self.mappings_dir = Path(mappings_dir).resolve()
        self._local = threading.local()
        for path in self.mappings_dir.rglob("*.xsl"):
            self._compiled(str(path.relative_to(self.mappings_dir)))

    def _compiled(self, name: str) -> etree.XSLT:
        cache = self._local.__dict__.setdefault("xslt", {})
        xslt = cache.get(name)
        if xslt is None:
            path = self.mappings_dir / name
            try:
                xslt = etree.XSLT(etree.parse(str(path)), access_control=etree.XSLTAccessControl.DENY_ALL)
            except (OSError, etree.XSLTParseError, etree.XMLSyntaxError) as exc:
                raise ConfigError(path, "xslt", f"does not compile: {exc}") from None
            cache[name] = xslt
        return xslt

    def apply(self, name: str, document: etree._Element) -> etree._Element:
        """Transform `document` with mapping `name`; a failure is permanent (retrying maps the same bytes)."""
        xslt = self._compiled(name)
        try:
            result = xslt(document)
        except etree.XSLTApplyError as exc:
            raise PermanentDeliveryError(f"mapping {name} failed: {exc}") from None
        root = result.getroot()
        if root is None:
            raise PermanentDeliveryError(f"mapping {name} produced no document")
        return root
