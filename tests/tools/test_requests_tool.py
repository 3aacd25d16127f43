"""The per-request CPU measure (tools.bench.requests) runs against today's services."""

from __future__ import annotations

import math
from pathlib import Path

from tools.bench import requests
from tools.bench.measure import read_pids

ROOT = Path(__file__).resolve().parents[2]


async def test_the_per_request_measure_runs_against_the_services(infra):
    # It starts the three services of a tree as processes and drives every hot route: its
    # assumptions (a broker without SASL, no per-caller limits) broke it unseen once.
    requests.LOGS.mkdir(parents=True, exist_ok=True)
    servers = {n: p for n, p in read_pids(ROOT).items() if n in requests.SERVERS} if infra.local else {}
    figures = await requests.measure_round(ROOT, 12, infra.kafka_bootstrap, infra.pg_admin_dsn, servers)
    assert set(figures.process) == set(figures.machine) == set(figures.parts) == set(requests.ROUTES)
    assert all(math.isfinite(us) for us in [*figures.process.values(), *figures.machine.values()])
    placement = "POST /v1/orders"
    assert figures.process[placement] > 0, figures
    # A placement sets off work beyond orders: its statement, its events, the offer they lead to.
    assert figures.machine[placement] > figures.process[placement], figures
    assert figures.parts[placement]["dispatch"] > 0, figures
    if "postgres" in servers:  # a placement writes to orders' database and to dispatch's
        assert figures.parts[placement]["postgres orders"] > 0, figures
        assert figures.parts[placement]["postgres dispatch"] > 0, figures
