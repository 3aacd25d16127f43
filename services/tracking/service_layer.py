"""Tracking's use case: a parcel by its tracking code, telling a stranger no more than
found or not found.

An unknown code, and a malformed one (simply unknown: never a 422), cost the same query
and the same work as a known one: the view of a decoy parcel is built instead. The API
adds a fixed floor on top (GIAO_TRACKING_RESPONSE_FLOOR_MS), so the time to answer does
not tell the two apart.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.tracking import domain, store


async def lookup(pool: asyncpg.Pool, code: str) -> tuple[domain.Parcel | None, dict[str, Any]]:
    """The parcel with this code (None if there is none) and its public view."""
    parcel = await store.find_by_code(pool, code if domain.well_formed_code(code) else "")
    view = domain.public_view(parcel or domain.DECOY)
    return parcel, view
