"""Names as the citizen search compares them (registry/names.py): an agent finds a citizen however the name is
typed, as long as it is the same name; a different name stays different."""
from __future__ import annotations

import pytest

from registry.names import normalise, prefix_end, tokens


@pytest.mark.parametrize("typed, registered", [
    ("امين", "أمين"),            # alef with hamza above
    ("اسماعيل", "إسماعيل"),       # alef with hamza below
    ("امنة", "آمنة"),             # alef with madda
    ("الله", "ٱلله"),              # alef wasla
    ("فاطمه", "فاطمة"),           # ta marbuta written as ha
    ("يحيي", "يحيى"),             # alef maqsura written as ya
    ("محمد", "مُحَمَّد"),            # harakat and shadda
    ("محمد", "مـحـمـد"),           # tatweel
    ("محمد", "ﻣﺤﻤﺪ"),              # presentation forms
    ("يوسف", "یوسف"),             # Farsi yeh from a Persian keyboard
    ("helene", "Hélène"),
    ("EL AMRANI", "el amrani"),
    ("strasse", "Straße"),
    ("oyvind", "Øyvind"),
    ("Zoe", "Zoë"),
])
def test_one_name_typed_two_ways_is_one_name(typed, registered):
    assert tokens(typed) == tokens(registered)


@pytest.mark.parametrize("one, other", [
    ("Benani", "Bennani"),       # a letter more is another name
    ("سعيد", "سعيدة"),            # Said and Saida
    ("عمر", "عمرو"),
    ("Ali", "Alia"),
])
def test_different_names_stay_different(one, other):
    assert tokens(one) != tokens(other)


def test_words_are_separated_by_any_non_letter_and_kept_once_in_order():
    assert tokens("Aït-Ouahmane", "O'Brien  ben_Ali") == ["ait", "ouahmane", "o", "brien", "ben", "ali"]
    assert tokens("Fatima Zahra", "فاطمة الزهراء", "Fatima") == ["fatima", "zahra", "فاطمه", "الزهراء"]
    assert tokens("", "  ", "-") == []


def test_word_order_does_not_change_the_words():
    assert set(tokens("El Amrani Youssef")) == set(tokens("Youssef", "el amrani"))


def test_normalise_keeps_separators_and_digits():
    assert normalise("Hélène  EL-Amrani 2") == "helene  el-amrani 2"


def test_a_word_longer_than_a_name_field_is_cut_to_its_length():
    assert tokens("a" * 150) == ["a" * 100]


@pytest.mark.parametrize("prefix", ["fat", "فاط", "a", "\ud7fe", "z\u00ff"])
def test_prefix_end_bounds_exactly_the_words_that_begin_with_the_prefix(prefix):
    end = prefix_end(prefix)
    assert prefix < end
    assert prefix + "\U0010ffff" * 3 < end  # everything that begins with it
    assert not end.startswith(prefix)


def test_prefix_end_never_gives_a_surrogate_nor_overflows():
    assert prefix_end("a\ud7ff") == "a\ue000"   # U+D800 would be a surrogate, refused by every database
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
