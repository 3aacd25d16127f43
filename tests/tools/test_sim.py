"""The city simulation's couriers move as dispatch believes a vehicle can (no servers: a
recording client stands in for dispatch's locations route)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from services.dispatch.domain import MAX_SPEED_MPS
from services.dispatch.settings import DispatchSettings
from shared.geo import haversine_m
from tools.sim.city import CourierPlan
from tools.sim.run import Simulation


class RecordingClient:
    def __init__(self) -> None:
        self.batches: list[list[dict]] = []

    async def send_locations(self, token: str, points: list[dict]) -> dict:
        self.batches.append(points)
        return {"ignored_reason": None}


@pytest.mark.parametrize("speedup", [600, 6000])  # the demo runs x60: the same batches, 10x longer
@pytest.mark.parametrize("vehicle", ["motorbike", "car", "bicycle"])
async def test_a_ride_at_city_pace_is_never_a_jump_dispatch_ignores(vehicle, speedup):
    # Phones stamp points with real time; dispatch ignores a point further from the last one
    # than the vehicle goes in between plus GPS error, and flags the courier at the third in a
    # row. Before the batches were sized to it, the demo (x60) left 25 of its 30 couriers flagged.
    slack_m = DispatchSettings.model_fields["location_jump_slack_m"].default
    client = RecordingClient()
    sim = Simulation(client, script=None, speedup=speedup)
    plan = CourierPlan("Lê Văn Thử", "0987654321", vehicle, 20.95, 107.08, 1.0, 0.0, seed=1)
    pos = [20.95, 107.08]
    await sim.ride("token", plan, pos, 20.96, 107.08)  # 1.1 km north

    assert haversine_m(*pos, 20.96, 107.08) < 15  # arrived
    assert len(client.batches) > 3
    newest = [max(batch, key=lambda p: p["at"]) for batch in client.batches]
    for a, b in itertools.pairwise(newest):
        seconds = (datetime.fromisoformat(b["at"]) - datetime.fromisoformat(a["at"])).total_seconds()
        assert seconds > 0
        moved = haversine_m(a["lat"], a["lng"], b["lat"], b["lng"])
        assert moved <= MAX_SPEED_MPS[vehicle] * seconds + slack_m
    assert datetime.fromisoformat(newest[-1]["at"]) <= datetime.now(UTC)  # never in the future
