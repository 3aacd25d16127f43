"""A courier's own calls: created by the admin, online or offline, positions, their answers
to offers and their steps with a job.

A courier's answers and steps are single statements, each its own transaction, on a
connection outside any (deliver opens one when it needs more); going online or offline and
reporting positions run in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from shared import audit, secrets
from shared.events import (
    CourierInfo,
    CourierLocation,
    CourierLocationData,
    DeliveryAssigned,
    DeliveryAssignedData,
    DeliveryFailed,
    DeliveryFailedData,
    DeliveryPickedUp,
    DeliveryReturned,
    Envelope,
    Model,
)

from .. import domain, store, store_couriers
from ..settings import DispatchSettings
from .common import SOURCE, JobNotFound, NotAllowedNow, grid, step_data, step_event, transition

# --- couriers --------------------------------------------------------------------------------

TOKEN_PREFIX = "ct"  # every courier token is secrets.new_secret(TOKEN_PREFIX): "ct_" and 43 characters


async def create_courier(
    conn: asyncpg.Connection, settings: DispatchSettings, *, name: str, phone: str, vehicle: str
) -> tuple[asyncpg.Record, str]:
    """A new courier and their bearer token (shown once: only its hash is stored)."""
    token = secrets.new_secret(TOKEN_PREFIX)
    row = await store_couriers.insert_courier(
        conn,
        id=uuid4(),
        name=name,
        phone=phone,
        vehicle=vehicle,
        secret_hash=secrets.secret_hash(token),
        capacity=settings.capacity(vehicle),
    )
    await audit.record(conn, action="courier.created", target=str(row["id"]), detail={"vehicle": vehicle})
    return row, token


async def replace_token(
    conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, *, reissue: bool
) -> str | None:
    """Revoke a courier's token. With `reissue`, the new token is returned (shown once); without,
    the courier is signed out until a token is issued again (the stored hash is then of a secret
    nobody was given) and goes offline, their open offers to the next courier at once (a phone
    that cannot answer must not hold orders until the offers time out; accepted jobs stay with
    them, as when going offline). None for an unknown courier. Instances that remembered the
    old token refuse it within `token_cache_s`."""
    if not reissue:
        row = await store_couriers.courier(conn, courier_id)
        if row is None:
            return None
        await set_status(conn, settings, courier_id, online=False, lat=None, lng=None, vehicle=row["vehicle"])
    token = secrets.new_secret(TOKEN_PREFIX)
    if not await store_couriers.set_courier_secret(conn, courier_id, secrets.secret_hash(token)):
        return None
    action = "courier.token_reissued" if reissue else "courier.token_revoked"
    await audit.record(conn, action=action, target=str(courier_id))
    return token if reissue else ""


async def set_status(
    conn: asyncpg.Connection,
    settings: DispatchSettings,
    courier_id: UUID,
    *,
    online: bool,
    lat: float | None,
    lng: float | None,
    vehicle: str,
    at: datetime | None = None,
) -> tuple[asyncpg.Record, store_couriers.Moved | None]:
    """Online or offline. Going offline withdraws the courier's open offers (those orders go to
    the next courier at once) but leaves accepted jobs with them, to finish. `at`: when the
    phone took the position, by its clock (later points are compared with it). The position is
    checked as a point's is (report_locations); what became of it, None without one."""
    if not online:
        offered = await store.open_offer_order_ids(conn, courier_id)
        locked = await store.lock_jobs(conn, offered)  # jobs before the courier: lock order
        still_mine = [oid for oid, j in locked.items() if j.status == domain.OFFERED and j.courier_id == courier_id]
        await store.reopen_jobs(conn, still_mine, offer_state=domain.OFFER_WITHDRAWN)
        await store_couriers.release_couriers(conn, [courier_id] * len(still_mine))
    cell = grid(settings).cell(lat, lng) if lat is not None and lng is not None else None
    row, moved = await store_couriers.set_courier_status(
        conn,
        courier_id,
        online=online,
        lat=lat,
        lng=lng,
        at=at if lat is not None else None,
        cell=cell,
        coarse_cell=grid(settings).coarse(cell) if cell is not None else None,
        max_mps=domain.MAX_SPEED_MPS[vehicle],
        slack_m=settings.location_jump_slack_m,
        flag_after=settings.location_jump_flag_after,
    )
    if moved is not None and moved.flagged:
        await _audit_speed_flag(conn, courier_id)
    return row, moved


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float
    at: datetime


async def report_locations(
    conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, vehicle: str, points: list[Point]
) -> tuple[store_couriers.Moved, bool]:
    """Keep the newest position unless the courier's position is newer by the phone's clock or
    it is a jump no `vehicle` makes (store_couriers._move); publish it if the courier carries an
    active job and none was published for them within the last second. Returns what became of
    the point and whether an event went out.

    `conn` is not in a transaction: the common case is two statements, each its own (the jobs
    the courier carries, then the position with its event); a point not kept takes a third
    (the run of jumps counted), and only the last of a run of jumps a transaction (kept after
    all, and the courier flagged)."""
    latest = max(points, key=lambda p: p.at)
    carried = await store.carried_order_ids(conn, courier_id)
    # Drafted before the statement decides whether it is written (the once-per-second slot):
    # a second report within the same second drafts one for nothing.
    event = (
        step_event(
            settings,
            CourierLocation,
            courier_id,
            CourierLocationData(courier_id=courier_id, order_ids=carried, lat=latest.lat, lng=latest.lng, at=latest.at),
        )
        if carried
        else None
    )
    g = grid(settings)
    cell = g.cell(latest.lat, latest.lng)
    coarse_cell = g.coarse(cell)

    async def move(max_mps: float) -> bool | None:
        return await store_couriers.move_courier(
            conn,
            courier_id,
            lat=latest.lat,
            lng=latest.lng,
            at=latest.at,
            cell=cell,
            coarse_cell=coarse_cell,
            max_mps=max_mps,
            slack_m=settings.location_jump_slack_m,
            event=event,
        )

    published = await move(domain.MAX_SPEED_MPS[vehicle])
    if published is not None:
        moved = store_couriers.PUBLISHED if published else store_couriers.KEPT
        return moved, moved.published
    jumps = await store_couriers.count_jump(conn, courier_id, latest.at)
    if jumps is None:
        return store_couriers.Moved(False, False, False, "older"), False
    if not domain.sustained_jump(jumps, settings.location_jump_flag_after):
        return store_couriers.Moved(False, False, False, domain.IMPOSSIBLE_SPEED), False
    async with conn.transaction():  # kept after all, and the courier flagged, together
        published = await move(store_couriers.NO_SPEED_LIMIT)
        flagged = await store_couriers.flag_courier(conn, courier_id, domain.IMPOSSIBLE_SPEED)
        if flagged:
            await _audit_speed_flag(conn, courier_id)
    return store_couriers.Moved(True, bool(published), flagged, None), bool(published)


async def _audit_speed_flag(conn: asyncpg.Connection, courier_id: UUID) -> None:
    await audit.record(
        conn, action="courier.flagged", target=str(courier_id), detail={"reason": domain.IMPOSSIBLE_SPEED}, actor=SOURCE
    )


# --- a courier's answers and steps ---------------------------------------------------------------


# The common case is one guarded UPDATE (its WHERE holds the rule, and the row lock it takes
# makes concurrent answers wait and re-check); only when it changes nothing do we read the
# job again to say why: 404 (not yours) or 409 (not now).


async def _why_not_offer(
    conn: asyncpg.Connection, order_id: UUID, courier_id: UUID, job: store.Job | None
) -> Exception:
    """404 if the order was never offered to this courier, else 409 with what became of it."""
    if job is None:
        return JobNotFound()
    if job.status == domain.OFFERED and job.courier_id == courier_id:
        return NotAllowedNow("The offer has expired")
    state = await store.offer_state(conn, order_id, courier_id)
    if state is None:
        return JobNotFound()
    now = "with another courier" if job.courier_id not in (None, courier_id) else job.status
    return NotAllowedNow(f"The offer is no longer open (it was {state}; the job is now {now})")


async def accept_offer(conn: asyncpg.Connection, settings: DispatchSettings, courier: Any, order_id: UUID) -> store.Job:
    """`courier` has id, name, phone and vehicle (for the assigned event). One statement."""
    info = CourierInfo(
        id=courier.id,
        name=courier.name,
        phone=courier.phone,
        display_name=domain.display_name(courier.name),
        vehicle=courier.vehicle,
    )
    job = await store.accept_offer(
        conn,
        order_id,
        courier.id,
        step_event(settings, DeliveryAssigned, order_id, DeliveryAssignedData(order_id=order_id, courier=info)),
    )
    if job is None:
        job = await store.job(conn, order_id)
        if job is not None and job.courier_id == courier.id and domain.already_done(domain.Action.ACCEPT, job.status):
            return job  # accepted before: a repeat changes nothing
        raise await _why_not_offer(conn, order_id, courier.id, job)
    return job


async def decline_offer(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, order_id: UUID) -> None:
    """Also allowed for an offer just past its time that the expirer has not closed yet."""
    if not await store.decline_offer(conn, order_id, courier_id):
        raise await _why_not_offer(conn, order_id, courier_id, await store.job(conn, order_id))
    await store_couriers.release_couriers(conn, [courier_id])


async def _advance(
    conn: asyncpg.Connection,
    settings: DispatchSettings,
    action: domain.Action,
    courier_id: UUID,
    order_id: UUID,
    event: tuple[type[Envelope], Model],
    fail_reason: str | None = None,
) -> store.Job:
    """One of the courier's steps with its event, in one statement; a repeat of the step the
    job is already in answers the job and changes nothing."""
    start, end = domain.TRANSITIONS[action]
    job = await store.advance_job(
        conn,
        order_id,
        courier_id,
        start=start,
        end=end,
        frees_capacity=domain.frees_capacity(start, end),
        event=step_event(settings, event[0], order_id, event[1]),
        fail_reason=fail_reason,
    )
    if job is None:
        current = await store.job(conn, order_id)
        if current is None or current.courier_id != courier_id:
            raise JobNotFound
        if domain.already_done(action, current.status):
            return current
        transition(action, current.status)  # raises 409 with the reason
        raise NotAllowedNow(f"Cannot {action.value} the job now")  # it changed meanwhile
    return job


async def pick_up(conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, order_id: UUID) -> store.Job:
    return await _advance(
        conn, settings, domain.Action.PICKUP, courier_id, order_id, (DeliveryPickedUp, step_data(order_id))
    )


async def fail_delivery(
    conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, order_id: UUID, *, reason: str
) -> store.Job:
    return await _advance(
        conn,
        settings,
        domain.Action.FAIL,
        courier_id,
        order_id,
        (DeliveryFailed, DeliveryFailedData(order_id=order_id, reason=reason)),
        fail_reason=reason,
    )


async def return_parcel(
    conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, order_id: UUID
) -> store.Job:
    return await _advance(
        conn, settings, domain.Action.RETURN, courier_id, order_id, (DeliveryReturned, step_data(order_id))
    )
