"""The admin's audit log: who did what to what, and when, in the database of the service that
did it (each service has the table `admin_audit`; its migrations create it). Written in the
transaction of the action itself, so an action and its record are never one without the other.
Read newest first, a page at a time (`GET /v1/admin/audit` on orders and dispatch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.http import api_router, problem_responses

ADMIN = "admin"  # the actor behind the admin token (one token, one admin)

# `next_cursor` of the previous page: the id of its oldest entry.
AuditCursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the last page")]


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    actor: str = Field(examples=["admin"])
    action: str = Field(examples=["api_key.revoked", "courier.token_revoked"])
    target: str = Field(description="The id of what was acted on")
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[AuditEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    actor: str = ADMIN,
) -> None:
    await conn.execute(
        "INSERT INTO admin_audit (actor, action, target, detail) VALUES ($1, $2, $3, $4)", actor, action, target, detail
    )


async def page(pool: asyncpg.Pool, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """The entries older than `cursor` (or the newest), `limit` at most, and the next cursor."""
    rows = await pool.fetch(
        "SELECT id, at, actor, action, target, detail FROM admin_audit"
        " WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        int(cursor) if cursor else None,
        limit + 1,
    )
    shown, more = rows[:limit], len(rows) > limit
    return {
        "items": [
            {"at": r["at"], "actor": r["actor"], "action": r["action"], "target": r["target"], "detail": r["detail"]}
            for r in shown
        ],
        "next_cursor": str(shown[-1]["id"]) if more else None,
    }


def audit_router(admin: Callable[[Request], Awaitable[None]], pool: Callable[[Request], asyncpg.Pool]) -> APIRouter:
    """`GET /v1/admin/audit` of a service: `admin` is its admin dependency, `pool` finds its pool."""
    router = api_router()

    @router.get(
        "/v1/admin/audit",
        response_model=AuditPage,
        tags=["admin"],
        summary="What the admin did, newest first",
        dependencies=[Depends(admin)],
        responses=problem_responses(401, 422),
    )
    async def audit_log(
        request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 50, cursor: AuditCursor = None
    ) -> AuditPage:
        return AuditPage.model_validate(await page(pool(request), limit=limit, cursor=cursor))

    return router
