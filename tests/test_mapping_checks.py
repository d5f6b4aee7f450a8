"""The checks a mapping version passes before it goes live (hub/mappings/checks.py, personal_data.py):
sample cases with a readable diff, preview on a stored message or a document, replay over a stored history,
and the personal-data policy read from config/personal-data.yaml."""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil

import pytest
from lxml import etree

from hub.errors import ConfigError, InputError, NotFound
from hub.mappings import checks
from hub.mappings.personal_data import load_policy, parse_policy, personal_data_violations
from hub.settings import PROJECT_ROOT, Settings

SETTINGS = Settings.from_env(config_dir=PROJECT_ROOT / "config")
NARSA = "narsa/licence-request.to-narsa.xsl"
BURIAL = "etat-civil/burial-notice.to-etat-civil.xsl"
CASE_INPUT = PROJECT_ROOT / "mappings/narsa/cases/licence-request.to-narsa/authentic-with-cnie.input.xml"
GIVEN = b'<Prenom><xsl:value-of select="$req/lic:Holder/lic:LatinName/lic:Given"/></Prenom>'
COUNTRY = b'<PaysResidence><xsl:value-of select="$req/lic:CountryOfResidence"/></PaysResidence>'


def stylesheet(name: str) -> bytes:
    return (PROJECT_ROOT / "mappings" / name).read_bytes()


def changed(old: bytes, new: bytes, name: str = NARSA) -> bytes:
    text = stylesheet(name)
    assert old in text, "the test's anchor is no longer in the stylesheet"
    return text.replace(old, new)


UPPER_GIVEN = changed(GIVEN, b'<Prenom><xsl:value-of select="translate($req/lic:Holder/lic:LatinName/lic:Given, '
                             b"'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')\"/></Prenom>")
NO_COUNTRY = changed(COUNTRY, b"")


# -- sample cases --------------------------------------------------------------------------------------------

def test_the_active_mapping_passes_its_cases():
    report = checks.run_cases(NARSA, stylesheet(NARSA), SETTINGS)
    assert report.passed and len(report.cases) == 2
    assert report.as_dict()["cases"][0] == {"name": "authentic-with-cnie", "passed": True, "diff": "",
                                            "schema_errors": [], "error": None}


def test_a_changed_value_fails_its_cases_with_a_readable_diff():
    report = checks.run_cases(NARSA, UPPER_GIVEN, SETTINGS)
    assert not report.passed and len(report.failures()) == 2
    diff = report.failures()[0].diff
    assert "--- authentic-with-cnie.expected.xml" in diff and "+++ output of authentic-with-cnie.input.xml" in diff
    assert "-    <Prenom>Youssef</Prenom>" in diff and "+    <Prenom>YOUSSEF</Prenom>" in diff
    assert report.failures()[0].schema_errors == []  # still valid for NARSA: only the value differs


def test_an_output_the_partner_schema_refuses_is_named():
    report = checks.run_cases(NARSA, NO_COUNTRY, SETTINGS)
    assert not report.passed
    errors = report.failures()[0].schema_errors
    assert errors and any("PaysResidence" in e for e in errors), errors


def test_a_stylesheet_that_does_not_compile_runs_no_case():
    report = checks.run_cases(NARSA, changed(b"</xsl:stylesheet>", b""), SETTINGS)
    assert not report.passed and report.cases == [] and "not well-formed" in report.refused and "line " in report.refused


def test_a_stylesheet_that_fails_on_a_case_says_so():
    failing = changed(b"<DemandeAuthentification>",
                      b'<DemandeAuthentification><xsl:message terminate="yes">no licence</xsl:message>')
    report = checks.run_cases(NARSA, failing, SETTINGS)
    assert not report.passed and all(c.error for c in report.cases), report.as_dict()


@pytest.mark.parametrize("name", ["narsa/../../config/services.yaml", "narsa/nothing.to-narsa.xsl",
                                  "/etc/passwd", "narsa/licence-request.to-narsa.xsl\x00"])
def test_a_name_that_is_not_a_mapping_is_not_found(name):
    with pytest.raises(NotFound):
        checks.run_cases(name, stylesheet(NARSA), SETTINGS)


# -- the personal-data policy --------------------------------------------------------------------------------

def test_the_policy_is_read_from_the_configuration():
    policy = load_policy(SETTINGS)
    assert policy.fields["Cause"] == {"SANTE"} and policy.fields["Cnie"] == {"DGSN", "ETAT_CIVIL", "NARSA", "CDG"}
    assert policy.allows("Cause", "SANTE") and not policy.allows("Cause", "ETAT_CIVIL")


@pytest.mark.parametrize("text, key", [
    ("fields:\n  Cause: [SANTE, NOBODY]\n", "fields.Cause"),
    ("fields:\n  cause: [SANTE]\n", "fields.cause"),
    ("fields:\n  Cause: SANTE\n", "fields.Cause"),
    ("fields: []\n", "fields"),
    ("field:\n  Cause: [SANTE]\n", "-"),
    ("fields: [\n", "-"),
])
def test_a_bad_policy_names_the_key(text, key, tmp_path):
    with pytest.raises(ConfigError) as raised:
        parse_policy(text, path=tmp_path / "personal-data.yaml", parties={"SANTE", "DGSN"})
    assert raised.value.key == key, str(raised.value)


def test_the_hub_does_not_start_on_a_bad_policy(settings):
    from hub.engine import Hub
    (settings.config_dir / "personal-data.yaml").write_text("fields:\n  Cause: [SANTE, NOBODY]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        Hub(settings)
    assert raised.value.key == "fields.Cause" and "NOBODY" in raised.value.reason


def test_every_active_mapping_respects_the_policy():
    from hub.mappings.catalogue import all_mappings
    config = checks.config_of(SETTINGS)
    for info in all_mappings(config, SETTINGS):
        assert personal_data_violations(info.name, stylesheet(info.name), SETTINGS) == [], info.name


def test_a_version_reading_a_field_its_partner_may_not_receive_is_refused():
    reading = changed(COUNTRY, COUNTRY + b'<xsl:if test="//rep:Cause"><Note/></xsl:if>')
    assert checks.personal_data_violations is personal_data_violations  # the checks' one interface
    assert personal_data_violations(NARSA, reading, SETTINGS) == [
        "Cause: NARSA may not receive it, and the stylesheet reads it"]


def test_a_version_copying_a_field_its_partner_may_not_receive_is_refused():
    # no XPath names the field: only its output on the sample cases shows the leak
    leaking = changed(b'<PrenomLatin><xsl:value-of select="$who/rep:LatinName/rep:Given"/></PrenomLatin>',
                      b"<PrenomLatin><xsl:value-of select=\"//*[local-name()=concat('Ca', 'use')]\"/></PrenomLatin>",
                      name=BURIAL)
    violations = personal_data_violations(BURIAL, leaking, SETTINGS)
    assert violations and all(v.startswith("Cause: ETAT_CIVIL may not receive it") for v in violations), violations
    assert any("no-cnie-port-entry.input.xml" in v for v in violations)


# -- preview, replay and new cases on a stored history -------------------------------------------------------

def store_history(hub, count: int, *, start: dt.datetime) -> list[str]:
    """`count` licence requests as the hub stores them (canonical bytes, a delivery through NARSA's mapping),
    one a minute from `start`, each with its own given name; plus one message of another route (newest)."""
    from hub.store.models import Delivery, Message
    template = CASE_INPUT.read_bytes()
    ids = []
    with hub.sessions.begin() as session:
        for n in range(count + 1):
            other = n == count
            message_id = f"REGISTRY-LIC-{n:05d}" if not other else "REGISTRY-OTHER-1"
            data = template.replace(b"REGISTRY-LIC-2026-180436", message_id.encode()) \
                           .replace(b"<lic:Given>Youssef</lic:Given>", f"<lic:Given>Youssef{n}</lic:Given>".encode())
            if other:
                data = data.replace(b"<env:Type>LicenceAuthenticationRequest<", b"<env:Type>IdentityCheckRequest<")
            at = start + dt.timedelta(minutes=n)
            message = Message(message_id=message_id, sender="REGISTRY", recipient="NARSA",
                              type="IdentityCheckRequest" if other else "LicenceAuthenticationRequest", correlation_id=f"LIC-{n}", state="DELIVERED",
                              digest=hashlib.sha256(data).hexdigest(), received_bytes=data, canonical_bytes=data,
                              receipt=b"<receipt/>", received_at=at, updated_at=at)
            session.add(message)
            session.flush()
            session.add(Delivery(message_pk=message.id, partner="NARSA", state="DELIVERED", next_attempt_at=at,
                                 mapping="dgsn/identity-check.to-dgsn.xsl" if other else NARSA,
                                 schema_name="partners/narsa/authentification-permis.xsd"))
            if not other:
                ids.append(message_id)
    return ids


START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


@pytest.mark.both_databases
def test_replay_over_the_stored_history(hub):
    ids = store_history(hub, 300, start=START)

    same = checks.replay(hub, NARSA, stylesheet(NARSA), last=1000)
    assert (same.messages, same.identical, same.different, same.invalid, same.failed) == (300, 300, 0, 0, 0)
    assert same.per_second > 0 and same.as_dict()["per_second"] == same.per_second

    upper = checks.replay(hub, NARSA, UPPER_GIVEN, last=120)
    assert (upper.messages, upper.identical, upper.different, upper.invalid) == (120, 0, 120, 0)
    assert [d.message_id for d in upper.diffs] == ids[::-1][:checks.FIRST_DIFFS]  # newest first
    assert "-    <Prenom>Youssef299</Prenom>" in upper.diffs[0].diff
    assert "+    <Prenom>YOUSSEF299</Prenom>" in upper.diffs[0].diff

    invalid = checks.replay(hub, NARSA, NO_COUNTRY, since=START + dt.timedelta(minutes=10),
                            until=START + dt.timedelta(minutes=20))
    assert (invalid.messages, invalid.invalid, invalid.different) == (10, 10, 10)
    assert invalid.problems and "PaysResidence" in " ".join(invalid.problems[0].schema_errors)

    refused = checks.replay(hub, NARSA, b"<not-xslt/>", last=5)
    assert refused.refused and refused.messages == 0

    for bad in ({"last": 0}, {"since": START, "until": START}):
        with pytest.raises(InputError):
            checks.replay(hub, NARSA, stylesheet(NARSA), **bad)


@pytest.mark.both_databases
def test_a_message_id_with_a_control_character_is_refused_before_the_database(hub):
    for bad in ("REGISTRY\x00LIC", "A\nB", "x" * 81, ""):
        with pytest.raises(InputError, match="message_id"):
            checks.preview(hub, NARSA, stylesheet(NARSA), message_id=bad)


def test_preview_and_a_case_from_a_stored_message(hub, tmp_path):
    ids = store_history(hub, 3, start=START)

    same = checks.preview(hub, NARSA, stylesheet(NARSA), message_id=ids[1])
    assert same.valid and same.identical and same.diff == "" and "<Prenom>Youssef1</Prenom>" in same.output

    upper = checks.preview(hub, NARSA, UPPER_GIVEN, message_id=ids[1])
    assert upper.valid and upper.identical is False
    assert "-    <Prenom>Youssef1</Prenom>" in upper.diff and "+    <Prenom>YOUSSEF1</Prenom>" in upper.diff

    uploaded = checks.preview(hub, NARSA, NO_COUNTRY, document=CASE_INPUT.read_bytes())
    assert uploaded.source == "uploaded document" and not uploaded.valid and uploaded.schema_errors

    broken = checks.preview(hub, NARSA, b"<xsl:stylesheet", message_id=ids[0])
    assert broken.error and broken.output is None and not broken.valid

    with pytest.raises(InputError):
        checks.preview(hub, NARSA, stylesheet(NARSA), message_id="REGISTRY-OTHER-1")  # another mapping's message
    with pytest.raises(InputError):
        checks.preview(hub, NARSA, stylesheet(NARSA), message_id=ids[0], document=CASE_INPUT.read_bytes())
    with pytest.raises(NotFound):
        checks.preview(hub, NARSA, stylesheet(NARSA), message_id="NO-SUCH-MESSAGE")

    # a new sample case from a stored message, in a copy of the mappings
    from hub.engine import Hub
    mappings = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings)
    copy = Hub(hub.settings.model_copy(update={"mappings_dir": mappings}), engine=hub.engine)
    try:
        written = checks.add_case(copy, NARSA, ids[2], "stored-youssef2", actor="cli tester")
        assert [p.name for p in written] == ["stored-youssef2.input.xml", "stored-youssef2.expected.xml"]
        assert b"Youssef2" in written[0].read_bytes()
        assert etree.parse(str(written[1])).getroot().findtext(".//{*}Prenom") == "Youssef2"
        from sqlalchemy import select
        from hub.store.models import AuditEntry
        with hub.sessions() as session:
            entries = session.scalars(select(AuditEntry).where(AuditEntry.action == checks.CASE_ADDED)).all()
        assert [(e.actor, e.subject, e.detail) for e in entries] == [
            ("cli tester", NARSA, f"case stored-youssef2 from message {ids[2]}")]
        report = checks.run_cases(NARSA, stylesheet(NARSA), copy.settings, config=copy.config)
        assert report.passed and "stored-youssef2" in [c.name for c in report.cases]
        assert not checks.run_cases(NARSA, UPPER_GIVEN, copy.settings, config=copy.config).passed
        with pytest.raises(InputError):
            checks.add_case(copy, NARSA, ids[1], "stored-youssef2", actor="cli tester")  # never overwrites
        with pytest.raises(InputError):
            checks.add_case(copy, NARSA, ids[1], "../escape", actor="cli tester")
    finally:
        copy.close()


def test_replay_of_a_mapping_from_a_partner_reads_what_the_partner_sent(hub):
    """A mapping from a partner maps the partner's own document: the replay reads the received bytes of that
    partner's messages (the canonical form is what the active version made of them)."""
    from hub.store.models import Message
    name = "narsa/licence-result.from-narsa.xsl"
    cases = sorted((PROJECT_ROOT / "mappings/narsa/cases/licence-result.from-narsa").glob("*.input.xml"))
    with hub.sessions.begin() as session:
        for n, case in enumerate(cases):
            data = case.read_bytes()
            session.add(Message(message_id=f"NARSA-R-{n}", sender="NARSA", recipient="REGISTRY",
                                type="LicenceAuthenticationResult", correlation_id=f"LIC-{n}", state="DELIVERED",
                                digest=hashlib.sha256(data).hexdigest(), received_bytes=data,
                                canonical_bytes=case.with_name(case.name.replace(".input", ".expected")).read_bytes(),
                                receipt=b"<receipt/>", received_at=START, updated_at=START))
    same = checks.replay(hub, name, stylesheet(name), last=10)
    assert (same.messages, same.identical, same.invalid, same.skipped) == (len(cases), len(cases), 0, 0)
    dropped = checks.replay(hub, name, changed(b"<env:Type>", b"<env:Kind>", name=name).replace(
        b"</env:Type>", b"</env:Kind>"), last=10)
    assert dropped.different == dropped.invalid == len(cases), dropped.as_dict()


@pytest.mark.parametrize("hostile", [
    b'<xsl:value-of select="document(\'/etc/passwd\')"/>',                   # reads outside its folder
    b'<xsl:call-template name="forever"/>',                                  # never ends (recursion)
], ids=["reads-outside", "recurses-forever"])
def test_a_hostile_version_fails_its_cases_and_the_replay_without_harm(hostile, hub):
    version = changed(b"</xsl:stylesheet>", b'<xsl:template name="forever"><xsl:call-template name="forever"/>'
                                            b"</xsl:template></xsl:stylesheet>").replace(
        b"<DemandeAuthentification>", b"<DemandeAuthentification>" + hostile)
    report = checks.run_cases(NARSA, version, SETTINGS)
    assert not report.passed and (report.refused or all(c.error for c in report.cases)), report.as_dict()
    assert "root:" not in str(report.as_dict())
    store_history(hub, 3, start=START)
    replayed = checks.replay(hub, NARSA, version, last=3)
    assert replayed.refused or replayed.failed == 3, replayed.as_dict()
