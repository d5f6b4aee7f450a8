"""Text as the hub takes it in and as it records it.

    refused_character(text)   the rule for every text field of a JSON input: no character XML 1.0 cannot
                              hold (C0 controls but tab, newline and carriage return; lone surrogates;
                              U+FFFE, U+FFFF) and no Unicode direction control (U+200E, U+200F, U+061C,
                              U+202A-U+202E, U+2066-U+2069), which would make a name read otherwise than
                              it is stored. Returns what is wrong, or None.
    for_the_record(text)      an error text fit to be kept where people read it (refusals, timelines, case
                              notes): the values an XSD error quotes withheld, characters of the rule above
                              and line breaks made spaces, length capped.

Pure functions: no storage, no I/O.
"""
from __future__ import annotations

import re

_NOT_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_DIRECTION = "\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069"
_REFUSED = re.compile(f"[{_NOT_XML}{_DIRECTION}]")
_DIRECTION_CONTROL = re.compile(f"[{_DIRECTION}]")

WITHHELD_VALUE = "[value withheld]"
# Where libxml2's schema errors quote the value they refused (a CNIE field may hold a name and a birth date):
#   "... [facet 'pattern'] The value 'AB12 Youssef 1988-04-12' is not accepted by the pattern '...'."
#   "Element 'BirthDate': 'Youssef' is not a valid value of the atomic type 'xs:date'."
_QUOTED_VALUES = (re.compile(r"(?<=The value )'.*?'(?= (?:is|has|of|does) )"),
                  re.compile(r"(?<=: )'.*?'(?= is not a valid value)"))
RECORD_LIMIT = 300


def refused_character(text: str) -> str | None:
    """What makes `text` unfit for the hub ("U+0001 at position 4 is a control character XML cannot hold"),
    or None when every character is fine."""
    found = _REFUSED.search(text)
    if found is None:
        return None
    character = found.group()
    kind = ("a Unicode direction control" if _DIRECTION_CONTROL.fullmatch(character)
            else "a character XML cannot hold")
    return f"U+{ord(character):04X} at position {found.start() + 1} is {kind}"


def for_the_record(text: str, limit: int = RECORD_LIMIT) -> str:
    """`text` with quoted values withheld, control and direction characters made spaces, at most `limit`
    characters (an ellipsis marks a cut)."""
    for quoted in _QUOTED_VALUES:
        text = quoted.sub(WITHHELD_VALUE, text)
    text = _REFUSED.sub(" ", text.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    return text if len(text) <= limit else text[:limit - 1] + "…"
