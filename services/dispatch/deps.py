"""Dispatch's FastAPI dependencies (the courier's credentials, within the courier's and the
client address's rate limits: shared.ratelimit.BearerLimits; the admin's credentials) and the
small getters routes use to reach what app.py put in `request.app.state`.

Routes take exactly one dependency, the caller's credentials; everything else they read
through their `request` (a dependency costs a resolution on every request).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from fastapi import Request

from shared import secrets
from shared.http import require_admin
from shared.ratelimit import BearerLimits

from . import store_couriers
from .live import CourierStreams
from .matcher import WorkHints
from .service.common import GuardCounters
from .service.couriers import TOKEN_PREFIX
from .service.delivery import KnownTerms
from .settings import DispatchSettings

# Couriers whose token was seen once are remembered (by its SHA-256) up to this many.
MAX_KNOWN_COURIERS = 100_000


@dataclass(frozen=True)
class CourierIdentity:
    id: UUID
    name: str
    phone: str
    vehicle: str


def known_couriers(pool: Callable[[], asyncpg.Pool], *, ttl_s: float) -> secrets.KnownSecrets[CourierIdentity]:
    """Who holds a courier bearer token: looked up by its hash (a unique index), then
    remembered for `ttl_s` (a revoked token is refused within that time), renewed along
    with other lookups (KnownSecrets' lookup_many)."""

    async def lookup_many(digests: list[str]) -> dict[str, CourierIdentity]:
        rows = await store_couriers.couriers_by_secret_hashes(pool(), digests)
        return {r["secret_hash"]: CourierIdentity(r["id"], r["name"], r["phone"], r["vehicle"]) for r in rows}

    async def lookup(digest: str) -> CourierIdentity | None:
        return (await lookup_many([digest])).get(digest)

    return secrets.KnownSecrets(
        lookup,
        ttl_s=ttl_s,
        max_size=MAX_KNOWN_COURIERS,
        shape=secrets.secret_shape(TOKEN_PREFIX),
        lookup_many=lookup_many,  # couriers poll every second: their tokens are renewed together
    )


async def current_courier(request: Request) -> CourierIdentity:
    """The courier the bearer token belongs to; 401 without a courier's token, 429 past the
    courier's or the client address's limit."""
    couriers: BearerLimits[CourierIdentity] = request.app.state.couriers
    return await couriers.owner(request)


async def admin(request: Request) -> None:
    """Lets through only the admin bearer token (401 otherwise)."""
    await require_admin(settings(request).admin_token)(request)


def settings(request: Request) -> DispatchSettings:
    return request.app.state.settings


def pool(request: Request) -> asyncpg.Pool:
    return request.app.state.runtime.pool


def guard_counters(request: Request) -> GuardCounters:
    return request.app.state.guard_counters


def known_terms(request: Request) -> KnownTerms:
    """The delivery terms of jobs this process saw accepted or picked up (deliver's first try)."""
    return request.app.state.known_terms


def hints(request: Request) -> WorkHints:
    """This process's matcher, to poke when a route made work for it (or nobody, see matcher.py)."""
    return request.app.state.hints


def streams(request: Request) -> CourierStreams:
    return request.app.state.streams


def known_couriers_of(request: Request) -> secrets.KnownSecrets[CourierIdentity]:
    """Who holds which courier token, as this process remembers it (for a stream that outlives
    the request's own check)."""
    couriers: BearerLimits[CourierIdentity] = request.app.state.couriers
    return couriers.known
