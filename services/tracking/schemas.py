"""What tracking's answers look like, for the OpenAPI document.

The routes answer with domain.public_view's dict serialized once (orjson), not through
these models: they describe that dict, and the tests hold the two together.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field

from shared.contract import OrderStatus, Vehicle


class TimelineStep(BaseModel):
    status: OrderStatus
    at: str = Field(description="When it happened (RFC 3339)", examples=["2026-11-23T09:15:02+07:00"])
    text: str = Field(description="What happened, in Vietnamese", examples=["Shipper đã lấy hàng"])


class CourierLocationView(BaseModel):
    lat: float = Field(examples=[20.9532])
    lng: float = Field(examples=[107.0611])
    at: str = Field(description="When the courier was there (RFC 3339)", examples=["2026-11-23T09:21:40+07:00"])


class CourierView(BaseModel):
    display_name: str = Field(description="First name and initial only", examples=["Minh N."])
    vehicle: Vehicle
    location: CourierLocationView | None = Field(
        description="Where the courier is, only while the parcel is on its way (picked_up)"
    )


EXAMPLE: dict[str, Any] = {
    "tracking_code": "7KQ2M9XH4TBR",
    "status": "picked_up",
    "timeline": [
        {"status": "placed", "at": "2026-11-23T09:02:11+07:00", "text": "Đơn hàng đã được tạo"},
        {"status": "assigned", "at": "2026-11-23T09:04:37+07:00", "text": "Đã có shipper nhận đơn"},
        {"status": "picked_up", "at": "2026-11-23T09:15:02+07:00", "text": "Shipper đã lấy hàng"},
    ],
    "courier": {
        "display_name": "Minh N.",
        "vehicle": "motorbike",
        "location": {"lat": 20.9532, "lng": 107.0611, "at": "2026-11-23T09:21:40+07:00"},
    },
    "eta_minutes": 6,
}


class TrackingView(BaseModel):
    """A parcel as anyone with its tracking code may see it: no phone, name, address or code."""

    model_config = {"json_schema_extra": {"examples": [EXAMPLE]}}

    tracking_code: str
    status: OrderStatus
    timeline: list[TimelineStep] = Field(description="Each status reached, once, oldest first")
    courier: CourierView | None = Field(description="Null before a courier accepted, and after cancelled or expired")
    eta_minutes: int | None = Field(
        description="Minutes left for the remaining distance; null once the delivery failed or ended"
    )


# The stream as a client reads it: the example document, a heartbeat, a final state, the end.
SSE_EXAMPLE = (
    "event: tracking\ndata: " + orjson.dumps(EXAMPLE).decode() + "\n\n: ping\n\n"
    'event: tracking\ndata: {..."status":"delivered"...}\n\nevent: end\ndata: {}\n\n'
)
