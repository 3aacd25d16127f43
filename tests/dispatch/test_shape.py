"""The statuses are spelled once, in domain.py: the schema's CHECKs agree with it."""

from __future__ import annotations

import re
from typing import get_args

from services.dispatch import domain


async def _check_values(pool, table: str, column: str) -> set[str]:
    definitions = await pool.fetch(
        "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c'",
        table,
    )
    [check] = [r["d"] for r in definitions if re.match(rf"CHECK \(\(?{column} = ANY", r["d"])]
    return set(re.findall(r"'([a-z_]+)'::text", check))


async def test_the_schema_knows_the_statuses_of_the_domain(dispatch):
    assert await _check_values(dispatch.pool, "jobs", "status") == set(domain.JOB_STATUSES)
    assert await _check_values(dispatch.pool, "offers", "state") == set(get_args(domain.OfferState))
