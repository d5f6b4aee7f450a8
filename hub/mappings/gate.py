"""What an activation requires: the version's sample cases pass (each output the expected one, valid for its
partner) and it sends no partner a field the personal-data policy withholds from it (hub/mappings/checks.py)."""
from __future__ import annotations

from hub.errors import ActivationConflict


def require_checks(mapping: str, xslt: bytes, settings=None) -> None:
    """ActivationConflict naming each failing case or field; nothing when the version may go live."""
    from hub.mappings import checks
    from hub.settings import Settings
    settings = settings or Settings.from_env()
    report = checks.run_cases(mapping, xslt, settings)
    failures = [report.refused] if report.refused else []
    failures += [f"case {case.name}: {case.error or case.diff or '; '.join(case.schema_errors)}"
                 for case in report.cases if not case.passed]
    if not report.refused and not report.cases:
        failures.append("it has no sample case (mappings/<partner>/cases/): add one before it goes live")
    failures += [f"personal data: {v}" for v in checks.personal_data_violations(mapping, xslt, settings)]
    if failures:
        raise ActivationConflict(f"{mapping}: the version fails its checks: " + "; ".join(failures))
