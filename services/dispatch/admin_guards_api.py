"""The admin's routes that clear what the guards against a dishonest (or broken) courier app
locked: a courier's flag (no new offers; no deliveries after guessing codes) and a job's
delivery-code lock. Admin token only; each clear is written to the audit log."""

from __future__ import annotations

from fastapi import Depends, Request, Response

from shared.http import Problem, api_router, problem_responses

from . import deps
from .api import parse_courier_id, parse_order_id, transaction
from .service import guards
from .service.common import JobNotFound

router = api_router()


@router.post(
    "/v1/admin/couriers/{courier_id}/flag/clear",
    status_code=204,
    tags=["admin"],
    summary="Clear a courier's flag: offers and deliveries again (audited)",
    description="Clears the flag (`impossible_speed` or `code_guessing`), the impossible positions "
    "in a row and the wrong delivery codes counted across the courier's jobs. Repeating it is harmless.",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def clear_courier_flag(courier_id: str, request: Request) -> Response:
    cid = parse_courier_id(courier_id)
    async with transaction(request) as conn:
        if not await guards.clear_flag(conn, cid):
            raise Problem(404, "Courier not found")
    deps.hints(request).capacity_appeared()  # the matcher may offer to them at once
    return Response(status_code=204)


@router.post(
    "/v1/admin/jobs/{order_id}/code-lock/clear",
    status_code=204,
    tags=["admin"],
    summary="Clear a job's delivery-code lock and its wrong codes (audited)",
    description="For a job locked by wrong delivery codes (429 for a while, or 423 after the cap), "
    "once the recipient confirmed the courier is with them: the job's wrong codes and lockouts "
    "start again from zero. Repeating it is harmless.",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def clear_code_lock(order_id: str, request: Request) -> Response:
    oid = parse_order_id(order_id)
    async with transaction(request) as conn:
        if not await guards.clear_code_lock(conn, oid):
            raise JobNotFound
    return Response(status_code=204)
