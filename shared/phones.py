"""Phone numbers: parsed with `phonenumbers` (region VN by default), kept in E.164."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, Field


# Parsing is slow (a tenth of a millisecond) and the same numbers come back all the time: a
# shop's own on every order it places, a regular customer's. Invalid ones raise and are not kept.
@lru_cache(maxsize=4096)
def to_e164(raw: str, region: str = "VN") -> str:
    """'0912 345 678' -> '+84912345678'; raises ValueError for anything that is not a valid number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# A request field that accepts a phone as people write it and holds it in E.164.
Phone = Annotated[str, Field(min_length=3, max_length=32, examples=["0912 345 678"]), AfterValidator(to_e164)]
