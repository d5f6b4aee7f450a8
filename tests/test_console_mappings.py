"""The console's mapping pages over HTTP against a running hub: the list with each mapping's routes and active
version, a mapping's versions and diff, the editor's preview on a stored message (a change shown as a diff, a
schema failure, a refused stylesheet), the replay report over the stored history, and activation, rollback and
saving a version, activating it (its last replay shown first) and rolling back, audited. Integration staff and
administrators only; hostile fields are 4xx that change nothing; actions need the session's CSRF token."""
from __future__ import annotations

import re

import pytest

from console_support import ConsoleClient, make_user
from hub.monitor.mappings_page import diff_lines, mapping_name
from hub.errors import NotFound
from support import licence_request

pytestmark = pytest.mark.shared_hub

XML = {"Content-Type": "application/xml"}
NARSA = "narsa/licence-request.to-narsa.xsl"
_people: dict[tuple[str, str], str] = {}
_stored: dict[str, list[str]] = {}


def person(running_hub, role: str, *, post: str | None = None) -> ConsoleClient:
    key = (running_hub.url, role)
    if key not in _people:
        _people[key] = make_user(running_hub.hub.sessions, role, post=post)[0]
    browser = ConsoleClient(running_hub.url, _people[key])
    browser.cookies.set("hub_lang", "en")
    return browser


@pytest.fixture
def stored(running_hub, client, pki_dir) -> list[str]:
    """Three licence requests stored by the hub (their deliveries to NARSA do not matter here)."""
    if running_hub.url not in _stored:
        ids = []
        for n in (11, 12, 13):
            reference = f"LIC-2026-0007{n}"
            answer = client.post("/api/v1/messages", content=licence_request(pki_dir, reference=reference),
                                 headers=XML)
            assert answer.status_code == 202, answer.text
            ids.append(f"REGISTRY-{reference}")
        _stored[running_hub.url] = ids
    return _stored[running_hub.url]


def active_xslt(running_hub) -> str:
    return (running_hub.hub.settings.mappings_dir / NARSA).read_text()


# -- pure functions ---------------------------------------------------------------------------------------------

def test_a_diff_marks_each_line_added_removed_or_kept():
    lines = diff_lines("a\nb\nc\n", "a\nB\nc\nd\n", before_name="v1", after_name="v2")
    kinds = [(line.kind, line.text) for line in lines]
    assert ("remove", "-b") in kinds and ("add", "+B") in kinds and ("add", "+d") in kinds
    assert ("same", " a") in kinds and any(kind == "hunk" for kind, _ in kinds)
    assert diff_lines("same\n", "same\n", before_name="a", after_name="b") == []


@pytest.mark.parametrize("folder, file", [("..", "x.xsl"), ("narsa", "../../etc/passwd"), ("narsa", "x.txt"),
                                          ("NARSA", "a.xsl"), ("narsa", ".hidden.xsl")])
def test_a_mapping_address_outside_the_mappings_is_not_found(folder, file):
    with pytest.raises(NotFound):
        mapping_name(folder, file)


# -- pages ------------------------------------------------------------------------------------------------------

def test_the_list_shows_every_mapping_with_its_routes_and_active_version(running_hub):
    with person(running_hub, "integration") as staff:
        page = staff.get("/monitor/mappings")
    assert page.status_code == 200
    assert 'href="/monitor/mappings"' in page.text  # in the navigation
    files = sorted(str(p.relative_to(running_hub.hub.settings.mappings_dir))
                   for p in running_hub.hub.settings.mappings_dir.rglob("*.xsl") if "/cases/" not in str(p))
    listed = re.findall(r'data-mapping="([^"]+)"', page.text)
    assert listed == files and NARSA in listed
    row = page.text.split(f'data-mapping="{NARSA}"')[1].split("</tr>")[0]
    assert "LicenceAuthenticationRequest" in row and "NARSA" in row and "outbound" in row and "version" in row
    inbound = page.text.split('data-mapping="narsa/licence-result.from-narsa.xsl"')[1].split("</tr>")[0]
    assert "inbound" in inbound


@pytest.mark.parametrize("role", ["supervisor", "consular_agent"])
def test_other_roles_neither_see_nor_reach_the_mapping_pages(running_hub, role):
    with person(running_hub, role, post="FR-PARIS" if role == "consular_agent" else None) as other:
        assert 'href="/monitor/mappings"' not in other.get("/monitor/").text
        for path in ("/monitor/mappings", f"/monitor/mappings/{NARSA}", f"/monitor/mappings/{NARSA}/edit",
                     f"/monitor/mappings/{NARSA}/replay"):
            assert other.get(path).status_code == 403, path
        refused = other.post_form(f"/monitor/mappings/{NARSA}/preview",
                                  {"xslt": active_xslt(running_hub), "message_id": "x"})
        assert refused.status_code == 403


def test_a_mapping_page_shows_its_versions_the_active_stylesheet_and_a_diff(running_hub):
    with person(running_hub, "integration") as staff:
        page = staff.get(f"/monitor/mappings/{NARSA}")
        assert page.status_code == 200
        assert 'data-version="1"' in page.text and "active" in page.text
        assert "DemandeAuthentification" in page.text and 'data-highlight="xml"' in page.text
        same = staff.get(f"/monitor/mappings/{NARSA}", params={"a": 1, "b": 1})
        assert same.status_code == 200 and "No difference." in same.text
        assert staff.get(f"/monitor/mappings/{NARSA}", params={"a": 1, "b": 7}).status_code == 404
        assert staff.get(f"/monitor/mappings/{NARSA}", params={"a": "x", "b": 1}).status_code == 422
        assert staff.get("/monitor/mappings/narsa/nothing-here.xsl").status_code == 404
        assert staff.get("/monitor/mappings/narsa/..%2F..%2Fsecret.xsl").status_code == 404


def preview(staff, xslt: str, message_id: str, *, fragment: bool = True):
    return staff.post_form(f"/monitor/mappings/{NARSA}/preview", {"xslt": xslt, "message_id": message_id},
                           headers={"X-Console-Fragment": "preview"} if fragment else {})


def test_the_editor_previews_a_change_on_a_stored_message_with_its_diff_and_validity(running_hub, stored):
    original = active_xslt(running_hub)
    with person(running_hub, "integration") as staff:
        editor = staff.get(f"/monitor/mappings/{NARSA}/edit")
        assert editor.status_code == 200 and stored[-1] in editor.text  # offered to preview on
        assert "<script>" not in editor.text and 'src="/monitor/static/mapping_editor.js"' in editor.text

        same = preview(staff, original, stored[0])
        assert same.status_code == 200 and 'data-outcome="valid"' in same.text and "data-same" in same.text

        renamed = original.replace("<PaysResidence>", "<PaysDeResidence>").replace("</PaysResidence>",
                                                                                   "</PaysDeResidence>")
        changed = preview(staff, renamed, stored[0])
        assert changed.status_code == 200
        assert 'data-outcome="invalid"' in changed.text and "PaysDeResidence" in changed.text
        assert re.search(r'class="diff-add">\+\s*&lt;PaysDeResidence&gt;', changed.text)
        assert re.search(r'class="diff-remove">-\s*&lt;PaysResidence&gt;', changed.text)

        broken = preview(staff, original.replace("</xsl:stylesheet>", ""), stored[0])
        assert broken.status_code == 200 and 'data-outcome="refused"' in broken.text

        whole = preview(staff, renamed, stored[0], fragment=False)  # without the script: the whole page
        assert whole.status_code == 200 and "<textarea" in whole.text and "PaysDeResidence" in whole.text


def test_hostile_preview_fields_are_refused_with_the_field_named(running_hub, stored):
    original = active_xslt(running_hub)
    with person(running_hub, "integration") as staff:
        assert preview(staff, original, "no-such-message").status_code == 404
        unfit = preview(staff, original, "REGISTRY-\u202e1")
        assert unfit.status_code == 400 and "message_id" in unfit.text
        nul = preview(staff, original.replace("<xsl:output", "<xsl:output\x00"), stored[0])
        assert nul.status_code == 400 and "xslt" in nul.text
        assert preview(staff, original, "").status_code == 400
        too_long = preview(staff, original + "<!--" + "x" * 60_000 + "-->", stored[0])
        assert too_long.status_code in (413, 422)
        no_token = staff.post(f"/monitor/mappings/{NARSA}/preview", data={"xslt": original, "message_id": stored[0]})
        assert no_token.status_code == 403
        # a stored message of another mapping's routes is not one this mapping reads
        other = staff.post_form("/monitor/mappings/narsa/licence-result.from-narsa.xsl/preview",
                                {"xslt": original, "message_id": stored[0]})
        assert other.status_code in (400, 404) and "Output" not in other.text


def test_the_replay_report_counts_identical_different_and_invalid_outputs(running_hub, stored):
    original = active_xslt(running_hub)
    with person(running_hub, "integration") as staff:
        assert staff.get(f"/monitor/mappings/{NARSA}/replay").status_code == 200
        same = staff.post_form(f"/monitor/mappings/{NARSA}/replay", {"version": 1, "last": 50})
        assert same.status_code == 200
        figures = dict(re.findall(r'data-figure="(\w+)"><bdi dir="ltr">([\d\s,.\u202f\u00a0]+)</bdi>', same.text))
        messages = int(re.sub(r"\D", "", figures["messages"]))
        assert messages >= len(stored)
        assert figures["identical"] == figures["messages"] and figures["different"] == "0"

        renamed = original.replace("PaysResidence", "PaysDeResidence")
        draft = staff.post_form(f"/monitor/mappings/{NARSA}/replay", {"xslt": renamed, "last": 2})
        figures = dict(re.findall(r'data-figure="(\w+)"><bdi dir="ltr">([\d\s,.\u202f\u00a0]+)</bdi>', draft.text))
        assert figures["messages"] == "2" and figures["different"] == "2" and figures["invalid"] == "2"
        assert "First differences" in draft.text and "PaysDeResidence" in draft.text
        assert staff.post_form(f"/monitor/mappings/{NARSA}/replay", {"version": 1, "last": 0}).status_code == 422
        assert staff.post_form(f"/monitor/mappings/{NARSA}/replay", {"version": 9, "last": 5}).status_code == 404


def test_a_saved_version_is_replayed_activated_and_rolled_back_each_audited(running_hub, stored):
    from hub.mappings import store
    from hub.store.models import AuditEntry
    from sqlalchemy import select
    original = active_xslt(running_hub)
    restyled = original.replace("<xsl:template", "<!-- the same output, written again -->\n<xsl:template", 1)
    with person(running_hub, "integration") as staff:
        refused = staff.post_form(f"/monitor/mappings/{NARSA}/save", {"xslt": "<not-xslt", "comment": "bad"})
        assert refused.status_code == 400 and "line 1" in refused.text
        saved = staff.post_form(f"/monitor/mappings/{NARSA}/save", {"xslt": restyled, "comment": "restyled"})
        assert saved.status_code in (200, 303), saved.text
        with running_hub.hub.sessions() as session:
            new = max(store.versions(session, NARSA), key=lambda v: v.number)
        assert new.comment == "restyled" and not new.active

        assert staff.post_form(f"/monitor/mappings/{NARSA}/replay", {"version": new.number, "last": 3}).status_code == 200
        confirm = staff.get(f"/monitor/mappings/{NARSA}/activate", params={"version": new.number})
        assert confirm.status_code == 200 and "data-last-replay" in confirm.text  # the replay shown before going live
        assert staff.post_form(f"/monitor/mappings/{NARSA}/activate",
                               {"version": new.number, "reason": "\u202eevil"}).status_code == 400
        assert staff.post(f"/monitor/mappings/{NARSA}/activate",
                          data={"version": new.number, "reason": "no token"}).status_code == 403
        activated = staff.post_form(f"/monitor/mappings/{NARSA}/activate", {"version": new.number, "reason": "tidier"})
        assert activated.status_code in (200, 303), activated.text
        again = staff.post_form(f"/monitor/mappings/{NARSA}/activate", {"version": new.number, "reason": "twice"})
        assert again.status_code == 409
        with running_hub.hub.sessions() as session:
            assert store.active(session, NARSA).number == new.number
        rolled = staff.post_form(f"/monitor/mappings/{NARSA}/rollback", {"reason": "back to the file",
                                                                         "active": new.number})
        assert rolled.status_code in (200, 303), rolled.text
        twice = staff.post_form(f"/monitor/mappings/{NARSA}/rollback", {"reason": "back to the file",
                                                                        "active": new.number})
        assert twice.status_code == 409  # the form sent again does not roll the rollback back
    with running_hub.hub.sessions() as session:
        assert store.active(session, NARSA).xslt.decode() == original
        actions = [e.action for e in session.scalars(select(AuditEntry).where(AuditEntry.subject == NARSA))]
    assert {"MAPPING_VERSION_ADDED", "MAPPING_ACTIVATED", "MAPPING_ROLLED_BACK"} <= set(actions)


def test_an_inbound_mapping_previews_a_partner_document_against_the_canonical_schemas(running_hub, stored):
    from hub.monitor import mappings_source as source
    hub = running_hub.hub
    name = "narsa/licence-result.from-narsa.xsl"
    cases = hub.settings.mappings_dir / "narsa" / "cases" / "licence-result.from-narsa"
    document = sorted(cases.glob("*.input.xml"))[0].read_bytes()
    xslt = (hub.settings.mappings_dir / name).read_bytes()
    shown = source.preview(hub, name, xslt, document=document)
    assert shown.refused is None and shown.schema == "canonical" and shown.valid, shown.schema_errors
    assert shown.same_as_active and "LicenceAuthenticationResult" in shown.output
    broken = source.preview(hub, name, xslt.replace(b"LicenceAuthenticationResult", b"NoSuchType"),
                            document=document)
    assert broken.refused is None and not broken.same_as_active
    assert any(line.startswith("+") and "NoSuchType" in line for line in broken.diff)
    # the canonical envelopes NARSA's routes carry are not partner documents: not offered, not replayed
    mapping = source.find(hub, name)
    assert not source._reads(mapping, (hub.settings.schemas_dir / "examples" /
                                       "LicenceAuthenticationRequest.xml").read_bytes())
    assert source._reads(mapping, document)
    assert source.replay(hub, name, xslt, last=50, actor="test").identical == 0
