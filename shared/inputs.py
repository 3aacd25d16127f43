"""What every service's HTTP input is held to besides its type, defined once: text that
PostgreSQL can store and that screens show as it was typed, times that both Python and
PostgreSQL can convert (cursors, which carry times, decode them with instant_from_text).

A schema that lets such a value through turns bad input into a 5xx: PostgreSQL text cannot
hold NUL (500), a lone surrogate cannot be encoded as UTF-8, and `0001-01-01T00:00:00+14:00`
is a valid RFC 3339 time that overflows when converted to UTC for the database (it was
answered 503, as if the database were down).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

# --- text -------------------------------------------------------------------------------

# Refused in every text field:
# - NUL: PostgreSQL text cannot hold it;
# - the other C0/C1 control characters except tab, line feed and carriage return: no name,
#   address or note needs them, and they garble the pages, the couriers' app and the logs;
# - lone surrogates (U+D800-U+DFFF, only possible as a JSON escape such as "\ud800"): not
#   Unicode text, they cannot be encoded as UTF-8 to be stored or answered;
# - bidirectional formatting controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069):
#   Vietnamese text never needs them, and they make a name or an address display in another
#   order than it reads ("Trojan Source"), on the courier's screen and in the ops console.
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def safe_text(text: str) -> str:
    """The text as it is, or ValueError naming the first character refused (a 422 naming the field)."""
    found = UNSAFE_CHARACTERS.search(text)
    if found is not None:
        raise ValueError(f"must not contain the control or invalid character U+{ord(found.group()):04X}")
    return text


def safe_stripped(text: str) -> str:
    return safe_text(text).strip()


# Lengths are checked on the text as sent (as the schema says), surrounding spaces dropped after.
PersonName = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"\S"), AfterValidator(safe_stripped)
]
Address = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"\S"), AfterValidator(safe_stripped)]
Note = Annotated[str, StringConstraints(max_length=1000), AfterValidator(safe_stripped)]

# --- times ------------------------------------------------------------------------------

# Every time a client sends is within these: wide enough for any real clock, narrow enough
# that no offset can push it past what Python's datetime and PostgreSQL convert.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _a_string(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_a_string),
    Field(ge=EARLIEST, lt=LATEST, description="RFC 3339 with an offset, from 2000-01-01 to 2099-12-31 (UTC)"),
]


def instant_from_text(text: str) -> datetime:
    """An ISO 8601 time with an offset within [EARLIEST, LATEST), or ValueError."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None or not EARLIEST <= at < LATEST:
        raise ValueError("not a time with an offset within range")
    return at
