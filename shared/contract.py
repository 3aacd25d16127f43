"""The vocabulary of the contract, defined once: order statuses, vehicles, failure reasons,
coordinates. Event models (shared.events), HTTP schemas and domain rules of every service
use these, so OpenAPI and the event schemas say the same thing.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

OrderStatus = Literal[
    "placed", "assigned", "picked_up", "delivered", "delivery_failed", "returned", "cancelled", "expired"
]
ORDER_STATUSES: tuple[str, ...] = get_args(OrderStatus)
FINAL_STATUSES = frozenset({"delivered", "returned", "cancelled", "expired"})

Vehicle = Literal["bicycle", "motorbike", "car", "van"]
VEHICLES: tuple[str, ...] = get_args(Vehicle)

FailReason = Literal["recipient_unreachable", "address_not_found", "refused", "other"]
FAIL_REASONS: tuple[str, ...] = get_args(FailReason)

Latitude = Annotated[float, Field(ge=-90, le=90, description="WGS84 latitude")]
Longitude = Annotated[float, Field(ge=-180, le=180, description="WGS84 longitude")]
