"""The admin's routes for cash on delivery after the doorstep: the cash a courier holds, the
hand-ins the admin records at the hub (audited), and the couriers holding cash, the one holding
it longest first. Admin token only; the console's courier panel reads and records them."""

from __future__ import annotations

from fastapi import Depends, Query, Request

from shared.http import Problem, api_router, problem_responses

from . import deps, domain, store_admin, store_cash
from .admin_api import CURSOR_DESCRIPTION, MAX_LIMIT, encode_cursor, instant_and_id_cursor
from .admin_schemas import (
    CashHandinCreate,
    CashHandinCreated,
    CashHandinView,
    CashPage,
    CourierCash,
    CourierHoldingCash,
    HeldDelivery,
)
from .api import parse_courier_id, transaction
from .service import cash

router = api_router()

HELD_SHOWN = 500  # a courier's held deliveries listed at most
HANDINS_SHOWN = 20  # a courier's latest hand-ins listed


@router.get(
    "/v1/admin/couriers/{courier_id}/cash",
    response_model=CourierCash,
    tags=["admin"],
    summary="The cash a courier holds: their deliveries not yet handed in, and their latest hand-ins",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 404),
)
async def courier_cash(courier_id: str, request: Request) -> CourierCash:
    cid = parse_courier_id(courier_id)
    async with transaction(request) as conn:  # one snapshot: the sum is of the deliveries listed
        if not await store_admin.courier_exists(conn, cid):
            raise Problem(404, "Courier not found")
        held_vnd, count = await store_cash.held(conn, cid)
        rows = await store_cash.held_deliveries(conn, cid, limit=HELD_SHOWN) if count else []
        handins = await store_cash.latest_handins(conn, cid, limit=HANDINS_SHOWN)
    return CourierCash(
        courier_id=cid,
        held_vnd=held_vnd,
        held_deliveries=count,
        deliveries=[HeldDelivery(**dict(r)) for r in rows],
        more=count > len(rows),
        handins=[CashHandinView(**dict(h)) for h in handins],
    )


@router.post(
    "/v1/admin/couriers/{courier_id}/cash-handins",
    status_code=201,
    response_model=CashHandinCreated,
    tags=["admin"],
    summary="Record the cash a courier handed in: it settles their oldest deliveries (audited)",
    description="Settles the courier's oldest deliveries whose cash adds up to exactly `amount_vnd` "
    "(part of what they hold: the first N deliveries). 409 when no run of their oldest deliveries adds "
    "up to it (nothing changes; `held_vnd` says what they hold). Two hand-ins at once never settle the "
    f"same delivery. `amount_vnd` is a whole number 1..{domain.MAX_HANDIN_VND}. Audited "
    "`courier.cash_received`.",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(400, 401, 404, 409, 413, 415, 422),
)
async def receive_cash(courier_id: str, body: CashHandinCreate, request: Request) -> CashHandinCreated:
    cid = parse_courier_id(courier_id)
    try:
        async with transaction(request) as conn:
            handin = await cash.receive_cash(conn, cid, body.amount_vnd)
    except cash.CourierNotFound:
        raise Problem(404, "Courier not found") from None
    except cash.NoRunAddsUp as refused:
        raise Problem(
            409,
            "No run of the courier's oldest deliveries adds up to this amount",
            title="Amount does not match",
            held_vnd=refused.held_vnd,
        ) from None
    return CashHandinCreated(
        id=handin.id,
        courier_id=handin.courier_id,
        amount_vnd=handin.amount_vnd,
        deliveries=handin.deliveries,
        received_at=handin.received_at,
        held_vnd=handin.held_vnd,
    )


@router.get(
    "/v1/admin/cash",
    response_model=CashPage,
    tags=["admin"],
    summary="The couriers holding cash, the one holding it longest first (paged)",
    description=f"At most {MAX_LIMIT} a page; `total_held_vnd` is what all couriers hold.",
    dependencies=[Depends(deps.admin)],
    responses=problem_responses(401, 422),
)
async def couriers_holding_cash(
    request: Request,
    cursor: str | None = Query(None, max_length=200, description=CURSOR_DESCRIPTION),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
) -> CashPage:
    after = instant_and_id_cursor(cursor)
    async with transaction(request) as conn:  # one snapshot: the total is of the couriers listed
        rows = await store_cash.couriers_holding(conn, after=after, limit=limit + 1)
        total = await store_cash.total_held(conn)
    items = [
        CourierHoldingCash(
            courier_id=r["courier_id"],
            display_name=domain.display_name(r["name"]),
            held_vnd=int(r["held_vnd"]),
            deliveries=r["deliveries"],
            oldest_delivered_at=r["oldest_delivered_at"],
        )
        for r in rows[:limit]
    ]
    last = items[-1] if len(rows) > limit else None
    return CashPage(
        items=items,
        total_held_vnd=total,
        next_cursor=encode_cursor(last.oldest_delivered_at.isoformat(), str(last.courier_id)) if last else None,
    )
