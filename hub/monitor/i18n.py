"""The console's languages: French (the default), Arabic (right to left) and English.

Strings are written in English in the code and templates and translated in gettext catalogues,
hub/monitor/locale/<lang>/LC_MESSAGES/console.po, read with Babel when the console starts (no compile
step). A viewer's language is the one they chose (cookie `hub_lang`), else the best match of their browser's
Accept-Language, else French. Dates are shown in the viewer's time zone (cookie `hub_tz`, set by the page
from the browser; Africa/Casablanca by default), with the zone named."""
from __future__ import annotations

import datetime as dt
import io
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

from babel import Locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LANGUAGES = ("fr", "ar", "en")
DEFAULT_LANGUAGE = "fr"
RIGHT_TO_LEFT = {"ar"}
LANGUAGE_NAMES = {"fr": "Français", "ar": "العربية", "en": "English"}
DEFAULT_ZONE = "Africa/Casablanca"
LOCALE_DIR = Path(__file__).parent / "locale"


def catalogue_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / "console.po"


def read_catalogue(lang: str):
    with open(catalogue_path(lang), "rb") as f:
        return read_po(f, locale=lang)


@lru_cache(maxsize=None)
def translations(lang: str) -> Translations:
    """The catalogue of `lang` as gettext translations (an untranslated string falls back to its English id)."""
    buffer = io.BytesIO()
    write_mo(buffer, read_catalogue(lang))
    buffer.seek(0)
    return Translations(fp=buffer, domain="console")


def direction(lang: str) -> str:
    return "rtl" if lang in RIGHT_TO_LEFT else "ltr"


def negotiate(chosen: str | None, accept_language: str | None) -> str:
    """The viewer's language: their choice, else their browser's best match, else French."""
    if chosen in LANGUAGES:
        return chosen
    wanted = []
    for part in (accept_language or "")[:500].split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            wanted.append((quality, tag.strip().lower()))
    for _quality, tag in sorted(wanted, key=lambda item: -item[0]):
        base = tag.split("-")[0]
        if base in LANGUAGES and _quality > 0:
            return base
    return DEFAULT_LANGUAGE


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str | None) -> ZoneInfo:
    """The viewer's zone (a known IANA name), else Africa/Casablanca."""
    return ZoneInfo(name if name and len(name) < 64 and name in _zones() else DEFAULT_ZONE)


class Formats:
    """Dates and numbers for one viewer (their language and zone)."""

    def __init__(self, lang: str, tz: ZoneInfo):
        self.lang, self.tz, self.locale = lang, tz, Locale.parse(lang)

    def when(self, moment: dt.datetime | None, *, seconds: bool = False) -> str:
        """`2026-12-03 12:05 (Africa/Casablanca)`: digits as everywhere in the administration, the zone named."""
        if moment is None:
            return "—"
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        local = moment.astimezone(self.tz)
        return f"{local.strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')} ({self.tz.key})"

    def ago(self, moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
        """How long ago, in words of the viewer's language ("3 minutes")."""
        if moment is None:
            return "—"
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        now = now or dt.datetime.now(dt.timezone.utc)
        return format_timedelta(now - moment, locale=self.locale, threshold=1.5)

    def number(self, value) -> str:
        if value is None:
            return "—"
        return format_decimal(value, locale=self.locale, format="#,##0.##")

    def long_date(self, moment: dt.datetime) -> str:
        return format_datetime(moment, "d MMMM y HH:mm", tzinfo=self.tz, locale=self.locale)
