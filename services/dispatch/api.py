"""Dispatch's HTTP routes for couriers from their mobile client (the admin's are admin_api.py's).

Routes are thin: authenticate (deps.py), open a connection or a transaction, call the
service, shape the answer. A courier's bodies are read with shared.http.read_body (one pass
of pydantic-core, documented by json_body): these routes are most of the requests. A job is
named by its order id; a malformed id is 404 like an unknown one. What a courier may see of
a job in each status is domain.shows_recipient's.

Over 400 lines: deliver's answers (one per verdict) are the contract's, spelled where they are sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import UUID

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from shared.http import (
    PROBLEM_TYPES,
    ModelResponse,
    Problem,
    api_router,
    bearer,
    json_body,
    problem_response,
    problem_responses,
    read_body,
)
from shared.live import StreamsFull

from . import deps, domain, store, store_cash
from .deps import CourierIdentity, current_courier
from .schemas import (
    JOBS_SSE_EVENT,
    JOBS_SSE_EXAMPLE,
    CashHeld,
    CourierFlag,
    CourierStatus,
    CourierStatusUpdate,
    Declined,
    DeliverRequest,
    DropoffArea,
    FailRequest,
    Job,
    JobList,
    LocationBatch,
    LocationsAccepted,
)
from .service import couriers, delivery
from .service.common import JobNotFound, NotAllowedNow, now_utc
from .settings import DispatchSettings

router = api_router()

# Where dispatch serves the courier app (app.py), and the link that opens it signed in: the
# token rides in the fragment, which a browser never sends, so it reaches no server's log.
COURIER_APP = "/app"

RETRY_STREAM = {"Retry-After": "5"}
# The problem type of a deliver refused while its job is locked after wrong codes: a 429 that
# the courier's app must not treat as its rate limit (resending the same code when it ends).
DELIVERY_CODE_LOCKED = "delivery-code-locked"

# The documentation states the defaults (a deployment may set others).
_DEFAULTS = {name: field.default for name, field in DispatchSettings.model_fields.items()}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(JobNotFound, _not_found)
    app.add_exception_handler(NotAllowedNow, _conflict)


async def _not_found(_: Request, __: Exception) -> JSONResponse:
    return problem_response(404, "Job not found")


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return problem_response(409, str(exc) or "Not allowed in the job's current status")


def parse_order_id(order_id: str) -> UUID:
    try:
        return UUID(order_id)
    except ValueError:
        raise JobNotFound from None


def parse_courier_id(courier_id: str) -> UUID:
    try:
        return UUID(courier_id)
    except ValueError:
        raise Problem(404, "Courier not found") from None


@asynccontextmanager
async def transaction(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with deps.pool(request).acquire() as conn, conn.transaction():
        yield conn


def connection(request: Request):
    """For a courier's steps and positions: each is one statement, its own transaction."""
    return deps.pool(request).acquire()


# --- views -------------------------------------------------------------------------------------


def job_view(job: store.Job) -> Job:
    """A job as its courier sees it: the recipient and the note only once they accepted it
    (domain.shows_recipient); the area it goes to always."""
    dropoff = job.dropoff
    shown = domain.shows_recipient(job.status)
    area = domain.dropoff_area(dropoff["address"], dropoff["lat"], dropoff["lng"])
    return Job(
        order_id=job.order_id,
        status=job.status,
        pickup=job.pickup,
        dropoff=dropoff if shown else None,
        dropoff_area=DropoffArea(area=area.area, lat=area.lat, lng=area.lng),
        distance_m=job.distance_m,
        fee_vnd=job.fee_vnd,
        parcel=job.parcel,
        note=job.note if shown else None,
        cod_amount_vnd=job.cod_amount_vnd,
        offer_expires_at=job.offer_expires_at,
        updated_at=job.updated_at,
    )


def status_view(row: asyncpg.Record) -> CourierStatus:
    return CourierStatus(
        id=row["id"],
        name=row["name"],
        display_name=domain.display_name(row["name"]),
        vehicle=row["vehicle"],
        online=row["online"],
        lat=row["lat"],
        lng=row["lng"],
        capacity=row["capacity"],
        load=row["load"],
        flag=flag_view(row),
    )


def flag_view(row: asyncpg.Record) -> CourierFlag | None:
    return None if row["flagged_at"] is None else CourierFlag(reason=row["flag_reason"], at=row["flagged_at"])


# --- couriers -------------------------------------------------------------------------------
# A job's steps come first: the router tries routes in the order they were added, and these
# are nearly all the requests (the ops and docs routes are tried before them).


@router.get(
    "/v1/courier/jobs",
    response_model=JobList,
    tags=["courier"],
    summary="Offers waiting for an answer and jobs in progress",
    responses=problem_responses(401, 429),
)
async def list_jobs(request: Request, courier: CourierIdentity = Depends(current_courier)) -> ModelResponse:
    jobs = await store.courier_jobs(deps.pool(request), courier.id)
    return ModelResponse(JobList(items=[job_view(j) for j in jobs]))


@router.get(
    "/v1/courier/jobs/events",
    tags=["courier"],
    summary="Offers and jobs as others change them (Server-Sent Events)",
    description=(
        "`event: jobs` events carry the same document as `GET /v1/courier/jobs`: the current "
        "list on connect, then the new list each time someone else changed it (an offer made, "
        "withdrawn or expired, a job cancelled); the courier's own steps are answered by their "
        f"own calls. A comment line (`: ping`) is sent every {_DEFAULTS['stream_heartbeat_s']:g} s; "
        f"the stream ends after {_DEFAULTS['stream_max_s']:g} s and the app opens another. Past "
        f"{_DEFAULTS['streams_per_courier']} open streams of one courier 429, past the process's "
        "cap 503, both with Retry-After: poll `GET /v1/courier/jobs` meanwhile."
    ),
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "The stream",
            "content": {"text/event-stream": {"schema": JOBS_SSE_EVENT, "example": JOBS_SSE_EXAMPLE}},
        },
        **problem_responses(401, 429, 503),
    },
)
async def stream_jobs(request: Request, courier: CourierIdentity = Depends(current_courier)) -> Response:
    streams = deps.streams(request)
    try:
        slot = streams.reserve(str(courier.id))
    except StreamsFull as full:
        if full.everyone:
            raise Problem(503, "Too many open streams; poll the jobs meanwhile", headers=RETRY_STREAM) from None
        raise Problem(429, "Too many open streams of this courier", headers=RETRY_STREAM) from None
    settings = deps.settings(request)
    token, known = bearer(request), deps.known_couriers_of(request)

    async def signed_in() -> bool:  # the token still the courier's (remembered token_cache_s)
        return token is not None and getattr(await known.owner(token), "id", None) == courier.id

    return EventSourceResponse(
        _job_events(streams.jobs(slot, courier.id, signed_in)),
        ping=settings.stream_heartbeat_s,
        headers={"Cache-Control": "no-store"},
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        # The stream's own end releases the slot; this covers a response that ended before
        # the stream began (the client left at once).
        background=BackgroundTask(slot.release),
    )


async def _job_events(lists: AsyncIterator[list[store.Job]]) -> AsyncIterator[ServerSentEvent]:
    async for jobs in lists:
        yield ServerSentEvent(event="jobs", data=JobList(items=[job_view(j) for j in jobs]).model_dump_json())


@router.post(
    "/v1/courier/jobs/{order_id}/accept",
    response_model=Job,
    tags=["courier"],
    summary="Accept an offer: the job becomes `assigned`",
    description="409 if the offer expired or the order went to another courier.",
    responses=problem_responses(401, 404, 409, 413, 415, 429),
)
async def accept(order_id: str, request: Request, courier: CourierIdentity = Depends(current_courier)) -> ModelResponse:
    oid = parse_order_id(order_id)
    async with connection(request) as conn:
        job = await couriers.accept_offer(conn, deps.settings(request), courier, oid)
    deps.known_terms(request).remember(job)
    return ModelResponse(job_view(job))


@router.post(
    "/v1/courier/jobs/{order_id}/decline",
    response_model=Declined,
    tags=["courier"],
    summary="Decline an offer: it goes to the next courier, never back to this one",
    responses=problem_responses(401, 404, 409, 413, 415, 429),
)
async def decline(
    order_id: str, request: Request, courier: CourierIdentity = Depends(current_courier)
) -> ModelResponse:
    oid = parse_order_id(order_id)
    async with transaction(request) as conn:
        await couriers.decline_offer(conn, deps.settings(request), courier.id, oid)
    deps.hints(request).poke()  # after the commit, so the matcher sees the job due again
    return ModelResponse(Declined(order_id=oid))


@router.post(
    "/v1/courier/jobs/{order_id}/pickup",
    response_model=Job,
    tags=["courier"],
    summary="The courier has the parcel: `picked_up`",
    responses=problem_responses(401, 404, 409, 413, 415, 429),
)
async def pickup(order_id: str, request: Request, courier: CourierIdentity = Depends(current_courier)) -> ModelResponse:
    oid = parse_order_id(order_id)
    async with connection(request) as conn:
        job = await couriers.pick_up(conn, deps.settings(request), courier.id, oid)
    deps.known_terms(request).remember(job)
    return ModelResponse(job_view(job))


@router.post(
    "/v1/courier/jobs/{order_id}/deliver",
    response_model=Job,
    tags=["courier"],
    summary="Hand the parcel over: `delivered`",
    description=(
        "Checks the recipient's delivery code and that `cod_collected_vnd` equals the job's "
        "`cod_amount_vnd`; either wrong is 422. Wrong codes are limited per job: after "
        f"{_DEFAULTS['code_max_failures']} wrong codes in a row the job locks for "
        f"{_DEFAULTS['code_lockout_s']:g} s, each next lockout {_DEFAULTS['code_lockout_growth']} times "
        f"longer (up to {_DEFAULTS['code_lockout_max_s']:g} s), and every attempt meanwhile (even with "
        "the right code) is 429 with `Retry-After`, problem type "
        f"`{PROBLEM_TYPES}{DELIVERY_CODE_LOCKED}` (the rate limit's 429 has another). After "
        f"{_DEFAULTS['code_max_failures_per_job']} wrong codes on a job in all, it is 423 until the "
        "admin clears it. A courier with "
        f"{_DEFAULTS['courier_code_max_failures']} wrong codes across their jobs within "
        f"{_DEFAULTS['courier_code_window_s']:g} s gets 403 on every delivery (and no new offers) "
        "until the admin clears them. The courier can still report a failed delivery."
    ),
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 423, 429),
    openapi_extra=json_body(DeliverRequest),
)
async def deliver(
    order_id: str, request: Request, courier: CourierIdentity = Depends(current_courier)
) -> ModelResponse:
    body = await read_body(request, DeliverRequest)
    oid = parse_order_id(order_id)
    settings = deps.settings(request)
    known = deps.known_terms(request)
    async with connection(request) as conn:  # a counted wrong code is committed before we answer
        outcome = await delivery.deliver(
            conn,
            settings,
            courier.id,
            oid,
            delivery_code=body.delivery_code,
            cod_collected_vnd=body.cod_collected_vnd,
            terms=known.get(oid),
        )
    check = outcome.check
    if check.verdict is domain.CodeVerdict.OK and outcome.job is not None:  # the delivered job comes with OK
        known.forget(oid)
        deps.hints(request).capacity_appeared()
        return ModelResponse(job_view(outcome.job))
    counters = deps.guard_counters(request)
    for kind in outcome.lockouts:
        counters.lockouts[kind].inc()
    if outcome.courier_locked:
        raise Problem(
            403,
            "Too many wrong delivery codes across your jobs: deliveries are paused until operations clear it",
            title="Deliveries paused",
        )
    if check.verdict is domain.CodeVerdict.HELD:
        raise Problem(
            423,
            "Too many wrong delivery codes for this job: it is locked until operations clear it",
            title="Job locked",
        )
    now = now_utc()
    if check.verdict is domain.CodeVerdict.LOCKED and check.locked_until is not None:  # LOCKED says until when
        wait = domain.retry_after_s(check.locked_until, now)
        raise Problem(
            429,
            f"Too many wrong delivery codes for this job; try again in {wait} s",
            title="Too many attempts",
            headers={"Retry-After": str(wait)},
            kind=DELIVERY_CODE_LOCKED,
            retry_after_s=wait,
        )
    if check.verdict is domain.CodeVerdict.WRONG_CODE:
        counters.wrong_codes.inc()
        limits = settings.code_limits()
        left = domain.attempts_left(check.state, limits, now)
        if domain.code_held(check.state, limits):
            detail = "; the job is locked until operations clear it"
        elif check.locked_until is not None and now < check.locked_until:
            detail = f"; the job is locked for {domain.retry_after_s(check.locked_until, now)} s"
        else:
            detail = f"; {left} attempt{'s' if left != 1 else ''} left before a lockout"
        raise Problem(
            422,
            "Wrong delivery code" + detail,
            title="Invalid input",
            attempts_left=left,
            errors=[{"loc": ["body", "delivery_code"], "msg": "wrong delivery code"}],
        )
    raise Problem(
        422,
        "cod_collected_vnd differs from the job's cod_amount_vnd",
        title="Invalid input",
        errors=[{"loc": ["body", "cod_collected_vnd"], "msg": "must equal cod_amount_vnd"}],
    )


@router.post(
    "/v1/courier/jobs/{order_id}/fail",
    response_model=Job,
    tags=["courier"],
    summary="Report a failed delivery: `delivery_failed`",
    responses=problem_responses(400, 401, 404, 409, 413, 415, 422, 429),
    openapi_extra=json_body(FailRequest),
)
async def fail(order_id: str, request: Request, courier: CourierIdentity = Depends(current_courier)) -> ModelResponse:
    body = await read_body(request, FailRequest)
    oid = parse_order_id(order_id)
    async with connection(request) as conn:
        job = await couriers.fail_delivery(conn, deps.settings(request), courier.id, oid, reason=body.reason)
    return ModelResponse(job_view(job))


@router.post(
    "/v1/courier/jobs/{order_id}/return",
    response_model=Job,
    tags=["courier"],
    summary="The parcel is back with the sender: `returned`",
    responses=problem_responses(401, 404, 409, 413, 415, 429),
)
async def return_parcel(
    order_id: str, request: Request, courier: CourierIdentity = Depends(current_courier)
) -> ModelResponse:
    oid = parse_order_id(order_id)
    async with connection(request) as conn:
        job = await couriers.return_parcel(conn, deps.settings(request), courier.id, oid)
    deps.hints(request).capacity_appeared()
    return ModelResponse(job_view(job))


@router.put(
    "/v1/courier/status",
    response_model=CourierStatus,
    tags=["courier"],
    summary="Go online (with a position) or offline",
    description="Going offline withdraws open offers (they go to the next courier); "
    "accepted jobs stay with the courier. A flagged courier (`flag`) may be online but gets no "
    "new offers until the admin clears the flag. The position is checked as a point's is "
    "(`POST /v1/courier/locations`): one further from the courier's last than their vehicle can "
    "go is not used (the status still changes; `lat`/`lng` answer the position held) and counts "
    "toward the same flag.",
    responses=problem_responses(400, 401, 413, 415, 422, 429),
    openapi_extra=json_body(CourierStatusUpdate),
)
async def put_status(request: Request, courier: CourierIdentity = Depends(current_courier)) -> ModelResponse:
    body = await read_body(request, CourierStatusUpdate)
    settings = deps.settings(request)
    if body.at is not None and not domain.location_is_plausible(
        body.at, now_utc(), timedelta(seconds=settings.location_clock_skew_s)
    ):
        raise Problem(
            422,
            "at: is in the future",
            title="Invalid input",
            errors=[{"loc": ["body", "at"], "msg": "is in the future"}],
        )
    async with transaction(request) as conn:
        row, moved = await couriers.set_status(
            conn,
            settings,
            courier.id,
            online=body.online,
            lat=body.lat,
            lng=body.lng,
            vehicle=courier.vehicle,
            at=body.at,
        )
    if moved is not None:
        deps.guard_counters(request).position(moved.ignored, moved.flagged)
    deps.hints(request).poke()  # their capacity is new, or the offers they withdrew by going offline are due again
    return ModelResponse(status_view(row))


@router.post(
    "/v1/courier/locations",
    status_code=202,
    response_model=LocationsAccepted,
    tags=["courier"],
    summary="Report positions (1..100 points; the newest is kept)",
    description="Points may not be from the future beyond a small clock skew "
    f"({_DEFAULTS['location_clock_skew_s']:g} s). The newest point is used unless the courier's "
    "position is as new by the phone's clock (`at` of an earlier point, or of the status) or it is "
    "further from that position than the courier's vehicle can go (a GPS glitch is ignored; "
    f"{_DEFAULTS['location_jump_flag_after']} such points in a row are kept and flag the courier: "
    "no new offers until the admin clears it); the answer says which (`position_updated`, "
    "`ignored_reason`). A `courier.location` event goes out only while the courier carries an "
    "active job, at most once per second.",
    responses=problem_responses(400, 401, 413, 415, 422, 429),
    openapi_extra=json_body(LocationBatch),
)
async def post_locations(request: Request, courier: CourierIdentity = Depends(current_courier)) -> ModelResponse:
    body = await read_body(request, LocationBatch)
    settings = deps.settings(request)
    now = now_utc()
    skew = timedelta(seconds=settings.location_clock_skew_s)
    future = [
        {"loc": ["body", "points", i, "at"], "msg": "is in the future"}
        for i, p in enumerate(body.points)
        if not domain.location_is_plausible(p.at, now, skew)
    ]
    if future:
        raise Problem(422, "Location timestamps may not be in the future", title="Invalid input", errors=future)
    async with connection(request) as conn:  # its own statements and, if need be, transaction
        moved, published = await couriers.report_locations(
            conn, settings, courier.id, courier.vehicle, [couriers.Point(p.lat, p.lng, p.at) for p in body.points]
        )
    deps.guard_counters(request).position(moved.ignored, moved.flagged)
    return ModelResponse(
        LocationsAccepted(
            accepted=len(body.points), published=published, position_updated=moved.kept, ignored_reason=moved.ignored
        ),
        status_code=202,
    )


@router.get(
    "/v1/courier/cash",
    response_model=CashHeld,
    tags=["courier"],
    summary="The cash collected on delivery the courier holds (not yet handed in at the hub)",
    responses=problem_responses(401, 429),
)
async def cash_held(request: Request, courier: CourierIdentity = Depends(current_courier)) -> ModelResponse:
    held_vnd, deliveries = await store_cash.held(deps.pool(request), courier.id)
    return ModelResponse(CashHeld(held_vnd=held_vnd, deliveries=deliveries))
