"""Text as the hub takes it in and as it records it.

The characters the hub does not carry in text: what XML 1.0 cannot hold (C0 controls but tab, line feed and
carriage return; surrogates; U+FFFE, U+FFFF), C1 controls and DEL, and the Unicode direction marks,
embeddings, overrides and isolates (U+200E, U+200F, U+061C, U+202A-U+202E, U+2066-U+2069) that make a name
read otherwise than it is stored.

    unfit_character(text)   the first such character, as U+XXXX (refusals name it), or None
    shown(text)             any text made safe to put in an XML document or attribute (an error naming what
                            was sent): each such character, line breaks included, written as \\uXXXX
    for_the_record(text)    an error text fit to be kept where people read it (refusals, timelines, case
                            notes): the values an XSD error quotes withheld, those characters and line
                            breaks made spaces, length capped

Pure functions: no storage, no I/O.
"""
from __future__ import annotations

import re

_UNFIT = ("\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
          "\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069")
UNFIT_IN_TEXT = re.compile(f"[{_UNFIT}]")
UNFIT_IN_PARAMETER = re.compile(f"[\t\n\r{_UNFIT}]")  # a path or query parameter holds no line breaks either

WITHHELD_VALUE = "[value withheld]"
# Where libxml2's schema errors quote the value they refused (a CNIE field may hold a name and a birth date):
#   "... [facet 'pattern'] The value 'AB12 Youssef 1988-04-12' is not accepted by the pattern '...'."
#   "Element 'BirthDate': 'Youssef' is not a valid value of the atomic type 'xs:date'."
_QUOTED_VALUES = (re.compile(r"(?<=The value )'.*?'(?= (?:is|has|of|does) )"),
                  re.compile(r"(?<=: )'.*?'(?= is not a valid value)"))
RECORD_LIMIT = 300


def unfit_character(text: str, *, parameter: bool = False) -> str | None:
    """The first character of `text` the hub refuses, as U+XXXX, or None. `parameter`: a path or query
    parameter, where tab, line feed and carriage return are refused too."""
    found = (UNFIT_IN_PARAMETER if parameter else UNFIT_IN_TEXT).search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def shown(text: str, limit: int | None = None) -> str:
    """`text` (cut to `limit` characters) with every unfit character, line breaks included, as \\uXXXX."""
    return UNFIT_IN_PARAMETER.sub(lambda m: f"\\u{ord(m.group()):04x}", text[:limit] if limit else text)


def for_the_record(text: str, limit: int = RECORD_LIMIT) -> str:
    """`text` with quoted values withheld, unfit characters and line breaks made spaces, at most `limit`
    characters (an ellipsis marks a cut)."""
    for quoted in _QUOTED_VALUES:
        text = quoted.sub(WITHHELD_VALUE, text)
    text = UNFIT_IN_PARAMETER.sub(" ", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"
