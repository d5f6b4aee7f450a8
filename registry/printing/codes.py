"""The verification code printed on a document: short enough to type, too many to guess.

A code is 18 random symbols of Crockford's base32 (90 bits: enumerating them finds nothing, even without the
verification endpoint's rate limit) followed by 2 check symbols, shown in four groups of five:
`7KQ2M-9XD4T-B8H1C-R5W0Z`. Typing is forgiving: case, spaces and dashes do not matter, and O is read as 0,
I and L as 1, as in Crockford's alphabet; a typo is caught by the check symbols before any lookup.

The hub keeps only the code's SHA-256 (`digest`): the code is on the paper and nowhere else.
"""
from __future__ import annotations

import hashlib
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RANDOM_SYMBOLS = 18
CHECK_SYMBOLS = 2
LENGTH = RANDOM_SYMBOLS + CHECK_SYMBOLS
GROUP = 5
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
MAX_TYPED = 40  # characters of a typed code looked at, at most (spaces and dashes included)


def _check(body: str) -> str:
    value = int.from_bytes(hashlib.sha256(f"check:{body}".encode()).digest()[:2], "big") >> (16 - 5 * CHECK_SYMBOLS)
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(CHECK_SYMBOLS)))


def new_code() -> str:
    """A fresh code, in its printed form (groups of five)."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_SYMBOLS))
    return shown(body + _check(body))


def shown(code: str) -> str:
    """The code in groups of five, as printed."""
    return "-".join(code[i:i + GROUP] for i in range(0, len(code), GROUP))


def normalise(typed: str) -> str | None:
    """The code as typed, in its compact form (20 symbols), or None when it cannot be a code: wrong length, a
    character outside the alphabet, or check symbols that do not match (a typo)."""
    if not isinstance(typed, str) or len(typed) > MAX_TYPED:
        return None
    compact = "".join(typed.split()).replace("-", "").upper().translate(_READ_AS)
    if len(compact) != LENGTH or any(symbol not in ALPHABET for symbol in compact):
        return None
    body, check = compact[:RANDOM_SYMBOLS], compact[RANDOM_SYMBOLS:]
    return compact if secrets.compare_digest(check, _check(body)) else None


def digest(code: str) -> str:
    """The SHA-256 (hex) under which a code's document is kept; `code` compact or as printed."""
    compact = normalise(code)
    if compact is None:
        raise ValueError("not a verification code")
    return hashlib.sha256(compact.encode()).hexdigest()
