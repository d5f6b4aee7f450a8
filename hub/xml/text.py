"""Characters the hub does not carry in text: what XML 1.0 cannot hold (C0 controls but tab, line feed and
carriage return; surrogates; U+FFFE, U+FFFF), C1 controls and DEL, and the Unicode direction embeddings,
overrides and isolates (U+202A-U+202E, U+2066-U+2069) that make text read other than it is stored.

`unfit_character` finds one (refusals name it as U+XXXX); `shown` makes any text safe to put in an XML
document or attribute (an error naming what was sent), each such character written as \\uXXXX."""
from __future__ import annotations

import re

_UNFIT = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u202a-\u202e\u2066-\u2069"
UNFIT_IN_TEXT = re.compile(f"[{_UNFIT}]")
UNFIT_IN_PARAMETER = re.compile(f"[\t\n\r{_UNFIT}]")  # a path or query parameter holds no line breaks either


def unfit_character(text: str, *, parameter: bool = False) -> str | None:
    """The first character of `text` the hub refuses, as U+XXXX, or None. `parameter`: a path or query
    parameter, where tab, line feed and carriage return are refused too."""
    found = (UNFIT_IN_PARAMETER if parameter else UNFIT_IN_TEXT).search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def shown(text: str, limit: int | None = None) -> str:
    """`text` (cut to `limit` characters) with every unfit character, line breaks included, as \\uXXXX."""
    return UNFIT_IN_PARAMETER.sub(lambda m: f"\\u{ord(m.group()):04x}", text[:limit] if limit else text)
