"""HTTP routes of tracking: a parcel's state by tracking code, once or as a live stream.

No login: the tracking code is the only key, so the routes are careful about what they
tell a stranger who guesses codes. An unknown code is 404, after the same query and the
same work as a known one (service_layer.lookup) and never faster than a fixed floor; a
malformed code is simply unknown (404, not 422); every client address has a token bucket
(deps.rate_limit: 429 with Retry-After). Streams are limited per client (429) and per
process (503), both with Retry-After.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from services.tracking import deps
from services.tracking.schemas import SSE_EXAMPLE, TrackingView
from services.tracking.service_layer import lookup
from services.tracking.settings import TrackingSettings
from shared.http import Problem, api_router, problem_response, problem_responses
from shared.live import StreamsFull

router = api_router()

NO_STORE = {"Cache-Control": "no-store"}
RETRY_STREAM = {"Retry-After": "5"}
NOT_FOUND = "No parcel has this tracking code"
_HEARTBEAT_S = TrackingSettings.model_fields["heartbeat_s"].default


async def _floor(request: Request, started: float) -> None:
    """Wait until the response floor has passed since `started`."""
    floor_s = deps.settings(request).response_floor_ms / 1000
    await asyncio.sleep(max(0.0, floor_s - (time.perf_counter() - started)))


@router.get(
    "/v1/tracking/{tracking_code}",
    response_model=TrackingView,
    tags=["tracking"],
    summary="A parcel's status, timeline, courier and ETA",
    description="Anyone with the tracking code may ask; nothing personal is shown.",
    responses=problem_responses(404, 429),
)
async def get_tracking(tracking_code: str, request: Request, _client: str = Depends(deps.rate_limit)) -> Response:
    started = time.perf_counter()
    parcel, view = await lookup(deps.pool(request), tracking_code)
    # Both answers are built before the floor, so the time after it is the same too.
    found = Response(orjson.dumps(view), media_type="application/json", headers=NO_STORE)
    not_found = problem_response(404, NOT_FOUND, headers=NO_STORE)
    await _floor(request, started)
    return found if parcel is not None else not_found


@router.get(
    "/v1/tracking/{tracking_code}/events",
    tags=["tracking"],
    summary="A parcel's changes as they happen (Server-Sent Events)",
    description=(
        "`event: tracking` events carry the same document as `GET /v1/tracking/{tracking_code}`: "
        "the current state on connect, then one per change. A comment line (`: ping`) is sent "
        f"every {_HEARTBEAT_S:g} s so that proxies keep the stream open. After a final "
        "status (delivered, returned, cancelled, expired) an `event: end` follows and the stream "
        "closes: do not reconnect then."
    ),
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "The stream",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
        },
        **problem_responses(404, 429, 503),
    },
)
async def stream_tracking(tracking_code: str, request: Request, client: str = Depends(deps.rate_limit)) -> Response:
    started = time.perf_counter()
    streams = deps.streams(request)
    try:  # before the first await: a burst of openings is counted one by one
        slot = streams.reserve(client, exempt=deps.client_limits(request).is_exempt(client))
    except StreamsFull as full:
        if full.everyone:
            raise Problem(503, "Too many open streams; try again later", headers=RETRY_STREAM) from None
        raise Problem(429, "Too many open streams from this client", headers=RETRY_STREAM) from None
    try:
        parcel, _ = await lookup(deps.pool(request), tracking_code)
        await _floor(request, started)
        if parcel is None:
            raise Problem(404, NOT_FOUND, headers=NO_STORE)
    except BaseException:
        slot.release()
        raise
    return EventSourceResponse(
        streams.events(slot, parcel),
        ping=deps.settings(request).heartbeat_s,
        headers=NO_STORE,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        # The stream's own end releases the slot; this covers a response that ended before
        # the stream began (the client left at once).
        background=BackgroundTask(slot.release),
    )
