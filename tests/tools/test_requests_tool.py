"""The per-request CPU measure (tools.bench.requests) runs against today's services."""

from __future__ import annotations

import math
from pathlib import Path

from tools.bench import requests

ROOT = Path(__file__).resolve().parents[2]


async def test_the_per_request_measure_runs_against_the_services(infra):
    # It starts the three services of a tree as processes and drives every hot route: its
    # assumptions (a broker without SASL, no per-caller limits) broke it unseen once.
    requests.LOGS.mkdir(parents=True, exist_ok=True)
    figures = await requests.measure_round(ROOT, 12, infra.kafka_bootstrap, infra.pg_admin_dsn)
    assert set(figures) == set(requests.ROUTES)
    assert all(math.isfinite(us) for us in figures.values())
    assert figures["POST /v1/orders"] > 0, figures
