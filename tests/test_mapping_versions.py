"""Mapping versions in the database: the files are version 1, a version is stored only if it compiles safely,
exactly one is active, activation needs the sample cases to pass and is audited, a missing or already active
version and a lost race are 409s, rollback is one step, and the hub maps with the active version and names its
sha256 in the delivery's timeline."""
from __future__ import annotations

import hashlib
import threading

import pytest
from sqlalchemy import select

from hub.delivery import workers as engine
from hub.errors import ActivationConflict, NotFound, StylesheetRefused
from hub.intake.door import Arrival
from hub.mappings import store
from hub.settings import PROJECT_ROOT
from hub.store.models import AuditEntry, Delivery, Event, MappingVersion
from support import licence_request

NARSA = "narsa/licence-request.to-narsa.xsl"
ORIGINAL = (PROJECT_ROOT / "mappings" / NARSA).read_bytes()
# Same output, another text: a version whose sample cases pass.
RESTYLED = ORIGINAL.replace(b"<xsl:output", b"<!-- restyled -->\n  <xsl:output", 1)
# Drops the holder's family name: its sample cases fail.
BROKEN = ORIGINAL.replace(b"<Nom><xsl:value-of", b"<Nom>X<xsl:value-of", 1)


def _audit(hub, action: str) -> list[AuditEntry]:
    with hub.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


@pytest.mark.both_databases
def test_the_files_are_version_1_once_and_partner_schemas_are_listed(hub):
    hub.migrate()  # a second start loads nothing new
    with hub.sessions() as session:
        names = store.names(session)
        assert NARSA in names and len(names) == len(list((PROJECT_ROOT / "mappings").glob("*/*.xsl")))
        [version] = store.versions(session, NARSA)
        assert (version.number, version.active, version.author) == (1, True, store.FILES_ACTOR)
        assert version.sha256 == hashlib.sha256(ORIGINAL).hexdigest() == store.active(session, NARSA).sha256
        assert store.get(session, NARSA, version.sha256[:12]).number == 1
        from hub.store.models import PartnerSchema
        assert session.scalar(select(PartnerSchema.sha256).where(PartnerSchema.name.like("%narsa%")))
    assert b"<!-- restyled -->" in RESTYLED and BROKEN != ORIGINAL


@pytest.mark.both_databases
def test_a_hostile_version_is_refused_and_nothing_stored(hub):
    hostile = ORIGINAL.replace(b"<xsl:value-of select=\"env:Header/env:MessageId\"/>",
                               b"<xsl:value-of select=\"document('../../config/hub.yaml')\"/>", 1)
    with hub.sessions.begin() as session, pytest.raises(StylesheetRefused, match="outside the mapping's folder"):
        store.add_version(session, NARSA, hostile, author="cli tester", mappings_dir=hub.settings.mappings_dir)
    with hub.sessions() as session:
        assert [v.number for v in store.versions(session, NARSA)] == [1]


@pytest.mark.both_databases
def test_activate_checks_audits_409s_and_rolls_back(hub):
    with hub.sessions.begin() as session:
        restyled = store.add_version(session, NARSA, RESTYLED, author="cli amina", comment="restyled",
                                     mappings_dir=hub.settings.mappings_dir)
        broken = store.add_version(session, NARSA, BROKEN, author="cli amina", comment="broken",
                                   mappings_dir=hub.settings.mappings_dir)
        again = store.add_version(session, NARSA, RESTYLED, author="cli amina", mappings_dir=hub.settings.mappings_dir)
    assert (restyled.number, broken.number, again.number) == (2, 3, 2)
    assert not restyled.active

    with hub.sessions.begin() as session, pytest.raises(ActivationConflict, match="fails its checks"):
        store.activate(session, NARSA, 3, actor="cli amina", reason="try", settings=hub.settings)
    for missing in (9, 0):
        with hub.sessions.begin() as session, pytest.raises(ActivationConflict, match="no version"):
            store.activate(session, NARSA, missing, actor="cli amina", reason="try", settings=hub.settings)
    with hub.sessions.begin() as session, pytest.raises(ActivationConflict, match="already active"):
        store.activate(session, NARSA, 1, actor="cli amina", reason="try", settings=hub.settings)
    with hub.sessions() as session:
        assert store.active(session, NARSA).number == 1  # every refusal left the active version alone

    with hub.sessions.begin() as session:
        assert store.activate(session, NARSA, 2, actor="cli amina", reason="new layout",
                              settings=hub.settings).active
    with hub.sessions() as session:
        assert [v.number for v in store.versions(session, NARSA) if v.active] == [2]
    [entry] = _audit(hub, store.MAPPING_ACTIVATED)
    assert (entry.actor, entry.subject, entry.detail, entry.digest) == (
        "cli amina", NARSA, "version 1 -> 2: new layout", restyled.sha256)

    with hub.sessions.begin() as session:
        assert store.rollback(session, NARSA, actor="cli karim", reason="partner complained").number == 1
    [entry] = _audit(hub, store.MAPPING_ROLLED_BACK)
    assert (entry.actor, entry.detail) == ("cli karim", "version 2 -> 1: partner complained")
    with hub.sessions() as session:
        history = store.activations(session, NARSA)
        assert [(a.from_number, a.number, a.actor) for a in history] == [
            (None, 1, store.FILES_ACTOR), (1, 2, "cli amina"), (2, 1, "cli karim")]
    with hub.sessions.begin() as session, pytest.raises(NotFound):
        store.rollback(session, "narsa/nothing.xsl", actor="cli karim", reason="")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_activations_at_once_one_wins_the_other_is_told(hub):
    third = ORIGINAL.replace(b"<xsl:output", b"<!-- third -->\n  <xsl:output", 1)
    with hub.sessions.begin() as session:
        for text in (RESTYLED, third):
            store.add_version(session, NARSA, text, author="cli amina", mappings_dir=hub.settings.mappings_dir)
    barrier = threading.Barrier(2)
    outcomes = {}

    def activate(number: int) -> None:
        try:
            with hub.sessions.begin() as session:
                seen = store.active(session, NARSA).number  # both saw the same version active, as two consoles do
                barrier.wait(5)
                store.activate(session, NARSA, number, actor=f"cli {number}", reason="race", settings=hub.settings,
                               expected_active=seen)
            outcomes[number] = "won"
        except ActivationConflict as exc:
            outcomes[number] = exc.status

    threads = [threading.Thread(target=activate, args=(n,)) for n in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes.values(), key=str) == [409, "won"], outcomes
    with hub.sessions() as session:
        winner = next(n for n, outcome in outcomes.items() if outcome == "won")
        assert store.active(session, NARSA).number == winner
        assert len(store.activations(session, NARSA)) == 2


@pytest.mark.both_databases
def test_a_file_changed_on_disk_is_a_new_version_only_while_the_files_rule(hub, tmp_path):
    import shutil
    mappings_dir = tmp_path / "mappings"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings_dir)
    (mappings_dir / NARSA).write_bytes(RESTYLED)
    with hub.sessions.begin() as session:
        assert store.load_files(session, mappings_dir) == [NARSA]
        assert store.active(session, NARSA).number == 2
        assert store.load_files(session, mappings_dir) == []
    with hub.sessions.begin() as session:
        store.rollback(session, NARSA, actor="cli amina", reason="back")
    (mappings_dir / NARSA).write_bytes(RESTYLED.replace(b"restyled", b"edited"))
    with hub.sessions.begin() as session:
        assert store.load_files(session, mappings_dir) == []  # a person activated since: the file waits
        assert store.active(session, NARSA).number == 1
        assert store.export(session, mappings_dir) == [mappings_dir / NARSA]
    assert (mappings_dir / NARSA).read_bytes() == ORIGINAL


@pytest.mark.both_databases
def test_the_hub_maps_with_the_active_version_and_the_timeline_names_it(hub, pki_dir, start_sandbox, tmp_path):
    from hub.engine import Hub
    other = Hub(hub.settings)  # another hub on the same database, as a second process would be
    other.migrate()
    try:
        hub.receive(Arrival("registry", data=licence_request(pki_dir), caller="REGISTRY"))
        with hub.sessions.begin() as session:
            version = store.add_version(session, NARSA, RESTYLED, author="cli amina",
                                        mappings_dir=hub.settings.mappings_dir)
            assert other.mappings.version(NARSA).sha256 == hashlib.sha256(ORIGINAL).hexdigest()
            store.activate(session, NARSA, version.number, actor="cli amina", reason="go", settings=hub.settings)
        other.mappings.poll_seconds = 0.0  # as if its poll interval had passed
        assert other.mappings.version(NARSA).sha256 == version.sha256

        start_sandbox("narsa", "http://127.0.0.1:9")
        hub.mappings.poll_seconds = 0.0
        with hub.sessions() as session:
            delivery_id = session.scalars(select(Delivery.id).where(Delivery.partner == "NARSA")).one()
        engine.deliver(hub, delivery_id)
        with hub.sessions() as session:
            sent = session.scalars(select(Event.detail).where(Event.delivery_id == delivery_id,
                                                             Event.kind == "SENT")).one()
        assert f"mapping {NARSA} sha256 {version.sha256}" in sent
        # the case's evidence bundle, checkable by a third party, names the version used
        import zipfile
        from hub.evidence.chains import seal_pending
        from hub.evidence.export import export_case
        seal_pending(hub)
        bundle = export_case(hub, "LIC-2026-000001", tmp_path, actor="cli tester")
        with zipfile.ZipFile(bundle.path) as archive:
            [name] = [n for n in archive.namelist() if n.endswith("chain/entries.txt")]
            entries = archive.read(name).decode()
        assert f"mapping {NARSA} sha256 {version.sha256}" in entries
    finally:
        other.close()


def test_the_cli_lists_adds_activates_rolls_back_and_exports(hub, tmp_path, pki_dir):
    from support import hub_command
    import shutil
    mappings_dir = tmp_path / "mappings-copy"
    shutil.copytree(PROJECT_ROOT / "mappings", mappings_dir)
    env = {"HUB_DATABASE_URL": hub.settings.database_url, "HUB_VAR_DIR": str(tmp_path / "var"),
           "HUB_PKI_DIR": str(pki_dir), "HUB_CONFIG_DIR": str(hub.settings.config_dir),
           "HUB_MAPPINGS_DIR": str(mappings_dir), "COLUMNS": "200"}
    listed = hub_command("mappings", "list", env=env)
    assert listed.returncode == 0 and NARSA in listed.stdout
    (tmp_path / "restyled.xsl").write_bytes(RESTYLED)
    (tmp_path / "sly.xsl").write_bytes(ORIGINAL.replace(b"<xsl:output", b'<xsl:import href="/etc/passwd"/><xsl:output', 1))
    refused = hub_command("mappings", "add", NARSA, str(tmp_path / "sly.xsl"), env=env)
    assert refused.returncode == 1 and "outside the mapping's folder" in refused.stdout
    added = hub_command("mappings", "add", NARSA, str(tmp_path / "restyled.xsl"), "--comment", "restyled", env=env)
    assert added.returncode == 0 and "version 2" in added.stdout, added.stdout + added.stderr
    assert "+  <!-- restyled -->" in hub_command("mappings", "diff", NARSA, "1", "2", env=env).stdout
    assert hub_command("mappings", "activate", NARSA, "1", "--reason", "again", env=env).returncode == 1
    activated = hub_command("mappings", "activate", NARSA, "2", "--reason", "new layout", env=env)
    assert activated.returncode == 0 and "is active" in activated.stdout
    exported = hub_command("mappings", "export", env=env)
    assert exported.returncode == 0 and (mappings_dir / NARSA).read_bytes() == RESTYLED
    shown = hub_command("mappings", "show", NARSA, env=env).stdout
    assert "new layout" in shown and "1 -> 2" in shown
    assert hub_command("mappings", "rollback", NARSA, "--reason", "back", env=env).returncode == 0
    assert "*" in [line for line in hub_command("mappings", "versions", NARSA, env=env).stdout.splitlines()
                   if line.strip().startswith("│ 1") or " 1 " in line][0]


def test_the_activation_checks_name_each_failing_case_and_schema_problem(settings):
    from hub.mappings import gate
    gate.require_checks(NARSA, RESTYLED, settings)  # the same output, written otherwise: it may go live
    renamed = ORIGINAL.replace(b"<Nom>", b"<Surnom>", 1).replace(b"</Nom>", b"</Surnom>", 1)
    cases = sorted(p.name.removesuffix(".input.xml") for p in
                   (settings.mappings_dir / "narsa/cases/licence-request.to-narsa").glob("*.input.xml"))
    with pytest.raises(ActivationConflict) as refused:
        gate.require_checks(NARSA, renamed, settings)
    assert cases and all(f"case {c}: " in refused.value.detail for c in cases)
    assert "Surnom" in refused.value.detail  # the diff names what changed
    with pytest.raises(ActivationConflict, match="fails its checks: case"):
        gate.require_checks(NARSA, renamed, settings)
