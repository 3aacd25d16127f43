"""A courier's delivery: the recipient's code and the COD amount checked, wrong codes counted
on the job and on the courier (guards.py), the job delivered with its event.

Its common case, the right code, is one statement: with the job's terms remembered from its
accept or pickup (KnownTerms), the first try delivers without reading the job first.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared import secrets
from shared.events import DeliveryCodeHash, DeliveryDelivered, DeliveryDeliveredData

from .. import domain, store, store_couriers
from ..settings import DispatchSettings
from . import guards
from .common import JobNotFound, emit, now_utc, step_event, transition


async def _lock_own_job(conn: asyncpg.Connection, order_id: UUID, courier_id: UUID) -> store.Job:
    job = await store.lock_job(conn, order_id)
    if job is None or job.courier_id != courier_id:
        raise JobNotFound
    return job


@dataclass(frozen=True)
class DeliveryOutcome:
    check: domain.DeliveryCheck
    job: store.Job | None  # the delivered job, when the check passed
    courier_locked: bool = False  # the courier's wrong codes across jobs lock them out of deliveries
    lockouts: tuple[str, ...] = ()  # lockouts this attempt began: "job_timed", "job_held", "courier"


# The outcome of a deliver repeated on a delivered job, or of one delivered at the first try.
REPEATED = FIRST_TRY = domain.DeliveryCheck(domain.CodeVerdict.OK, domain.CodeState())


@dataclass(frozen=True, slots=True)
class DeliveryTerms:
    """What a job's delivery is checked against, fixed when the job is made."""

    code: DeliveryCodeHash
    cod_amount_vnd: int


class KnownTerms:
    """The delivery terms of jobs this process answered an accept or a pickup for, so that
    their deliver can skip reading the job first (deliver's first try). Only a hint: the
    first try's statement checks them against the job's own, and a job not remembered here
    (another instance took the pickup, or it was forgotten) is delivered by the read path.
    At most `max_size`, the oldest forgotten first."""

    def __init__(self, max_size: int = 50_000) -> None:
        self.max_size = max_size
        self._terms: dict[UUID, DeliveryTerms] = {}

    def remember(self, job: store.Job) -> None:
        self._terms.pop(job.order_id, None)
        while len(self._terms) >= self.max_size:
            del self._terms[next(iter(self._terms))]
        code = DeliveryCodeHash(salt=job.code_salt, hash=job.code_hash)
        self._terms[job.order_id] = DeliveryTerms(code, job.cod_amount_vnd)

    def get(self, order_id: UUID) -> DeliveryTerms | None:
        return self._terms.get(order_id)

    def forget(self, order_id: UUID) -> None:
        self._terms.pop(order_id, None)


async def deliver(
    conn: asyncpg.Connection,
    settings: DispatchSettings,
    courier_id: UUID,
    order_id: UUID,
    *,
    delivery_code: str,
    cod_collected_vnd: int,
    terms: DeliveryTerms | None = None,
) -> DeliveryOutcome:
    """Check the code and the COD amount. The common case (the right code) is a read and one
    statement that delivers only if no other call counted a wrong code meanwhile; anything
    else is decided again under the job's row lock, in a transaction of its own, which a
    wrong code is counted in (committed even though the answer is an error), on the job and
    on the courier. A courier whose wrong codes across jobs reached the limit delivers nothing
    until the admin clears them.

    With the job's `terms` known (KnownTerms) and the code and amount right by them, the
    first try is the statement alone, without the read: it delivers only a job on which no
    wrong code was ever counted, whose terms these are, for a courier not locked out, which
    is when the read path would deliver too; otherwise it changes nothing and the read path
    decides."""
    if (
        terms is not None
        and cod_collected_vnd == terms.cod_amount_vnd
        and secrets.delivery_code_matches(delivery_code, terms.code, settings.delivery_code_key)
    ):
        delivered = await store.deliver_first_try(
            conn,
            order_id,
            courier_id,
            cod_collected_vnd=cod_collected_vnd,
            code_salt=terms.code.salt,
            code_hash=terms.code.hash,
            courier_max_failures=settings.courier_code_max_failures,
            event=_delivered_event(settings, order_id, cod_collected_vnd),
        )
        if delivered is not None:
            return DeliveryOutcome(FIRST_TRY, delivered)
    job, courier_failures = await store.job_and_courier_code_failures(conn, order_id, courier_id)
    if job is None or job.courier_id != courier_id:
        raise JobNotFound
    if domain.already_done(domain.Action.DELIVER, job.status):
        return DeliveryOutcome(REPEATED, job)  # delivered before: nothing is checked or counted
    if domain.courier_code_locked(courier_failures, settings.courier_code_max_failures):
        return DeliveryOutcome(domain.DeliveryCheck(domain.CodeVerdict.LOCKED, job.code_state), None, True)
    check = _check_code(settings, job, delivery_code, cod_collected_vnd)
    if check.verdict is domain.CodeVerdict.OK and job.status == domain.TRANSITIONS[domain.Action.DELIVER][0]:
        delivered = await store.deliver_job(
            conn,
            order_id,
            courier_id,
            cod_collected_vnd=cod_collected_vnd,
            seen=job.code_state,
            event=_delivered_event(settings, order_id, cod_collected_vnd),
        )
        if delivered is not None:
            return DeliveryOutcome(check, delivered)
    async with conn.transaction():
        return await _deliver_locked(
            conn, settings, courier_id, order_id, delivery_code=delivery_code, cod_collected_vnd=cod_collected_vnd
        )


def _delivered_event(settings: DispatchSettings, order_id: UUID, cod_collected_vnd: int) -> list:
    return step_event(
        settings,
        DeliveryDelivered,
        order_id,
        DeliveryDeliveredData(order_id=order_id, cod_collected_vnd=cod_collected_vnd),
    )


def _check_code(
    settings: DispatchSettings, job: store.Job, delivery_code: str, cod_collected_vnd: int
) -> domain.DeliveryCheck:
    stored = DeliveryCodeHash(salt=job.code_salt, hash=job.code_hash)
    return domain.check_delivery(
        code_matches=secrets.delivery_code_matches(delivery_code, stored, settings.delivery_code_key),
        cod_collected_vnd=cod_collected_vnd,
        cod_amount_vnd=job.cod_amount_vnd,
        state=job.code_state,
        now=now_utc(),
        limits=settings.code_limits(),
    )


async def _deliver_locked(
    conn: asyncpg.Connection,
    settings: DispatchSettings,
    courier_id: UUID,
    order_id: UUID,
    *,
    delivery_code: str,
    cod_collected_vnd: int,
) -> DeliveryOutcome:
    job = await _lock_own_job(conn, order_id, courier_id)
    if domain.already_done(domain.Action.DELIVER, job.status):
        return DeliveryOutcome(REPEATED, job)  # a concurrent call delivered it
    status = transition(domain.Action.DELIVER, job.status)
    check = _check_code(settings, job, delivery_code, cod_collected_vnd)
    if check.state != job.code_state:
        await store.record_code_check(conn, order_id, check.state)
    if check.verdict is domain.CodeVerdict.WRONG_CODE:
        return DeliveryOutcome(
            check, None, lockouts=await guards.count_wrong_code(conn, settings, courier_id, job, check)
        )
    if check.verdict is not domain.CodeVerdict.OK:
        return DeliveryOutcome(check, None)
    job = await store.update_job(conn, order_id, status=status, cod_collected_vnd=cod_collected_vnd)
    await store_couriers.release_couriers(conn, [courier_id])
    await emit(
        conn,
        settings,
        DeliveryDelivered,
        order_id,
        DeliveryDeliveredData(order_id=order_id, cod_collected_vnd=cod_collected_vnd),
    )
    return DeliveryOutcome(check, job)
