"""Every mapping's sample cases: input -> expected, and the output valid against its target schema.

Cases live beside the mappings as data: mappings/<partner>/cases/<mapping>/<name>.input.xml and
<name>.expected.xml. Adding a case needs no code.
"""
from __future__ import annotations

import pytest
from lxml import etree

from hub.xml.mapping import MappingSet
from hub.xml.schemas import SchemaSet
from hub.settings import PROJECT_ROOT

MAPPINGS = PROJECT_ROOT / "mappings"
CASES = sorted(MAPPINGS.glob("*/cases/*/*.input.xml"))
_parser = etree.XMLParser(remove_blank_text=True)


def _target_schema(mapping: str) -> str:
    # A mapping to a partner's format is checked against that partner's XSD; from a partner, canonical.
    from hub.config import load_config
    from hub.settings import Settings
    config = load_config(Settings.from_env())
    for route in config.routes:
        for target in route.to:
            if target.mapping == mapping:
                return target.schema_
    return "canonical"


@pytest.fixture(scope="module")
def mappings():
    return MappingSet(MAPPINGS)


@pytest.fixture(scope="module")
def schemas():
    return SchemaSet(PROJECT_ROOT / "schemas")


def test_every_mapping_has_cases():
    stylesheets = {p.relative_to(MAPPINGS).with_suffix("") for p in MAPPINGS.glob("*/*.xsl")}
    with_cases = {p.parent.parent.parent.relative_to(MAPPINGS) / p.parent.name for p in CASES}
    assert stylesheets and stylesheets <= with_cases, f"mappings without sample cases: {stylesheets - with_cases}"


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name.removesuffix('.input.xml')}")
def test_mapping_case(case, mappings, schemas):
    mapping = f"{case.parent.parent.parent.name}/{case.parent.name}.xsl"
    expected_path = case.with_name(case.name.replace(".input.xml", ".expected.xml"))
    output = mappings.apply(mapping, etree.parse(str(case), _parser).getroot())
    expected = etree.parse(str(expected_path), _parser).getroot()
    actual = etree.fromstring(etree.tostring(output), _parser)
    assert etree.tostring(actual, method="c14n2", strip_text=True) == \
        etree.tostring(expected, method="c14n2", strip_text=True), f"{mapping} output differs from {expected_path.name}"
    schemas.validate(output, _target_schema(mapping), what=f"output of {mapping}")
