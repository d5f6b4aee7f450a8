"""Names as the citizen search compares them: one spelling per name, whatever way it was typed.

An agent types a name as the citizen says it, from a passport, or from an Arabic civil-status record, and
rarely exactly as it was registered: "Benani" for "Bennani" is a different name, but "EL AMRANI" for
"El Amrani", "Hélène" for "Helene", "امين" for "أمين", "فاطمه" for "فاطمة" or "يحيي" for "يحيى" are the same one.
`normalise` folds what is only a way of writing:

- case (casefold: "ß" -> "ss") and Latin accents and ligatures ("é" -> "e", "ø" -> "o", "œ" -> "oe");
- Arabic harakat and other marks (fatha, damma, kasra, shadda, sukun, tanwin, superscript alef, Quranic marks)
  and tatweel (the stretching stroke "ـ");
- the alef forms (أ إ آ ٱ -> ا), ta marbuta (ة -> ه), alef maqsura (ى -> ي), the hamza seats (ؤ -> و, ئ -> ي)
  and the Persian letters Arabic keyboards offer (ی -> ي, ک -> ك);
- presentation forms (the contextual shapes of Arabic letters, full-width Latin) to the letters they show.

`tokens` cuts a name into its words (spaces, hyphens, apostrophes and any other non-letter separate them), so
that "Ait-Ouahmane" and "ait ouahmane" match and word order does not matter: the search matches words, not
strings. Pure functions, no database: the search index and the query go through the same ones.
"""
from __future__ import annotations

import re
import unicodedata

# letters with no Unicode decomposition that a Latin keyboard still writes as their plain form
_LATIN_FOLDS = str.maketrans({"ø": "o", "đ": "d", "ð": "d", "ł": "l", "ħ": "h", "ı": "i", "þ": "th",
                              "æ": "ae", "œ": "oe"})
# Arabic letter variants, after decomposition (which already takes the hamza and madda off أ إ آ ؤ ئ)
_ARABIC_FOLDS = str.maketrans({"\u0671": "\u0627",   # ٱ alef wasla -> ا
                               "\u0629": "\u0647",   # ة ta marbuta -> ه
                               "\u0649": "\u064a",   # ى alef maqsura -> ي
                               "\u06cc": "\u064a",   # ی Farsi yeh -> ي
                               "\u06a9": "\u0643",   # ک keheh -> ك
                               "\u0640": None})      # ـ tatweel
_WORD = re.compile(r"\w+")

MAX_TOKEN = 100  # a name field holds at most 100 characters: so does one of its words


def normalise(text: str) -> str:
    """`text` in the one spelling the search compares: folded case, no accents, marks or tatweel, one form per
    Arabic letter. Separators are kept (see `tokens`)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch) and unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", kept.translate(_LATIN_FOLDS).translate(_ARABIC_FOLDS))


def tokens(*names: str) -> list[str]:
    """The distinct words of `names`, normalised, in order of first appearance ("_" separates words too)."""
    seen: dict[str, None] = {}
    for name in names:
        for word in _WORD.findall(normalise(name or "")):
            for part in word.split("_"):
                if part:
                    seen.setdefault(part[:MAX_TOKEN], None)
    return list(seen)


def prefix_end(prefix: str) -> str | None:
    """The least string greater than every string that starts with `prefix`: `prefix <= s < prefix_end(prefix)`
    is "s starts with prefix" in code-point order (an index range, where LIKE 'p%' may not use the index).
    None: no string is greater (`prefix` is only U+10FFFF characters)."""
    while prefix and prefix[-1] == "\U0010ffff":
        prefix = prefix[:-1]
    if not prefix:
        return None
    following = ord(prefix[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are no characters: a database refuses them
        following = 0xE000
    return prefix[:-1] + chr(following)
