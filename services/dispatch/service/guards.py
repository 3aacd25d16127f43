"""What the guards against a dishonest (or broken) courier app do besides their rules
(domain.py) and counts (store*.py): a wrong delivery code counted on the courier too, with the
flag it may raise, and the clears of a courier's flag (the admin's) and of a job's code lock
(the admin's or the merchant's)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from shared import audit

from .. import domain, store, store_couriers
from ..settings import DispatchSettings
from .common import SOURCE


async def count_wrong_code(
    conn: asyncpg.Connection, settings: DispatchSettings, courier_id: UUID, job: store.Job, check: domain.DeliveryCheck
) -> tuple[str, ...]:
    """Count a wrong code on the courier too (the job's row is locked: jobs before couriers);
    flag them when it reaches their limit. The lockouts this wrong code began."""
    began = []
    limits = settings.code_limits()
    if domain.code_held(check.state, limits):
        began.append("job_held")
    elif check.state.lockouts > job.code_lockouts:
        began.append("job_timed")
    failures = await store_couriers.count_code_failure(conn, courier_id, window_s=settings.courier_code_window_s)
    if domain.courier_code_locked(failures, settings.courier_code_max_failures):
        began.append("courier")
        if await store_couriers.flag_courier(conn, courier_id, domain.CODE_GUESSING):
            await audit.record(
                conn,
                action="courier.flagged",
                target=str(courier_id),
                detail={"reason": domain.CODE_GUESSING, "wrong_codes": failures},
                actor=SOURCE,
            )
    return tuple(began)


async def clear_flag(conn: asyncpg.Connection, courier_id: UUID) -> bool:
    """The admin's clear of a courier's flag and wrong codes (audited); False for an unknown courier."""
    cleared = await store_couriers.clear_flag(conn, courier_id)
    if cleared is None:
        return False
    detail = {"reason": cleared["flag_reason"], "wrong_codes": cleared["code_failures"]}
    await audit.record(conn, action="courier.flag_cleared", target=str(courier_id), detail=detail)
    return True


async def clear_code_lock(conn: asyncpg.Connection, order_id: UUID, *, actor: str = audit.ADMIN) -> bool:
    """The admin's (or the merchant's, through orders: `actor` `merchant:<id>`) clear of a
    job's wrong delivery codes and lockouts (audited), e.g. once the recipient confirmed the
    courier is at their door; False for an unknown job."""
    cleared = await store.clear_code_lock(conn, order_id)
    if cleared is None:
        return False
    detail = {"wrong_codes": cleared["wrong_codes"], "lockouts": cleared["lockouts"]}
    await audit.record(conn, action="job.code_lock_cleared", target=str(order_id), detail=detail, actor=actor)
    return True
