"""Data minimisation (law 09-08): each partner gets only the fields its flow needs.

`NEEDED_BY` is the policy, read from config/personal-data.yaml (the same file the hub checks every new
mapping version against, hub/mappings/personal_data.py): for each personal field of the canonical messages
(by local name), the partners whose flow needs it. Three proofs:
  1. the mappings' XPaths: no stylesheet for a partner reads a field that partner does not need;
  2. the mappings' output: every route target's mapping, fed every sample of its message type (the
     cases under mappings/), never copies a value of a field its partner does not need;
  3. end to end: after a real repatriation case with real sandboxes, the cause of death is in the
     bytes the hub sent to SANTE and in what SANTE received, and nowhere else.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

from hub.config import load_config
from hub.mappings.personal_data import load_policy
from hub.xml.mapping import MappingSet
from hub.store.models import Delivery
from hub.settings import PROJECT_ROOT, Settings
from test_repatriation_flow import hub_and_partners, register, repatriation, wait_final  # noqa: F401 (fixture)

SETTINGS = Settings.from_env(config_dir=PROJECT_ROOT / "config")
NEEDED_BY = load_policy(SETTINGS).fields   # config/personal-data.yaml: the hub refuses versions that break it
CONFIG = load_config(SETTINGS)
TARGETS = [(route.type, target) for route in CONFIG.routes for target in route.to if target.mapping]
XSL = "http://www.w3.org/1999/XSL/Transform"


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return MappingSet(SETTINGS.mappings_dir)


def samples(message_type: str) -> list[Path]:
    """Every mapping case input that is a canonical message of `message_type`."""
    found = []
    for path in sorted(SETTINGS.mappings_dir.glob("*/cases/*/*.input.xml")):
        root = etree.parse(str(path)).getroot()
        if root.findtext("{urn:ma:gov:consular:hub:envelope:1}Header/{urn:ma:gov:consular:hub:envelope:1}Type") \
                == message_type:
            found.append(path)
    return found


def personal_values(root) -> dict[str, set[str]]:
    """field -> the text values it carries in `root` (4 characters or more: codes like 'F' say nothing)."""
    values: dict[str, set[str]] = {}
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname in NEEDED_BY:
            for text in element.itertext():
                if len(text.strip()) >= 4:
                    values.setdefault(etree.QName(element).localname, set()).add(text.strip())
    return values


def test_every_message_type_with_a_mapping_has_samples():
    assert TARGETS
    for message_type, target in TARGETS:
        assert samples(message_type), f"no sample of {message_type} under mappings/*/cases"


@pytest.mark.parametrize("message_type, target", TARGETS, ids=[f"{t.partner}:{t.mapping}" for _, t in TARGETS])
def test_no_mapping_reads_a_field_its_partner_does_not_need(message_type, target):
    tree = etree.parse(str(SETTINGS.mappings_dir / target.mapping))
    expressions = [value for node in tree.iter() if isinstance(node.tag, str) and node.tag.startswith(f"{{{XSL}}}")
                   for name, value in node.attrib.items() if name in ("select", "test", "match", "use")]
    read = {name for expression in expressions for name in re.findall(r"(?:\w+:)?([A-Z]\w*)", expression)}
    for field in read & set(NEEDED_BY):
        assert target.partner in NEEDED_BY[field], \
            f"{target.mapping} reads {field}, which {target.partner} does not need"


@pytest.mark.parametrize("message_type, target", TARGETS, ids=[f"{t.partner}:{t.mapping}" for _, t in TARGETS])
def test_no_mapping_copies_a_field_its_partner_does_not_need(message_type, target, mappings):
    for path in samples(message_type):
        canonical = etree.parse(str(path)).getroot()
        if not target.applies_to(canonical):
            continue
        output = etree.tostring(mappings.apply(target.mapping, canonical), encoding="unicode")
        for field, values in personal_values(canonical).items():
            if target.partner not in NEEDED_BY[field]:
                leaked = [v for v in values if v in output]
                assert not leaked, f"{target.mapping} gives {target.partner} {field} {leaked} from {path.name}"


def test_the_cause_of_death_reaches_only_sante_on_every_route_target(mappings):
    marker = "Cause très confidentielle XQZ-4711"
    rendered = {}
    for path in samples("RepatriationRequest"):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"<rep:Text>[^<]*</rep:Text>", f"<rep:Text>{marker}</rep:Text>", text)
        canonical = etree.fromstring(text.encode())
        for route_type, target in TARGETS:
            if route_type == "RepatriationRequest":
                rendered[target.partner] = etree.tostring(mappings.apply(target.mapping, canonical), encoding="unicode")
    assert set(rendered) == {"SANTE", "ETAT_CIVIL", "DGSN"}
    assert marker in rendered["SANTE"] and "I21.9" in rendered["SANTE"]
    for partner in ("ETAT_CIVIL", "DGSN"):
        assert marker not in rendered[partner] and "I21.9" not in rendered[partner], partner


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_end_to_end_the_cause_of_death_is_sent_to_sante_only(hub_and_partners):  # noqa: F811
    hub, client, boxes = hub_and_partners
    reference = repatriation(client, register(client))
    assert wait_final(client, reference)["status"] == "AUTHORISED"
    with hub.hub.sessions() as session:
        sent = {d.partner: d.sent_bytes for d in session.scalars(select(Delivery)) if d.sent_bytes}
    assert {"SANTE", "ETAT_CIVIL", "DGSN"} <= set(sent)
    cause = "Cause médicale confidentielle".encode()
    assert [partner for partner, body in sent.items() if cause in body or b"I21.9" in body] == ["SANTE"]
    received = {name.upper(): b"".join(p.read_bytes() for p in box.received(name.upper()))
                for name, box in boxes.items()}
    assert [partner for partner, body in received.items() if cause in body or b"I21.9" in body] == ["SANTE"]
