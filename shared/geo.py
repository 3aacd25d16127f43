"""Distances and travel-time estimates (pricing, matching and ETAs use the same ones)."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8
# Streets are not straight lines: a typical detour factor for a Vietnamese city grid.
ROAD_FACTOR = 1.3
# Average speeds in city traffic, metres per second.
SPEED_MPS = {"bicycle": 3.5, "motorbike": 7.0, "car": 6.0, "van": 5.5}


def metres_per_degree(lat: float) -> tuple[float, float]:
    """Metres per degree of latitude and of longitude at `lat`: the flat approximation that
    offsets of a few kilometres need (the simulated city, the benchmark's couriers)."""
    return 111_320.0, 111_320.0 * math.cos(math.radians(lat))


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def road_distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> int:
    """Estimated distance along streets."""
    return round(haversine_m(lat1, lng1, lat2, lng2) * ROAD_FACTOR)


def travel_seconds(distance_m: float, vehicle: str = "motorbike") -> float:
    return distance_m / SPEED_MPS.get(vehicle, SPEED_MPS["motorbike"])


def travel_minutes(distance_m: float, vehicle: str = "motorbike") -> int:
    """Whole minutes, at least 1 while there is any way left to go."""
    return 0 if distance_m <= 0 else max(1, math.ceil(travel_seconds(distance_m, vehicle) / 60))
