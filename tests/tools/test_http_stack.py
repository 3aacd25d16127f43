"""The in-process measure of the HTTP layer runs against today's service_app (no servers)."""

from __future__ import annotations

from tools.bench import http_stack


async def test_the_http_layer_measure_runs_against_the_services_app():
    # It builds the app the services build, around endpoints that do nothing: a change to
    # service_app's needs (once register_metrics) broke it unseen until someone measured.
    figures = await http_stack.measure(calls=20, rounds=1)
    assert set(figures) == {"POST /v1/orders", "GET /v1/courier/jobs"}
    assert all(us > 0 for us in figures.values())
