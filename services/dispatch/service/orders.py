"""Orders' events: new jobs from order.placed, the cancel saga's answer to
order.cancel_requested, and the merchant's clear of a delivery-code lock
(order.code_unlock_requested), applied in the orders consumer's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg

from shared.events import (
    CancelConfirmed,
    CancelRefused,
    CancelRefusedData,
    Envelope,
    Model,
    OrderCancelRequested,
    OrderCodeUnlockRequested,
    OrderPlaced,
)
from shared.inbox import Verdict, accept_many

from .. import domain, store, store_couriers
from ..settings import DispatchSettings
from . import guards
from .common import emit_many, grid, step_data


@dataclass(frozen=True)
class Applied:
    placed: int  # new jobs
    freed: bool  # a courier's capacity came free (a cancel after an offer or acceptance)


async def apply_order_events(
    conn: asyncpg.Connection, settings: DispatchSettings, consumer: str, batch: list[tuple[str, Envelope]]
) -> Applied:
    """Apply a batch of giao.orders.v1 events in the caller's one transaction: new jobs from
    order.placed, the cancel saga's answer to order.cancel_requested, and a merchant's clear of
    a job's delivery-code lock (an unknown job has nothing to clear)."""
    placed: list[OrderPlaced] = []
    cancels: list[OrderCancelRequested] = []
    # The inbox judges the whole batch in a few statements (not three per event).
    verdicts = await accept_many(conn, consumer, batch)
    for (_, event), verdict in zip(batch, verdicts, strict=True):
        if verdict is not Verdict.NEW:
            continue
        if isinstance(event, OrderPlaced):
            placed.append(event)
        elif isinstance(event, OrderCancelRequested):
            cancels.append(event)
        elif isinstance(event, OrderCodeUnlockRequested):
            await guards.clear_code_lock(conn, event.data.order_id, actor=f"merchant:{event.data.merchant_id}")
    if placed:
        await store.insert_jobs(conn, [_job_row(settings, e) for e in placed])
    freed = await _answer_cancels(conn, settings, cancels) if cancels else False
    return Applied(len(placed), freed)


def _job_row(settings: DispatchSettings, event: OrderPlaced) -> tuple[Any, ...]:
    d = event.data
    cell = grid(settings).cell(d.pickup.lat, d.pickup.lng)
    return (
        d.order_id,
        d.tracking_code,
        d.merchant_id,
        d.pickup.model_dump(),
        d.dropoff.model_dump(),
        d.parcel.model_dump(),
        d.note,
        d.cod_amount_vnd,
        d.fee_vnd,
        d.distance_m,
        d.pickup.lat,
        d.pickup.lng,
        cell,
        grid(settings).coarse(cell),
        d.delivery_code.salt,
        d.delivery_code.hash,
        event.occurred_at,
        event.occurred_at + timedelta(seconds=settings.window_s),
    )


async def _answer_cancels(
    conn: asyncpg.Connection, settings: DispatchSettings, cancels: list[OrderCancelRequested]
) -> bool:
    """Answer each cancel request; returns whether a courier's capacity came free."""
    jobs = await store.lock_jobs(conn, sorted({e.data.order_id for e in cancels}))
    status = {oid: j.status for oid, j in jobs.items()}
    to_cancel: dict[UUID, str | None] = {}
    freed_couriers: list[UUID] = []
    answers: list[tuple[type[Envelope], UUID, Model]] = []
    for event in cancels:
        oid = event.data.order_id
        if oid not in status:
            # Unknown here (its order.placed never arrived, or was dead-lettered): nothing
            # to stop, so the cancel stands; refusing would leave the order placed forever.
            answers.append((CancelConfirmed, oid, step_data(oid)))
            continue
        decision = domain.decide_cancel(status[oid])
        if isinstance(decision, domain.CancelRefused):
            answers.append((CancelRefused, oid, CancelRefusedData(order_id=oid, reason=decision.reason)))
            continue
        if not decision.already_cancelled:
            to_cancel[oid] = event.data.reason
            courier_id = jobs[oid].courier_id
            if decision.frees_courier and courier_id is not None:  # a courier holds it when it frees one
                freed_couriers.append(courier_id)
            status[oid] = domain.CANCELLED
        answers.append((CancelConfirmed, oid, step_data(oid)))
    await store.end_jobs(conn, list(to_cancel), status=domain.CANCELLED, reasons=list(to_cancel.values()))
    await store_couriers.release_couriers(conn, freed_couriers)
    await store.notify_couriers(conn, freed_couriers)
    await emit_many(conn, settings, answers)
    return bool(freed_couriers)
