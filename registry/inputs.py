"""What the registry's request bodies share: strict models, text as the registry accepts it, and a person
as the posts record one.

Every text field of a request body is `Text` (a list of them `list[Text]`): characters XML cannot hold and
Unicode direction controls are refused with 422 naming the field (the rule: hub/xml/text.py), so that
nothing is stored that a partner's request could not carry or that would read otherwise than it is.
Identifier formats are community-observed (DOMAIN.md): validated loosely, never read for meaning.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hub.xml.text import unfit_character

POST_CODE = r"^[A-Z]{2}-[A-Z0-9]{2,8}$"
REGISTRATION_ID = r"^MRE-[0-9]{7,10}$"
CNIE = r"^[A-Z]{1,2}[0-9]{5,6}$"


def _acceptable(value: str) -> str:
    wrong = unfit_character(value)
    if wrong is not None:
        raise ValueError(f"{wrong} is a control or direction character, not accepted in text")
    return value


Text = Annotated[str, AfterValidator(_acceptable)]
ADDRESS_LINES = 3
ADDRESS_LINE_LENGTH = 100


def address_lines_fit(value: str | None) -> str | None:
    """An address abroad as the registration request carries it: 1 to 3 lines of up to 100 characters (blank
    lines dropped)."""
    if value is None:
        return value
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    if not lines or len(lines) > ADDRESS_LINES or any(len(line) > ADDRESS_LINE_LENGTH for line in lines):
        raise ValueError(f"1 to {ADDRESS_LINES} lines of up to {ADDRESS_LINE_LENGTH} characters")
    return "\n".join(lines)


class StrictIn(BaseModel):
    """A request body: unknown fields are refused (422 naming them), surrounding spaces trimmed."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NamesIn(StrictIn):
    """A person's names in both scripts, as civil status requires."""
    given_name_latin: Text = Field(min_length=1, max_length=100)
    family_name_latin: Text = Field(min_length=1, max_length=100)
    given_name_arabic: Text = Field(min_length=1, max_length=100)
    family_name_arabic: Text = Field(min_length=1, max_length=100)


class PersonIn(NamesIn):
    """A person as a post records one: names, birth, identity documents and contacts."""
    birth_date: dt.date
    birth_place: Text = Field("", max_length=100)
    sex: Literal["F", "M"]
    cnie: Text | None = Field(None, pattern=CNIE)
    passport_number: Text | None = Field(None, pattern=r"^[A-Z0-9]{6,9}$")
    phone: Text | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    email: Text | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
