"""HTTP routes of tracking: a parcel's state by tracking code, once or as a live stream.

No login: the tracking code is the only key, so the routes are careful about what they
tell a stranger who guesses codes. An unknown code is 404, after the same query and the
same work as a known one and never faster than a fixed floor; a malformed code is simply
unknown (404, not 422); every client address has a token bucket (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.tracking import domain, store
from services.tracking.live import ChangeFeed
from services.tracking.ratelimit import RateLimiter
from services.tracking.schemas import SSE_EXAMPLE, TrackingView
from services.tracking.settings import TrackingSettings
from shared.http import Metrics, Problem, problem_response, problem_responses
from shared.service import Runtime

NO_STORE = {"Cache-Control": "no-store"}
END_RETRY_MS = 86_400_000
NOT_FOUND = "No parcel has this tracking code"


def add_routes(router: APIRouter, settings: TrackingSettings, runtime: Runtime, feed: ChangeFeed,
               metrics: Metrics) -> None:
    """The public tracking API, added to `router` (the app's own: see shared.http.StrictQueryRoute)."""
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    open_streams: dict[str, int] = {}
    floor_s = settings.response_floor_ms / 1000
    streams_gauge = Gauge("tracking_sse_streams", "Open Server-Sent Events streams", registry=metrics.registry)
    limited = metrics.counter("tracking_rate_limited_total", "Requests refused with 429")

    def client_of(request: Request) -> str:
        if settings.trust_forwarded_for:
            forwarded = request.headers.get("x-forwarded-for", "")
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last
        return request.client.host if request.client else "unknown"

    exempt = settings.exempt_networks()

    def is_exempt(client: str) -> bool:
        if not exempt:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in exempt)

    async def rate_limit(request: Request) -> str:
        # async: FastAPI would run a plain function in a worker thread (a hop per request,
        # and the limiter's buckets touched from several threads at once)
        client = client_of(request)
        if is_exempt(client):
            return client
        retry_after = limiter.check(client, time.monotonic())
        if retry_after:
            limited.inc()
            raise Problem(429, "Too many requests; try again later", headers={"Retry-After": str(retry_after)})
        return client

    async def lookup(code: str) -> tuple[domain.Parcel | None, dict[str, Any]]:
        """The parcel and its view, after the same work whether the code is known or not."""
        parcel = await store.find_by_code(runtime.pool, code if domain.well_formed_code(code) else "")
        view = domain.public_view(parcel or domain.DECOY)
        return parcel, view

    async def floor(started: float) -> None:
        await asyncio.sleep(max(0.0, floor_s - (time.perf_counter() - started)))

    @router.get(
        "/v1/tracking/{tracking_code}", response_model=TrackingView, tags=["tracking"],
        summary="A parcel's status, timeline, courier and ETA",
        description="Anyone with the tracking code may ask; nothing personal is shown.",
        responses=problem_responses(404, 429),
    )
    async def get_tracking(tracking_code: str, _client: str = Depends(rate_limit)) -> Response:
        started = time.perf_counter()
        parcel, view = await lookup(tracking_code)
        # Both answers are built before the floor, so the time after it is the same too.
        found = Response(orjson.dumps(view), media_type="application/json", headers=NO_STORE)
        not_found = problem_response(404, NOT_FOUND, headers=NO_STORE)
        await floor(started)
        return found if parcel is not None else not_found

    @router.get(
        "/v1/tracking/{tracking_code}/events", tags=["tracking"],
        summary="A parcel's changes as they happen (Server-Sent Events)",
        description=(
            "`event: tracking` events carry the same document as `GET /v1/tracking/{tracking_code}`: "
            "the current state on connect, then one per change. A comment line (`: ping`) is sent "
            f"every {settings.heartbeat_s:g} s so that proxies keep the stream open. After a final "
            "status (delivered, returned, cancelled, expired) an `event: end` follows and the stream "
            "closes: do not reconnect then."),
        response_class=EventSourceResponse,
        responses={200: {"description": "The stream", "content": {"text/event-stream": {
            "schema": {"type": "string"}, "example": SSE_EXAMPLE}}},
            **problem_responses(404, 429)},
    )
    async def stream_tracking(tracking_code: str, client: str = Depends(rate_limit)) -> Response:
        started = time.perf_counter()
        if open_streams.get(client, 0) >= settings.sse_max_streams_per_client and not is_exempt(client):
            raise Problem(429, "Too many open streams from this client", headers={"Retry-After": "5"})
        parcel, _ = await lookup(tracking_code)
        await floor(started)
        if parcel is None:
            raise Problem(404, NOT_FOUND, headers=NO_STORE)

        async def events() -> AsyncIterator[ServerSentEvent]:
            open_streams[client] = open_streams.get(client, 0) + 1
            streams_gauge.inc()
            try:
                # Watch first, then read: no change can fall between the two.
                with feed.watch(tracking_code) as watcher:
                    current = await store.find_by_code(runtime.pool, tracking_code) or parcel
                    deadline = time.monotonic() + settings.sse_max_stream_s
                    view = domain.public_view(current)
                    yield _event(view)
                    while not domain.is_final(view["status"]):
                        newer = await watcher.next(timeout=deadline - time.monotonic())
                        if newer is None:
                            return  # an old stream: the client reconnects and gets the state
                        if newer.version <= current.version:
                            continue  # read before what was already sent
                        current = newer
                        fresh = domain.public_view(newer)
                        if fresh != view:
                            view = fresh
                            yield _event(view)
                    # A client that ignores `end` would reconnect in seconds, forever: ask for a day.
                    yield ServerSentEvent(event="end", data="{}", retry=END_RETRY_MS)
            finally:
                open_streams[client] -= 1
                if not open_streams[client]:
                    del open_streams[client]
                streams_gauge.dec()

        return EventSourceResponse(events(), ping=settings.heartbeat_s, headers=NO_STORE,
                                   ping_message_factory=lambda: ServerSentEvent(comment="ping"))



def _event(view: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event="tracking", data=orjson.dumps(view).decode())
