"""Every service's answer deadline (config/services.yaml, registry/deadlines.py): read and validated at start,
overdue cases, answer-time percentiles; and the status machines' FAILED that a late answer may leave."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest
from sqlalchemy import select

from hub.errors import ConfigError, TransitionRefused
from hub.settings import PROJECT_ROOT, Settings
from hub.store.db import make_engine, make_sessionmaker, utcnow
from registry import catalogue, deadlines, service, statuses
from registry.history import problems
from registry.models import Case, CaseDocument, CaseEvent


def settings_with(tmp_path, text: str | None, **overrides) -> Settings:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    if text is not None:
        (config / "services.yaml").write_text(text, encoding="utf-8")
    return Settings.from_env(config_dir=config, environment={}, **overrides)


def test_durations():
    assert [deadlines.parse_duration(v) for v in (90, "90", "90s", "30m", "6h", "2d", "1.5h")] == \
        [90, 90, 90, 1800, 21600, 172800, 5400]
    for bad in ("", "0", "-5m", "5w", "6 hours", "1e9", True, None, [], "999d", "1h\x00"):
        with pytest.raises(ValueError):
            deadlines.parse_duration(bad)
    assert [deadlines.human(s) for s in (172800, 21600, 1800, 45, 90)] == ["2d", "6h", "30m", "45s", "90s"]


def test_the_shipped_file_gives_every_service_a_deadline_and_the_repatriation_keeps_its_setting(tmp_path):
    shutil.copyfile(PROJECT_ROOT / "config" / "services.yaml", tmp_path / "services.yaml")
    loaded = deadlines.load(Settings.from_env(config_dir=tmp_path, environment={},
                                              repatriation_deadline_seconds=3))
    assert set(loaded) == set(catalogue.by_service())
    assert loaded["LICENCE_AUTHENTICATION"].seconds == 2 * 86400
    assert loaded["LICENCE_AUTHENTICATION"].source == "config/services.yaml"
    assert loaded["REPATRIATION"].seconds == 3 and loaded["REPATRIATION"].source == "HUB_REPATRIATION_DEADLINE_SECONDS"
    for module in catalogue.modules():  # what the service waits in are its statuses
        assert set(module.AWAITING) <= set(module.MACHINE) and module.PARTNERS


def test_without_the_file_every_service_has_its_default(tmp_path):
    loaded = deadlines.load(settings_with(tmp_path, None))
    assert loaded["CIVIL_STATUS_EXTRACT"].seconds == 3600 and loaded["CIVIL_STATUS_EXTRACT"].source == "default"
    assert loaded["REPATRIATION"].seconds == 6 * 3600


@pytest.mark.parametrize("text, key, words", [
    ("services:\n  LICENCE_AUTHENTICATION:\n    answer_within: soon\n", "services.LICENCE_AUTHENTICATION.answer_within",
     "'soon' is not a duration"),
    ("services:\n  LICENCE_AUTHENTICATION:\n    answer_within: 0\n", "services.LICENCE_AUTHENTICATION.answer_within",
     "more than 0 seconds"),
    ("services:\n  LICENSE_AUTHENTICATION:\n    answer_within: 2d\n", "services.LICENSE_AUTHENTICATION",
     "unknown service"),
    ("services:\n  TRANSCRIPTION:\n    answer_whithin: 2d\n", "services.TRANSCRIPTION.answer_whithin", "unknown key"),
    ("services:\n  TRANSCRIPTION: 2d\n", "services.TRANSCRIPTION", "expected a mapping"),
    ("services:\n  REPATRIATION:\n    answer_within: 2h\n", "services.REPATRIATION.answer_within",
     "HUB_REPATRIATION_DEADLINE_SECONDS"),
    ("deadlines: {}\n", "deadlines", "unknown key"),
    ("services: [1\n", "-", "not valid YAML"),
])
def test_a_bad_file_is_a_clear_error_naming_file_and_key(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as caught:
        deadlines.load(settings_with(tmp_path, text))
    error = caught.value
    assert error.file.endswith("services.yaml") and error.key == key and words in error.reason, str(error)


def test_a_late_answer_may_leave_failed_where_the_service_says_so():
    assert statuses.resumes_after_failure("LICENCE_AUTHENTICATION") == {"AUTHENTIC", "NOT_AUTHENTIC", "DISCREPANCY"}
    assert statuses.resumes_after_failure("REPATRIATION") == {"AUTHORISED", "REFUSED"}
    assert statuses.resumes_after_failure("JUDICIAL_DOCUMENT") == frozenset()  # a refused certificate: final
    assert statuses.is_final("JUDICIAL_DOCUMENT", "FAILED") and not statuses.is_final("LICENCE_AUTHENTICATION",
                                                                                        "FAILED")
    for module in catalogue.modules():  # FAILED still ends a case for the API (nothing moves it by itself)
        assert "FAILED" in statuses.final_statuses(module.SERVICE)
        assert "FAILED" not in statuses.open_statuses(module.SERVICE)
    statuses.check_transition("LICENCE_AUTHENTICATION", "FAILED", "AUTHENTIC")
    statuses.check_transition("LICENCE_AUTHENTICATION", "FAILED", "AWAITING_PARTNER")  # its request resent
    with pytest.raises(TransitionRefused):
        statuses.check_transition("LICENCE_AUTHENTICATION", "FAILED", "FAILED")
    with pytest.raises(TransitionRefused):  # a refused certificate is not resumed by a resend
        statuses.check_transition("JUDICIAL_DOCUMENT", "FAILED", "CERTIFYING")
    # where a resent message's case waits again: the status it waits in for the partner's answer
    assert statuses.resume_status("LICENCE_AUTHENTICATION") == "AWAITING_PARTNER"
    assert statuses.resume_status("CONSULAR_REGISTRATION") == "IDENTITY_CHECK"
    assert statuses.resume_status("LIFE_CERTIFICATE") == "BATCHED"
    assert statuses.resume_status("JUDICIAL_DOCUMENT") is None


def test_people_cancel_open_or_failed_cases_and_retry_the_failed_ones_that_send_a_request():
    for module in catalogue.modules():
        service = module.SERVICE
        assert "CANCELLED" in statuses.final_statuses(service) and statuses.is_final(service, "CANCELLED")
        narrowed = getattr(module, "CANCELLABLE", None)
        for status in statuses.open_statuses(service) + ["FAILED"]:
            assert statuses.cancellable(service, status) == (narrowed is None or status in narrowed), (service, status)
        for status in statuses.final_statuses(service) - {"FAILED"}:
            assert not statuses.cancellable(service, status), (service, status)
    # a judicial document is the court's: never cancelled; a life certificate only before CDG holds it
    assert not any(statuses.cancellable("JUDICIAL_DOCUMENT", s) for s in ("RECEIVED", "AT_POST", "FAILED"))
    assert statuses.cancellable("LIFE_CERTIFICATE", "ISSUED") and not statuses.cancellable("LIFE_CERTIFICATE", "BATCHED")
    assert statuses.retryable("LICENCE_AUTHENTICATION") and not statuses.retryable("JUDICIAL_DOCUMENT")
    statuses.check_transition("LICENCE_AUTHENTICATION", "FAILED", "SUBMITTED")
    with pytest.raises(TransitionRefused):  # a judicial document is Justice's to send again, not the post's
        statuses.check_transition("JUDICIAL_DOCUMENT", "FAILED", "SUBMITTED")
    with pytest.raises(TransitionRefused):
        statuses.check_transition("LICENCE_AUTHENTICATION", "AUTHENTIC", "CANCELLED")


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _case(session, service_name: str, status: str, opened_ago: dt.timedelta, post: str = "FR-PARIS",
          history: list[tuple[str, dt.timedelta]] = (), details: dict | None = None) -> Case:
    opened = utcnow() - opened_ago
    case = Case(reference=f"T-{service_name[:3]}-{status}-{int(opened_ago.total_seconds())}-{post}",
                service=service_name, post_code=post, status=status, details=details or {}, created_at=opened,
                updated_at=opened)
    session.add(case)
    session.flush()
    session.add(CaseEvent(case_id=case.id, at=opened, status="SUBMITTED", actor="test", note=""))
    for step, after in history:
        session.add(CaseEvent(case_id=case.id, at=opened + after, status=step, actor="test", note=""))
    return case


def test_overdue_cases_and_answer_percentiles(sessions, tmp_path):
    loaded = deadlines.load(settings_with(tmp_path, "services:\n  LICENCE_AUTHENTICATION:\n    answer_within: 1h\n",
                                          repatriation_deadline_seconds=600))
    hour, minute = dt.timedelta(hours=1), dt.timedelta(minutes=1)
    with sessions.begin() as session:
        for post in ("FR-PARIS", "ES-MADRID"):  # posts.csv is loaded by the registry at start: add them here
            from registry.models import Post
            if session.get(Post, post) is None:
                session.add(Post(code=post, name=post, kind="CONSULATE", country=post[:2], city=post[3:]))
        session.flush()
        late = _case(session, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER", 2 * hour)
        _case(session, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER", 2 * hour, post="ES-MADRID")
        _case(session, "LICENCE_AUTHENTICATION", "AWAITING_PARTNER", 10 * minute)       # not yet due
        _case(session, "LICENCE_AUTHENTICATION", "FAILED", 3 * hour, history=[("FAILED", minute)])  # not waiting
        for i, took in enumerate((1, 2, 3, 4, 90)):  # answered after `took` minutes
            _case(session, "LICENCE_AUTHENTICATION", "AUTHENTIC", (3 + i) * hour,
                  history=[("AWAITING_PARTNER", dt.timedelta(seconds=1)), ("AUTHENTIC", took * minute)])
        escalated = _case(session, "REPATRIATION", "ESCALATED", 20 * minute, details={
            "deadline_at": (utcnow() - 10 * minute).isoformat()})
        cleared = _case(session, "REPATRIATION", "AUTHORISED", 5 * hour)
        for authority, took in (("SANTE", 2), ("ETAT_CIVIL", 5), ("DGSN", 7)):
            session.add(CaseDocument(case_id=cleared.id, kind=f"CLEARANCE_{authority}", content=b"<x/>",
                                     source_message_id=f"M-{authority}", received_at=cleared.created_at + took * minute))
        late_ref, escalated_ref = late.reference, escalated.reference
    with sessions() as session:
        found = deadlines.overdue_cases(session, loaded)
        assert found[-1]["reference"] == escalated_ref  # the longest overdue first
        assert {c["reference"] for c in found} >= {late_ref, escalated_ref} and len(found) == 3
        assert all(c["deadline_at"] < utcnow() for c in found)
        paris = deadlines.overdue_cases(session, loaded, post_code="FR-PARIS")
        assert len(paris) == 2 and {c["post_code"] for c in paris} == {"FR-PARIS"}
        assert deadlines.overdue_counts(session, loaded) == {"LICENCE_AUTHENTICATION": 2, "REPATRIATION": 1}
        assert deadlines.overdue_counts(session, loaded, post_code="ES-MADRID") == {"LICENCE_AUTHENTICATION": 1}
        rows = {(r["service"], r["partner"]): r for r in deadlines.answer_times(session, loaded)}
    licence = rows[("LICENCE_AUTHENTICATION", "NARSA")]
    assert licence["answered"] == 5 and licence["p50_seconds"] == pytest.approx(180, abs=1)
    assert licence["p95_seconds"] == pytest.approx(5400, abs=1) and licence["within_deadline"] == 4
    assert licence["waiting"] == 3 and licence["overdue"] == 2 and licence["deadline"] == "1h"
    assert rows[("REPATRIATION", "DGSN")]["p50_seconds"] == pytest.approx(420, abs=1)
    assert rows[("REPATRIATION", "SANTE")]["answered"] == 1 and rows[("REPATRIATION", "SANTE")]["overdue"] == 1
    assert rows[("CIVIL_STATUS_EXTRACT", "ETAT_CIVIL")]["answered"] == 0
    assert rows[("CIVIL_STATUS_EXTRACT", "ETAT_CIVIL")]["p95_seconds"] is None


def test_a_second_dead_letter_of_a_failed_case_is_a_note_and_a_late_answer_resumes_it(sessions):
    with sessions.begin() as session:
        from registry.models import Post
        if session.get(Post, "FR-PARIS") is None:
            session.add(Post(code="FR-PARIS", name="Paris", kind="CONSULATE", country="FR", city="Paris"))
        case = service.open_case(session, service="REPATRIATION", citizen=None, details={}, actor="test",
                                 post_code="FR-PARIS")
        service.move_case(session, case=case, status="AWAITING_CLEARANCES", actor="hub")
        service.move_case(session, case=case, status="FAILED", actor="hub", note="DGSN dead")
        service.note_case(session, case=case, actor="hub", note="SANTE dead too")
        assert service.move_case(session, case=case, status="AUTHORISED", actor="hub", note="all granted")
        reference = case.reference
    with sessions() as session:
        case = session.scalars(select(Case).where(Case.reference == reference)).one()
        assert [(e.status, e.note) for e in case.history][-3:] == [
            ("FAILED", "DGSN dead"), ("FAILED", "SANTE dead too"),
            ("AUTHORISED", "after the failure, a late answer: all granted")]
        assert list(problems(session)) == []  # the history moves as the machine allows
