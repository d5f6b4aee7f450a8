"""What an activation requires: the version's sample cases pass and it sends no partner a field the
personal-data policy withholds from it.

`require_checks` is the one place activation asks; it uses hub/mappings/checks.py (`run_cases`,
`personal_data_violations`) when that module is present, and otherwise runs the sample cases itself
(mappings/<partner>/cases/<mapping stem>/<name>.input.xml -> <name>.expected.xml, compared canonically, the
output valid against the schema of the routes' target, or the canonical one for a mapping from a partner)."""
from __future__ import annotations

from pathlib import Path

from lxml import etree

from hub.errors import ActivationConflict, InputError, StylesheetRefused
from hub.mappings import safe

_parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


def require_checks(mapping: str, xslt: bytes, settings=None) -> None:
    """ActivationConflict naming each failing case or field; nothing when the version may go live."""
    from hub.settings import Settings
    settings = settings or Settings.from_env()
    try:
        from hub.mappings import checks  # the full checks, when present
    except ImportError:
        checks = None
    if checks is not None:
        report = checks.run_cases(mapping, xslt, settings)
        failures = [f"case {case.name}: {getattr(case, 'diff', '') or getattr(case, 'schema_errors', '')}"
                    for case in getattr(report, "cases", []) if not case.passed]
        failures += [f"personal data: {v}" for v in checks.personal_data_violations(mapping, xslt, settings)]
    else:
        failures = case_failures(mapping, xslt, Path(settings.mappings_dir), validate=_validator(mapping, settings))
    if failures:
        raise ActivationConflict(f"{mapping}: the version fails its checks: " + "; ".join(failures))


def _validator(mapping: str, settings):
    """validate(element) for the schema the mapping's output must satisfy (InputError naming the problem)."""
    from hub.config import load_config
    from hub.xml.schemas import SchemaSet
    config = load_config(settings)
    schema = next((target.schema_ for route in config.routes for target in route.to
                   if target.mapping == mapping and target.schema_), "canonical")
    schemas = SchemaSet(settings.schemas_dir)
    return lambda element: schemas.validate(element, schema, what=f"output of {mapping}")


def case_failures(mapping: str, xslt: bytes, mappings_dir: Path, *, validate=None) -> list[str]:
    """The sample cases this version fails, each named with why."""
    partner, file_name = mapping.split("/", 1)
    folder = mappings_dir / partner
    try:
        compiled = safe.compile_stylesheet(xslt, folder=folder)
    except StylesheetRefused as exc:
        return [exc.detail]
    failures = []
    for case in sorted((folder / "cases" / Path(file_name).stem).glob("*.input.xml")):
        name = case.name.removesuffix(".input.xml")
        expected_path = case.with_name(f"{name}.expected.xml")
        try:
            output = safe.transform(compiled, etree.parse(str(case), _parser).getroot())
        except StylesheetRefused as exc:
            failures.append(f"case {name}: {exc.detail}")
            continue
        if validate is not None:
            try:
                validate(output)
            except InputError as exc:
                failures.append(f"case {name}: invalid for the partner: {exc.detail}")
        actual = etree.fromstring(etree.tostring(output), _parser)
        expected = etree.parse(str(expected_path), _parser).getroot()
        if etree.tostring(actual, method="c14n2", strip_text=True) != \
                etree.tostring(expected, method="c14n2", strip_text=True):
            failures.append(f"case {name}: the output differs from {expected_path.name}")
    return failures
