"""The console's message catalogues kept whole: every string of its templates and code, in every language.

Strings to translate are found where the console's pages are made (hub/monitor and the apps' console parts:
registry/): `_("...")`, `gettext`, `ngettext` and `N_("...")` (a mark for strings translated later) in Python
and templates, and the labels of `NavItem(path, label, permission)`. `hub dev catalogues` adds the new ones to
each hub/monitor/locale/<lang>/LC_MESSAGES/console.po, with an empty translation to fill in, drops those no
longer used, and lists what is untranslated; `make test` fails while any is (tests/test_console_catalogue.py).
"""
from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

from hub.monitor.i18n import LANGUAGES, catalogue_path, read_catalogue
from hub.settings import PROJECT_ROOT

SOURCES = (PROJECT_ROOT / "hub" / "monitor", PROJECT_ROOT / "registry")
METHODS = [("**/templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "NavItem": (2,)}
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}}


def N_(message: str) -> str:
    """Marks a string for the catalogue without translating it here (it is translated where it is shown)."""
    return message


ROLE_NAMES = (N_("consular_agent"), N_("integration"), N_("supervisor"), N_("partner"), N_("administrator"))


def extract() -> dict:
    """msgid -> where it is used ("path:line"), over SOURCES; a plural's msgid is (singular, plural)."""
    found: dict = {}
    for source in SOURCES:
        for filename, line, message, _comments, _context in extract_from_dir(
                source, METHODS, keywords=KEYWORDS, options_map=OPTIONS):
            msgid = tuple(message[:2]) if isinstance(message, tuple) else message
            if msgid and all(msgid):
                found.setdefault(msgid, []).append(f"{Path(source, filename).relative_to(PROJECT_ROOT)}:{line}")
    return found


def untranslated(lang: str, msgids=None) -> list[str]:
    catalogue = read_catalogue(lang)
    msgids = extract() if msgids is None else msgids
    return sorted(str(m) for m in msgids if not _translated(catalogue.get(m[0] if isinstance(m, tuple) else m)))


def _translated(message) -> bool:
    if message is None or not message.string:
        return False
    return all(message.string) if isinstance(message.string, tuple) else True


def update() -> dict[str, list[str]]:
    """Bring every language's catalogue in line with the sources; returns lang -> untranslated msgids."""
    msgids = extract()
    missing = {}
    for lang in LANGUAGES:
        path = catalogue_path(lang)
        old = read_catalogue(lang) if path.exists() else Catalog(locale=lang)
        new = Catalog(locale=lang, project="consular-exchange-hub", domain="console", fuzzy=False,
                      creation_date=old.creation_date, revision_date=old.revision_date)
        for msgid in sorted(msgids, key=lambda m: m[0] if isinstance(m, tuple) else m):
            kept = old.get(msgid[0] if isinstance(msgid, tuple) else msgid)
            string = kept.string if kept and isinstance(kept.string, tuple) == isinstance(msgid, tuple) else None
            if string is None:
                string = ("",) * new.num_plurals if isinstance(msgid, tuple) else ""
            new.add(msgid, string, locations=[tuple(place.rsplit(":", 1)) for place in msgids[msgid]])
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            write_po(f, new, width=120, omit_header=False, sort_output=True, include_lineno=False)
        missing[lang] = untranslated(lang, msgids)
    return missing
