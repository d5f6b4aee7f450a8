"""Every string of the console is translated in French, Arabic and English (hub/monitor/catalogue.py), and the
catalogues are read as the console reads them."""
from __future__ import annotations

import pytest

from hub.monitor.catalogue import extract, untranslated
from hub.monitor.i18n import LANGUAGES, read_catalogue, translations


@pytest.fixture(scope="module")
def msgids():
    return extract()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_string_of_the_console_is_translated(msgids, lang):
    missing = untranslated(lang, msgids)
    assert not missing, (f"{len(missing)} untranslated in {lang} (run `hub dev catalogues`, then fill "
                         f"hub/monitor/locale/{lang}/LC_MESSAGES/console.po): {missing[:10]}")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_translation_keeps_the_placeholders_of_its_string(lang):
    for message in read_catalogue(lang):
        if message.id and message.string and not isinstance(message.id, tuple):
            for placeholder in ("%(n)s", "%(zone)s", "%(minutes)s", "%(count)s", "%(name)s"):
                assert (placeholder in message.id) == (placeholder in message.string), (lang, message.id)


def test_the_console_speaks_each_language():
    assert translations("ar").gettext("Sign in") == "تسجيل الدخول"
    assert translations("fr").gettext("Sign in") == "Se connecter"
    assert translations("en").gettext("Sign in") == "Sign in"
