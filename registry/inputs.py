"""What the registry's request bodies share: strict models, and a person as the posts record one.

Identifier formats are community-observed (DOMAIN.md): validated loosely, never read for meaning.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

POST_CODE = r"^[A-Z]{2}-[A-Z0-9]{2,8}$"
REGISTRATION_ID = r"^MRE-[0-9]{7,10}$"
CNIE = r"^[A-Z]{1,2}[0-9]{5,6}$"


class StrictIn(BaseModel):
    """A request body: unknown fields are refused (422 naming them), surrounding spaces trimmed."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NamesIn(StrictIn):
    """A person's names in both scripts, as civil status requires."""
    given_name_latin: str = Field(min_length=1, max_length=100)
    family_name_latin: str = Field(min_length=1, max_length=100)
    given_name_arabic: str = Field(min_length=1, max_length=100)
    family_name_arabic: str = Field(min_length=1, max_length=100)


class PersonIn(NamesIn):
    """A person as a post records one: names, birth, identity documents and contacts."""
    birth_date: dt.date
    birth_place: str = ""
    sex: Literal["F", "M"]
    cnie: str | None = Field(None, pattern=CNIE)
    passport_number: str | None = Field(None, pattern=r"^[A-Z0-9]{6,9}$")
    phone: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
