"""The admin's routes: create a courier, re-issue or revoke their token, a courier's status and
a job with the offers made and why; and the ops console's views: couriers and open jobs in an
area (paged), a courier's jobs, and the counters of the overview. Admin token only; the
console at /ops/ polls them.

A page's cursor is opaque to clients (base64url of the last row's key); a malformed cursor
or area is 422. Pages hold at most MAX_LIMIT rows, so an answer stays small and cheap
however many couriers are online.
"""

from __future__ import annotations

import base64
import math
from datetime import datetime, timedelta, timezone
from typing import Literal
from urllib.parse import quote
from uuid import UUID

import asyncpg
import orjson
from fastapi import Depends, Query, Request, Response

from shared.http import Problem, api_router, invalid_query, problem_responses
from shared.inputs import instant_from_text

from . import deps, domain, store, store_admin, store_couriers
from .admin_schemas import (
    AdminJob,
    CodeLock,
    CourierCreate,
    CourierCreated,
    CourierJobs,
    CourierOnMap,
    CourierPage,
    CourierToken,
    JobOnMap,
    JobPage,
    OfferReason,
    OfferView,
    Overview,
)
from .api import COURIER_APP, flag_view, parse_courier_id, parse_order_id, status_view, transaction
from .schemas import CourierStatus
from .service import couriers
from .service.common import JobNotFound, now_utc
from .store_admin import Area

router = api_router()

MAX_LIMIT = 500
VIETNAM = timezone(timedelta(hours=7))  # no daylight saving: "today" starts at 17:00 UTC

BBOX_DESCRIPTION = "The area: `minLng,minLat,maxLng,maxLat` (west, south, east, north, degrees); everywhere when absent"
CURSOR_DESCRIPTION = "`next_cursor` of the previous page; absent for the first"
OpenStatus = Literal["waiting", "offered", "assigned", "picked_up"]


def parse_bbox(bbox: str | None) -> Area:
    if bbox is None:
        return store_admin.EVERYWHERE
    parts = bbox.split(",")
    try:
        min_lng, min_lat, max_lng, max_lat = (float(p) for p in parts)
    except ValueError:
        raise invalid_query("bbox", "must be four numbers: minLng,minLat,maxLng,maxLat") from None
    if not (-180 <= min_lng <= max_lng <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise invalid_query("bbox", "must be west <= east in [-180, 180] and south <= north in [-90, 90]")
    return Area(min_lng, min_lat, max_lng, max_lat)


def encode_cursor(*key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:  # binascii.Error and orjson.JSONDecodeError are ValueErrors
        key = None
    if not (isinstance(key, list) and len(key) == size and all(isinstance(k, str) for k in key)):
        raise invalid_query("cursor", "not a cursor this API gave")
    return key


def courier_cursor(cursor: str | None) -> UUID | None:
    if cursor is None:
        return None
    (courier_id,) = decode_cursor(cursor, 1)
    try:
        return UUID(courier_id)
    except ValueError:
        raise invalid_query("cursor", "not a cursor this API gave") from None


def instant_and_id_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """A list's cursor of (a time, an id): the jobs' (placed_at, order id), the cash list's
    (oldest delivery, courier id)."""
    if cursor is None:
        return None
    at, ident = decode_cursor(cursor, 2)
    try:
        # Bounded: a hand-made 0001-01-01T00:00:00+14:00 parses, but not for PostgreSQL.
        return instant_from_text(at), UUID(ident)
    except ValueError:
        raise invalid_query("cursor", "not a cursor this API gave") from None


def job_on_map(row: asyncpg.Record, now: datetime) -> JobOnMap:
    return JobOnMap(
        order_id=row["order_id"],
        status=row["status"],
        pickup_lat=row["pickup_lat"],
        pickup_lng=row["pickup_lng"],
        placed_at=row["placed_at"],
        age_s=max(0, int((now - row["placed_at"]).total_seconds())),
        courier_id=row["courier_id"],
        offer_expires_at=row["offer_expires_at"],
    )


def signin_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{COURIER_APP}/#t={quote(token, safe='')}"


def offer_view(row: asyncpg.Record) -> OfferView:
    summary = (
        f"Quickest to the pickup of {row['candidates']} available courier"
        f"{'s' if row['candidates'] != 1 else ''}: ~{row['distance_m']} m, "
        f"~{max(1, math.ceil(row['travel_s'] / 60))} min; held {row['courier_load']} of "
        f"{row['capacity']} before this offer"
    )
    return OfferView(
        courier_id=row["courier_id"],
        state=row["state"],
        offered_at=row["offered_at"],
        expires_at=row["expires_at"],
        answered_at=row["answered_at"],
        why=OfferReason(
            distance_m=row["distance_m"],
            travel_estimate_s=row["travel_s"],
            courier_load=row["courier_load"],
            courier_capacity=row["capacity"],
            candidates_weighed=row["candidates"],
            search_rings=row["search_rings"],
            search_resolution=row["search_resolution"],
            summary=summary,
        ),
    )


def admin_job_view(job: store.Job, offers: list[asyncpg.Record], limits: domain.CodeLimits) -> AdminJob:
    return AdminJob(
        order_id=job.order_id,
        tracking_code=job.tracking_code,
        status=job.status,
        courier_id=job.courier_id,
        pickup=job.pickup,
        dropoff=job.dropoff,
        parcel=job.parcel,
        note=job.note,
        cod_amount_vnd=job.cod_amount_vnd,
        fee_vnd=job.fee_vnd,
        offer_expires_at=job.offer_expires_at,
        placed_at=job.placed_at,
        dispatch_deadline=job.dispatch_deadline,
        cod_collected_vnd=job.cod_collected_vnd,
        fail_reason=job.fail_reason,
        cancel_reason=job.cancel_reason,
        updated_at=job.updated_at,
        offers=[offer_view(o) for o in offers],
        delivery_code=CodeLock(
            wrong_codes=job.code_failures_total,
            lockouts=job.code_lockouts,
            locked_until=job.code_locked_until,
            held=domain.code_held(job.code_state, limits),
        ),
    )


# --- couriers and jobs, one at a time --------------------------------------------------


@router.post(
    "/v1/admin/couriers",
    status_code=201,
    response_model=CourierCreated,
    tags=["admin"],
    summary="Create a courier (the token is shown once)",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(400, 401, 413, 415, 422),
)
async def create_courier(body: CourierCreate, request: Request) -> CourierCreated:
    settings = deps.settings(request)
    async with transaction(request) as conn:
        row, token = await couriers.create_courier(
            conn, settings, name=body.name, phone=body.phone, vehicle=body.vehicle
        )
    return CourierCreated(
        id=row["id"],
        name=row["name"],
        token=token,
        signin_link=signin_link(settings.public_url, token),
        vehicle=row["vehicle"],
        capacity=row["capacity"],
    )


@router.post(
    "/v1/admin/couriers/{courier_id}/token",
    status_code=201,
    response_model=CourierToken,
    tags=["admin"],
    summary="Issue a courier a new token (the old one stops working; the new one is shown once)",
    description="For a lost or leaked phone: every instance refuses the old token within "
    "`GIAO_DISPATCH_TOKEN_CACHE_S` seconds, and the courier app signs out on its next call.",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def reissue_token(courier_id: str, request: Request) -> CourierToken:
    cid = parse_courier_id(courier_id)
    async with transaction(request) as conn:
        token = await couriers.replace_token(conn, deps.settings(request), cid, reissue=True)
    if token is None:
        raise Problem(404, "Courier not found")
    return CourierToken(id=cid, token=token, signin_link=signin_link(deps.settings(request).public_url, token))


@router.delete(
    "/v1/admin/couriers/{courier_id}/token",
    status_code=204,
    tags=["admin"],
    summary="Revoke a courier's token (signed out everywhere until a new one is issued)",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def revoke_token(courier_id: str, request: Request) -> Response:
    cid = parse_courier_id(courier_id)
    async with transaction(request) as conn:
        if await couriers.replace_token(conn, deps.settings(request), cid, reissue=False) is None:
            raise Problem(404, "Courier not found")
    deps.hints(request).poke()  # after the commit: the offers it withdrew are due again
    return Response(status_code=204)


@router.get(
    "/v1/admin/couriers/{courier_id}",
    response_model=CourierStatus,
    tags=["admin"],
    summary="A courier's status, position and load",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def get_courier(courier_id: str, request: Request) -> CourierStatus:
    row = await store_couriers.courier(deps.pool(request), parse_courier_id(courier_id))
    if row is None:
        raise Problem(404, "Courier not found")
    return status_view(row)


@router.get(
    "/v1/admin/jobs/{order_id}",
    response_model=AdminJob,
    tags=["admin"],
    summary="A job with every offer made and why that courier was chosen",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def get_job(order_id: str, request: Request) -> AdminJob:
    oid = parse_order_id(order_id)
    job = await store.job(deps.pool(request), oid)
    if job is None:
        raise JobNotFound
    return admin_job_view(job, await store.offers_of(deps.pool(request), oid), deps.settings(request).code_limits())


# --- the console's views ------------------------------------------------------------------


@router.get(
    "/v1/admin/couriers",
    response_model=CourierPage,
    tags=["admin"],
    summary="Couriers in an area, with their vehicle and load (paged)",
    description=f"Ordered by id; at most {MAX_LIMIT} a page. `online=false` lists offline "
    "couriers with a last known position instead.",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 422),
)
async def list_couriers(
    request: Request,
    bbox: str | None = Query(None, description=BBOX_DESCRIPTION),
    online: bool = True,
    cursor: str | None = Query(None, max_length=200, description=CURSOR_DESCRIPTION),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
) -> CourierPage:
    area, after = parse_bbox(bbox), courier_cursor(cursor)
    rows = await store_admin.couriers_in_area(deps.pool(request), area, online=online, after=after, limit=limit + 1)
    items = [
        CourierOnMap(
            id=r["id"],
            display_name=domain.display_name(r["name"]),
            vehicle=r["vehicle"],
            lat=r["lat"],
            lng=r["lng"],
            load=r["load"],
            capacity=r["capacity"],
            online=r["online"],
            busy=r["load"] >= r["capacity"],
            flag=flag_view(r),
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return CourierPage(items=items, next_cursor=encode_cursor(str(items[-1].id)) if more else None)


@router.get(
    "/v1/admin/jobs",
    response_model=JobPage,
    tags=["admin"],
    summary="Open jobs whose pickup is in an area, oldest first (paged)",
    description=f"Jobs waiting, offered, assigned or picked up; at most {MAX_LIMIT} a page.",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 422),
)
async def list_jobs(
    request: Request,
    bbox: str | None = Query(None, description=BBOX_DESCRIPTION),
    status: OpenStatus | None = Query(None, description="Only jobs in this status"),
    cursor: str | None = Query(None, max_length=200, description=CURSOR_DESCRIPTION),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
) -> JobPage:
    area, after = parse_bbox(bbox), instant_and_id_cursor(cursor)
    statuses = (status,) if status is not None else store_admin.OPEN_STATUSES
    rows = await store_admin.jobs_in_area(deps.pool(request), area, statuses=statuses, after=after, limit=limit + 1)
    now = now_utc()
    items = [job_on_map(r, now) for r in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if more else None
    return JobPage(
        items=items, next_cursor=encode_cursor(last.placed_at.isoformat(), str(last.order_id)) if last else None
    )


@router.get(
    "/v1/admin/couriers/{courier_id}/jobs",
    response_model=CourierJobs,
    tags=["admin"],
    summary="The offers and jobs a courier holds now",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def courier_jobs(courier_id: str, request: Request) -> CourierJobs:
    try:
        cid = UUID(courier_id)
    except ValueError:
        raise Problem(404, "Courier not found") from None
    pool = deps.pool(request)
    if not await store_admin.courier_exists(pool, cid):
        raise Problem(404, "Courier not found")
    now = now_utc()
    return CourierJobs(courier_id=cid, items=[job_on_map(r, now) for r in await store_admin.jobs_of_courier(pool, cid)])


@router.get(
    "/v1/admin/overview",
    response_model=Overview,
    tags=["admin"],
    summary="The console's counters: orders waiting, offers out, deliveries under way, ...",
    description="Consumer lag is not measured by dispatch (Kafka's own tools show it).",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401),
)
async def overview(request: Request) -> Overview:
    now = now_utc()
    midnight = now.astimezone(VIETNAM).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = await store_admin.counts(deps.pool(request), expired_since=midnight)
    consumers = request.app.state.runtime.consumers
    oldest = counts.oldest_waiting_placed_at
    return Overview(
        waiting=counts.waiting,
        offers_out=counts.offers_out,
        oldest_waiting_s=None if oldest is None else max(0, int((now - oldest).total_seconds())),
        in_progress=counts.in_progress,
        expired_today=counts.expired_since,
        couriers_online=counts.couriers_online,
        outbox_backlog=counts.outbox_backlog,
        dead_letters=sum(c.dead_lettered for c in consumers) if consumers else None,
        at=now,
    )
