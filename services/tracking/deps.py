"""FastAPI dependencies of tracking's routes, and typed getters of what create_app put in
`app.state`.

The getters are plain calls, not dependencies: FastAPI solves each dependency on every
request, and the tracking routes are the hot path of the public side.
"""

from __future__ import annotations

import asyncpg
from fastapi import Request

from services.tracking.live import Streams
from services.tracking.settings import TrackingSettings
from shared.ratelimit import AddressLimits, too_many


async def rate_limit(request: Request) -> str:
    """The client's address, once it may go on; 429 with Retry-After when it asked too often.

    async: FastAPI would run a plain function in a worker thread (a hop per request, and the
    limiter's buckets touched from several threads at once)."""
    limits = client_limits(request)
    client = limits.client_of(request)
    retry_after = limits.retry_after(client)
    if retry_after:
        raise too_many(retry_after)
    return client


def settings(request: Request) -> TrackingSettings:
    return request.app.state.settings


def pool(request: Request) -> asyncpg.Pool:
    return request.app.state.runtime.pool


def client_limits(request: Request) -> AddressLimits:
    return request.app.state.client_limits


def streams(request: Request) -> Streams:
    return request.app.state.streams
