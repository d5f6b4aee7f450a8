"""What the registry takes in, shows and records: health data kept from the roles that may not see it,
text fields that refuse what XML cannot hold and direction controls, a case whose request cannot be built
failed with the reason, refusals and error texts recorded without the values they quote, and who did what
(the token on a message's RECEIVED event, the registry's actions and reads in the audit log).

The HTTP tests share one hub (each with its own citizens and cases); the partners are not running, so
deliveries to them fail on their own and the partners' answers are handed to the registry in process."""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import typing

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select

from connectors.base import Outbound
from hub.store.models import AuditEntry, Refusal
from hub.xml.envelope import bind, read_header
from hub.xml.safe import to_bytes
from hub.xml.text import WITHHELD_VALUE, for_the_record, unfit_character
from registry import canonical, service
from registry.inputs import StrictIn
from registry.models import Citizen
from registry.services import repatriation
from registry.services.judicial import SERVICE as JUDICIAL
from registry.services.passport import SERVICE as PASSPORT
from registry.views import router  # noqa: F401 (imports every service module, so every body model exists)
from conftest import wait_for
from support import CITIZEN, StandInPartner, identity_confirmed, licence_request, register_citizen, replace_text

pytestmark = pytest.mark.shared_hub

POST = "FR-PARIS"
XML = {"Content-Type": "application/xml"}
ROLES = ("administrator", "consular_agent", "supervisor", "integration", "partner")


def client_for(client_as, role: str):
    return client_as(role, post=POST if role == "consular_agent" else None,
                     partner="SANTE" if role == "partner" else None)


def token_id(http) -> str:
    return http.token.split("_")[1]


# -- text as the registry accepts it (functions) ----------------------------------------------------

@pytest.mark.parametrize("character", ["\x00", "\x01", "\x08", "\x0b", "\x1f", "\ud800", "\udfff", "\ufffe", "\uffff",
                                       "\u200e", "\u200f", "\u061c", "\u202a", "\u202e", "\u2066", "\u2069", "\x7f", "\x85"])
def test_characters_xml_cannot_hold_and_direction_controls_are_refused(character):
    assert unfit_character(f"Ali{character}B") == f"U+{ord(character):04X}"


def test_names_in_any_script_tabs_and_line_breaks_are_accepted():
    for text in ("Youssef El Amrani", "يوسف العمراني", "Zoë Ñúñez", "2 rue X\n75001\tParis\r", "😀", ""):
        assert unfit_character(text) is None, text


def body_models() -> list[type[BaseModel]]:
    found, todo = [], [StrictIn]
    while todo:
        model = todo.pop()
        found.append(model)
        todo.extend(model.__subclasses__())
    return found


def text_fields(model: type[BaseModel]):
    """(name, is_list) of every field of `model` holding text (str, optional or not, or a list of str)."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        if str in args:
            yield name, False
        elif any(typing.get_origin(a) is list and typing.get_args(a) == (str,) for a in args):
            yield name, True


def test_every_text_field_of_every_registry_body_refuses_control_and_direction_characters():
    models = body_models()
    assert len(models) > 15, [m.__name__ for m in models]
    checked = 0
    for model in models:
        for name, is_list in text_fields(model):
            for bad in ("A\x01B", "A\u202eB"):
                errors = []
                try:
                    model.model_validate({name: [bad] if is_list else bad})
                except ValidationError as exc:  # every field's errors: this field's are the point
                    errors = [e for e in exc.errors() if e["loc"][0] == name and e["type"] != "missing"]
                assert errors, f"{model.__name__}.{name} accepts {bad!r}"
                if not (model.model_fields[name].metadata and any(
                        getattr(m, "pattern", None) for m in model.model_fields[name].metadata)):
                    assert any(f"U+{ord(bad[1]):04X}" in e["msg"] for e in errors), (model.__name__, name, errors)
            checked += 1
    assert checked > 40


def test_error_texts_for_the_record_withhold_quoted_values_and_are_bounded():
    pattern = ("Element '{urn:ma:gov:consular:licence:1}Cnie': [facet 'pattern'] The value 'BK12 Youssef El Amrani "
               "1988-04-12' is not accepted by the pattern '[A-Z]{1,2}[0-9]{5,6}'.")
    kept = for_the_record(pattern)
    assert "Youssef" not in kept and "1988" not in kept and WITHHELD_VALUE in kept and "Cnie" in kept, kept
    atomic = "Element 'BirthDate': 'Youssef's birthday' is not a valid value of the atomic type 'xs:date'."
    assert for_the_record(atomic) == f"Element 'BirthDate': {WITHHELD_VALUE} is not a valid value of the atomic " \
                                     "type 'xs:date'."
    long = for_the_record("partner answered 400: <Erreur>\n" + "x" * 5000 + "\x00\u202e</Erreur>", 300)
    assert len(long) == 300 and long.endswith("…") and "\n" not in long
    assert unfit_character(for_the_record("a\x00b\u202ec\nd")) is None


# -- health data ------------------------------------------------------------------------------------

CAUSE_CODE, CAUSE_TEXT = "A41.9", "Septicémie nosocomiale QX7"
SANTE_REASON, SANTE_TEXT = "RISQUE_CONTAGION", f"Maladie infectieuse (CIM-10 {CAUSE_CODE}) : mise en bière hermétique"
HEALTH_MARKERS = (CAUSE_CODE, "Septicémie", SANTE_REASON, "CIM-10", "mise en bière")
REP = canonical.maker(repatriation.NS, "rep")
ENV = canonical.ENV


def sante_refuses(running_hub, reference: str) -> None:
    """SANTE's clearance as the hub delivers it to the registry (mapped in, signed by the hub)."""
    clearance = REP.RepatriationClearance(
        REP.CaseReference(reference), REP.Authority("SANTE"), REP.Decision("REFUSED"), REP.Reason(SANTE_REASON),
        REP.ReasonText(SANTE_TEXT), REP.PartnerReference(f"AS-{reference}"), REP.DecidedAt("2026-11-19T10:00:00+00:00"))
    message_id = f"SANTE-R-{reference}"
    header = ENV.Header(ENV.MessageId(message_id), ENV.CorrelationId(reference), ENV.InReplyTo(f"REGISTRY-{reference}"),
                        ENV.Type("RepatriationClearance"), ENV.Sender("SANTE"), ENV.Recipient("REGISTRY"),
                        ENV.Created("2026-11-19T10:00:00+00:00"))
    bound = bind(clearance, read_header(ENV.Message(copy.deepcopy(header))))  # the header the hub signs with it
    envelope = ENV.Message(header, ENV.Body(running_hub.hub.signer.sign(bound)))
    running_hub.apps["registry"].receive(Outbound(message_id, "RepatriationClearance", to_bytes(envelope)))


_REFUSED: dict[str, str] = {}  # hub URL -> the case, made once for the module's tests


@pytest.fixture
def refused_repatriation(running_hub, client):
    """A repatriation at FR-PARIS with its cause of death, refused by SANTE for a health reason."""
    if running_hub.url not in _REFUSED:
        admin = client
        citizen = register_citizen(admin, cnie="HD123456", given_name_latin="Hamid", family_name_latin="Tazi")
        opened = admin.post("/api/v1/cases/repatriation", json={
            "registration_id": citizen["registration_id"],
            "death": {"date": "2026-11-18", "country": "FR", "city": "Paris", "cause_code": CAUSE_CODE,
                      "cause_text": CAUSE_TEXT},
            "burial": {"commune": "1411011", "commune_name": "Agadir"},
            "transport": {"entry_point": "CMN", "arrival_date": "2026-11-25", "carrier": "RAM", "seal_number": "S-9"}})
        assert opened.status_code == 201, opened.text
        sante_refuses(running_hub, opened.json()["reference"])
        _REFUSED[running_hub.url] = opened.json()["reference"]
    return _REFUSED[running_hub.url]


def leaks(value) -> list[str]:
    text = str(value)
    return [marker for marker in HEALTH_MARKERS if marker in text]


# every registry view of a case: what it shows, read by a role (None: the role may not read it at all)
VIEWS = {
    "list": lambda http, ref: [c for c in http.get("/api/v1/cases", params={"service": "REPATRIATION",
                                                                             "limit": 1000}).json()
                               if c["reference"] == ref],
    "record": lambda http, ref: {k: v for k, v in http.get(f"/api/v1/cases/{ref}").json().items()
                                 if k not in ("history", "documents")},
    "documents": lambda http, ref: http.get(f"/api/v1/cases/{ref}").json()["documents"],
    "history": lambda http, ref: http.get(f"/api/v1/cases/{ref}").json()["history"],
}
HEALTH_READERS = {"administrator", "consular_agent"}
REGISTRY_READERS = {"administrator", "consular_agent", "supervisor"}


@pytest.mark.parametrize("role", ROLES)
def test_health_data_reaches_only_the_roles_that_may_see_it_in_every_registry_view(client_as, refused_repatriation,
                                                                                  role):
    http = client_for(client_as, role)
    reference = refused_repatriation
    if role not in REGISTRY_READERS:
        for path in ("/api/v1/cases", f"/api/v1/cases/{reference}"):
            response = http.get(path)
            assert response.status_code == 403 and not leaks(response.text), (role, path)
        return
    seen = {view: read(http, reference) for view, read in VIEWS.items()}
    assert seen["list"] and seen["record"]["status"] == "REFUSED", seen
    assert not leaks(seen["list"]), ("list", role, leaks(seen["list"]))  # lists: for no role
    assert not leaks(seen["history"]), ("history", role, seen["history"])  # every reader of the case sees it
    clearance = seen["record"]["outcome"]["clearances"]["SANTE"]
    assert clearance["decision"] == "REFUSED"  # the decision shows, as the case's status does
    [document] = [d for d in seen["documents"] if d["kind"] == "CLEARANCE_SANTE"]
    if role in HEALTH_READERS:
        assert seen["record"]["details"]["death"]["cause_code"] == CAUSE_CODE
        assert (clearance["reason"], clearance["reason_text"]) == (SANTE_REASON, SANTE_TEXT)
        assert SANTE_REASON in document["xml"] and "CIM-10" in document["xml"]
    else:
        for view in ("record", "documents"):
            assert not leaks(seen[view]), (view, role, leaks(seen[view]))
        assert clearance["reason"] == clearance["reason_text"] == document["xml"] == "[withheld]"


# -- inputs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("given_name_latin", "Ali\u0001\u0000"), ("family_name_arabic", "علي\u202e"),
                                          ("city", "Paris\u2066"), ("email", "ali\u202e@example.fr"),
                                          ("birth_place", "Fès\ufffe")])
def test_a_citizen_with_a_character_xml_cannot_hold_or_a_direction_control_is_refused(client, running_hub, field,
                                                                                      value):
    def citizens() -> int:  # counted, not searched by the value: PostgreSQL takes no NUL in a query either
        with running_hub.hub.sessions() as session:
            return session.scalar(select(func.count()).select_from(Citizen))
    before = citizens()
    response = client.post("/api/v1/citizens", json={
        "post_code": POST, "given_name_latin": "Ali", "family_name_latin": "Benali", "given_name_arabic": "علي",
        "family_name_arabic": "بنعلي", "birth_date": "1990-01-01", "sex": "M", "country": "FR", "city": "Paris",
        "address_lines": "1 rue de la Paix", field: value})
    assert response.status_code in (400, 422), response.text
    assert field in response.text and "U+" in response.text, response.text
    assert citizens() == before


def test_a_case_whose_request_cannot_be_built_fails_with_the_reason(client, running_hub):
    # a citizen stored before names were checked, with a control character lxml refuses to write
    with running_hub.hub.sessions.begin() as session:
        citizen = service.register_citizen(session, post_code=POST, given_name_latin="Ali\u0001",
                                           family_name_latin="Benali", given_name_arabic="علي",
                                           family_name_arabic="بنعلي", birth_date=dt.date(1990, 1, 1), sex="M",
                                           country="FR", city="Paris", cnie="UB123456")
        registration_id = citizen.registration_id
    response = client.post("/api/v1/cases/licence-authentication", json={
        "registration_id": registration_id, "licence": {"number": "12/345673", "categories": ["B"],
                                                        "issue_date": "2010-05-03"}})
    assert response.status_code == 201, response.text
    case = response.json()
    assert case["status"] == "FAILED" and case["request_message_id"] is None, case
    note = case["history"][-1]["note"]
    assert note.startswith("the request could not be built:") and "XML compatible" in note, note
    # FAILED is final: the stalled-case job has nothing to send again
    assert running_hub.apps["registry"].submit_case(case["reference"]) == "FAILED"


# -- records without the values they quote ----------------------------------------------------------

def test_a_refusal_is_recorded_without_the_refused_value(client, running_hub, pki_dir):
    typed = "BK12 Youssef El Amrani 1988-04-12"
    data = replace_text(licence_request(pki_dir, reference="LIC-2026-071201"), "BK123456", typed)
    response = client.post("/api/v1/messages", content=data, headers=XML)
    assert response.status_code == 400, response.text
    with running_hub.hub.sessions() as session:
        [refusal] = session.scalars(select(Refusal).where(Refusal.digest == hashlib.sha256(data).hexdigest())).all()
    assert "Cnie" in refusal.reason and WITHHELD_VALUE in refusal.reason, refusal.reason
    assert "Youssef" not in refusal.reason and "1988-04-12" not in refusal.reason, refusal.reason


# a partner's long error text, quoting the value it refused
PARTNER_ERROR = ("<Erreur><Message>Element 'Cnie': [facet 'pattern'] The value 'BK12 Youssef El Amrani 1988-04-12' is "
                 "not accepted by the pattern '[A-Z]{1,2}[0-9]{5,6}'.</Message>\n<Trace>" + "x" * 5000 + "</Trace></Erreur>")


def test_a_partners_error_text_is_kept_bounded_and_without_the_values_it_quotes(client, running_hub, partner_ports,
                                                                              pki_dir):
    narsa = StandInPartner(partner_ports["NARSA"], PARTNER_ERROR.encode(), status=400)
    try:
        data = licence_request(pki_dir, reference="LIC-2026-071203")
        assert client.post("/api/v1/messages", content=data, headers=XML).status_code == 202
        message = wait_for(lambda: (m := client.get("/api/v1/messages/REGISTRY-LIC-2026-071203").json())["state"]
                           == "DEAD" and m, 20, what="the delivery to NARSA dead-lettered")
    finally:
        narsa.close()
    [dead] = [e["detail"] for e in message["timeline"] if e["event"] == "DEAD_LETTERED"]
    last_error = message["deliveries"][0]["last_error"]
    for kept in (dead, last_error):
        assert "partner answered 400" in kept and WITHHELD_VALUE in kept, kept
        assert "Youssef" not in kept and "1988-04-12" not in kept and "\n" not in kept, kept
        assert len(kept) <= 600, len(kept)


# -- who did what -----------------------------------------------------------------------------------

def test_the_received_event_names_the_token_that_submitted_the_message(client_as, pki_dir):
    admin = client_as("administrator")
    data = licence_request(pki_dir, reference="LIC-2026-071202")
    assert admin.post("/api/v1/messages", content=data, headers=XML).status_code == 202
    timeline = admin.get("/api/v1/messages/REGISTRY-LIC-2026-071202").json()["timeline"]
    received = [e["detail"] for e in timeline if e["event"] == "RECEIVED"]
    assert received == [f"{len(data)} bytes, submitted by token {token_id(admin)} (administrator)"], timeline
    assert admin.token.split("_", 2)[2] not in str(timeline)


def audit_entries(running_hub, http) -> list[tuple[str, str, str]]:
    with running_hub.hub.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.actor.contains(token_id(http)))
                                  .order_by(AuditEntry.id)).all()
    return [(e.action, e.subject, e.detail) for e in entries]


def seeded_case(running_hub, registration_id: str, service_name: str, status: str, **fields) -> str:
    """A case already at `status` (what the partners' answers would have brought it to)."""
    with running_hub.hub.sessions.begin() as session:
        citizen = service.get_citizen(session, registration_id=registration_id)
        case = service.open_case(session, service=service_name, citizen=citizen, details=fields.pop("details", {}),
                                 actor="tests", status=status)
        for name, value in fields.items():
            setattr(case, name, value)
        return case.reference


def test_registrations_case_openings_actions_and_record_reads_are_audited_with_their_actor(client_as, running_hub):
    agent = client_as("consular_agent", post=POST)
    registered = agent.post("/api/v1/citizens", json={**CITIZEN, "cnie": "AU123456", "given_name_latin": "Amal",
                                                      "family_name_latin": "Audit"})
    assert registered.status_code == 202, registered.text
    registration_id, registration_case = registered.json()["registration_id"], registered.json()["registration_case"]
    identity_confirmed(agent, registration_id)  # DGSN's MATCH (its sandbox is not the subject here)
    opened = agent.post("/api/v1/cases/licence-authentication", json={
        "registration_id": registration_id, "licence": {"number": "12/345673", "categories": ["B"],
                                                        "issue_date": "2010-05-03"}})
    assert opened.status_code == 201, opened.text
    licence_case = opened.json()["reference"]
    passport_case = seeded_case(running_hub, registration_id, PASSPORT, "AVAILABLE_AT_POST",
                                partner_reference="DGSN-AU-1", outcome={"passport_number": "AU1234567"})
    assert agent.post(f"/api/v1/cases/{passport_case}/handover", json={"handed_over_on": "2026-11-20"}).json()[
        "status"] == "DELIVERED"
    judicial_case = seeded_case(running_hub, registration_id, JUDICIAL, "AT_POST", partner_reference="TPI-AU-1",
                                request_message_id="JUSTICE-AU-1")
    today = dt.date.today().isoformat()
    assert agent.post(f"/api/v1/cases/{judicial_case}/outcome", json={"outcome": "SERVED"}).status_code == 200
    assert agent.get(f"/api/v1/citizens/{registration_id}").status_code == 200
    assert agent.get(f"/api/v1/cases/{licence_case}").status_code == 200
    assert agent.get("/api/v1/cases").status_code == 200  # a masked list is not a record read

    assert audit_entries(running_hub, agent) == [
        ("CITIZEN_REGISTERED", registration_id, f"at {POST}, pending DGSN's identity check"),
        ("CASE_OPENED", registration_case["reference"], f"CONSULAR_REGISTRATION NEW at {POST}"),
        ("CASE_OPENED", licence_case, f"LICENCE_AUTHENTICATION at {POST}"),
        ("PASSPORT_HANDED_OVER", passport_case, "handed over on 2026-11-20"),
        ("JUDICIAL_OUTCOME_RECORDED", judicial_case, f"SERVED on {today}"),
        ("CITIZEN_VIEWED", registration_id, ""),
        ("CASE_VIEWED", licence_case, ""),
    ]
    with running_hub.hub.sessions() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "CASE_OPENED",
                                                           AuditEntry.subject == licence_case)).all()
    assert entry.actor.startswith(f"token {token_id(agent)} (") and "consular_agent, FR-PARIS" in entry.actor
    # a read refused (another post's case) shows nothing, so records nothing
    other = client_as("consular_agent", post="ES-MADRID")
    assert other.get(f"/api/v1/cases/{licence_case}").status_code == 403
    assert other.get(f"/api/v1/citizens/{registration_id}").status_code == 403
    assert audit_entries(running_hub, other) == []
