"""A Printable as a PDF in French or Arabic, with its QR code: HTML from a Jinja2 template, laid out by
WeasyPrint on Pango (HarfBuzz shapes the Arabic; the Unicode bidirectional algorithm orders mixed text).

What it needs from the system, at run time: Pango (Debian's libpango-1.0-0, libpangoft2-1.0-0) and a font with
Arabic (Debian's fonts-hosny-amiri: Amiri, under the SIL Open Font License), found through fontconfig. When either
is missing, `PrintingUnavailable` (503) says which and how to install it, rather than a PDF of empty boxes.
"""
from __future__ import annotations

import base64
import datetime as dt
import io
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from hub.errors import PrintingUnavailable
from hub.monitor.i18n import translations
from registry.printing.documents import Line, Printable

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("fr", "ar")
DATE_LOCALES = {"fr": "fr_FR", "ar": "ar_MA"}  # Moroccan Arabic writes its digits 0-9
ARABIC_FONT = "Amiri"
RUN_TIME_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 fonts-hosny-amiri"


@dataclass(frozen=True)
class Verification:
    """What the document prints to be checked: the code, and the address the QR code holds."""

    code: str
    url: str          # the page that verifies this code
    page: str         # the page where a code is typed


@lru_cache(maxsize=1)
def _weasyprint():
    try:
        import weasyprint
    except OSError as exc:  # cffi could not load Pango
        raise PrintingUnavailable(f"printing documents needs Pango ({exc}): install Debian's {RUN_TIME_PACKAGES} "
                                  "(`make print-tools`)") from None
    return weasyprint


@lru_cache(maxsize=1)
def arabic_font_problem() -> str | None:
    """Why the Arabic font cannot be used, or None when fontconfig has it."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return "fontconfig's fc-list is missing (Debian's fontconfig)"
    found = subprocess.run([fc_list, f"{ARABIC_FONT}:lang=ar", "family"], capture_output=True, text=True,
                           timeout=30).stdout
    return None if found.strip() else f"the Arabic font {ARABIC_FONT} is not installed (Debian's fonts-hosny-amiri)"


def check_available() -> None:
    """PrintingUnavailable unless Pango and the Arabic font are there."""
    _weasyprint()
    problem = arabic_font_problem()
    if problem:
        raise PrintingUnavailable(f"printing documents in Arabic needs a font that shapes it: {problem}; install "
                                  f"Debian's {RUN_TIME_PACKAGES} (`make print-tools`)")


def qr_data_uri(text: str) -> str:
    """`text` as a QR code (medium error correction: survives a fold or a stain), an SVG data URI."""
    import segno
    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="svg", scale=1, border=2, xmldecl=False, svgns=True,
                                     dark="#000", light="#fff")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


@lru_cache(maxsize=None)
def _environment(lang: str) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations(lang), newstyle=True)
    return env


def printed_date(value: str | dt.date, lang: str) -> str:
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    return format_date(day, "long", locale=DATE_LOCALES[lang])


def html(printable: Printable, lang: str, verification: Verification, issued_at: dt.datetime) -> str:
    """The document's HTML (what the PDF lays out)."""
    env = _environment(lang)
    gettext = translations(lang).gettext

    def value(line: Line) -> Markup:
        if line.form == "label":  # in the document's language and direction
            return escape(gettext(line.value))
        if line.form == "date":
            return escape(printed_date(line.value, lang))
        if line.form == "id":  # identifiers, numbers, codes: left to right, in a typeface that tells 0 from O
            return Markup('<span dir="ltr" class="id">') + escape(line.value) + Markup("</span>")
        if not line.arabic:
            return Markup('<span dir="ltr">') + escape(line.value) + Markup("</span>")
        return Markup('<span dir="rtl" lang="ar">') + escape(line.value) + Markup("</span>")

    return env.get_template("printing/document.html").render(
        lang=lang, dir="rtl" if lang == "ar" else "ltr", doc=printable, value=value, verification=verification,
        qr=qr_data_uri(verification.url), issued_on=printed_date(issued_at.date(), lang))


def pdf(printable: Printable, lang: str, verification: Verification, issued_at: dt.datetime) -> bytes:
    """The document as PDF bytes."""
    if lang not in LANGUAGES:
        raise ValueError(f"documents are printed in {' or '.join(LANGUAGES)}, not {lang!r}")
    check_available()
    weasyprint = _weasyprint()
    document = weasyprint.HTML(string=html(printable, lang, verification, issued_at), base_url=str(TEMPLATES))
    return document.write_pdf(stylesheets=[weasyprint.CSS(filename=str(TEMPLATES / "printing" / "document.css"))])
