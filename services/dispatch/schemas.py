"""The bodies the courier's HTTP routes take and give (field names fixed by the contract); the
admin's are admin_schemas.py's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from shared.contract import FailReason, Latitude, Longitude, Vehicle
from shared.inputs import Instant

from .domain import JOB_STATUSES, FlagReason

# Strict: `false` is not a coordinate and `0` is not a time, whatever lax parsing would make of them.
Lat = Annotated[Latitude, Field(strict=True, examples=[20.9516])]
Lng = Annotated[Longitude, Field(strict=True, examples=[107.0801])]


def _a_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a whole number")
    return value


_COURIER_ID = "0b9e7c1e-4a53-4d3c-9a43-5f1b2c3d4e5f"
_ORDER_ID = "6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f"
_PICKUP: JsonDict = {
    "name": "Shop Hoa Mai",
    "phone": "+84912345678",
    "address": "12 Lê Thánh Tông, Hồng Gai, Hạ Long, Quảng Ninh",
    "lat": 20.9516,
    "lng": 107.0801,
}
_DROPOFF: JsonDict = {
    "name": "Nguyễn Văn An",
    "phone": "+84987654321",
    "address": "45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh",
    "lat": 20.9555,
    "lng": 107.0452,
}
_DROPOFF_AREA: JsonDict = {"area": "Bãi Cháy, Hạ Long, Quảng Ninh", "lat": 20.96, "lng": 107.05}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- couriers ----------------------------------------------------------------------------


class CourierStatusUpdate(Body):
    """Going online needs a position (both lat and lng); going offline may give one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"online": True, "lat": 20.9516, "lng": 107.0801}, {"online": False}]},
    )

    online: bool = Field(strict=True)
    lat: Lat | None = Field(None, description="Required when going online")
    lng: Lng | None = Field(None, description="Required when going online")
    at: Instant | None = Field(
        None,
        description="When the phone took the position, by the phone's clock (RFC 3339 with offset). "
        "Give it: points reported later are kept only if newer than it by the same clock; without "
        "it, the next point is kept whatever its time.",
        examples=["2025-03-14T09:30:00+07:00"],
    )

    @model_validator(mode="after")
    def _position_when_online(self) -> CourierStatusUpdate:
        if (self.lat is None) != (self.lng is None):
            raise ValueError("give both lat and lng, or neither")
        if self.online and self.lat is None:
            raise ValueError("lat and lng are required to go online")
        return self


class CourierFlag(BaseModel):
    reason: FlagReason = Field(
        description="`impossible_speed`: positions no vehicle reaches, several in a row; "
        "`code_guessing`: too many wrong delivery codes across jobs (deliveries are refused too)"
    )
    at: datetime


class CourierStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _COURIER_ID,
                    "name": "Trần Văn Minh",
                    "display_name": "Minh T.",
                    "vehicle": "motorbike",
                    "online": True,
                    "lat": 20.9516,
                    "lng": 107.0801,
                    "capacity": 3,
                    "load": 1,
                }
            ]
        }
    )

    id: UUID
    name: str
    display_name: str
    vehicle: Vehicle
    online: bool
    lat: float | None
    lng: float | None
    capacity: int
    load: int = Field(description="Offers plus jobs held now")
    flag: CourierFlag | None = Field(
        None, description="Set, the courier gets no new offers until the admin clears it; null otherwise"
    )


class LocationPoint(Body):
    lat: Lat
    lng: Lng
    at: Instant = Field(
        description="When the phone took the position (RFC 3339 with offset, from 2000 to 2099)",
        examples=["2025-03-14T09:30:00+07:00"],
    )


class LocationBatch(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "points": [
                        {"lat": 20.9516, "lng": 107.0801, "at": "2025-03-14T09:30:00+07:00"},
                        {"lat": 20.9521, "lng": 107.0788, "at": "2025-03-14T09:30:05+07:00"},
                    ]
                }
            ]
        },
    )

    points: list[LocationPoint] = Field(min_length=1, max_length=100)


class LocationsAccepted(BaseModel):
    accepted: int = Field(description="Points received (only the newest one is kept)")
    published: bool = Field(description="Whether a courier.location event went out for this batch")
    position_updated: bool = Field(description="Whether the batch's newest point is the courier's position now")
    ignored_reason: Literal["older", "impossible_speed"] | None = Field(
        description="Why the newest point was not used: `older`, the courier's position was taken at "
        "the same time or later by the phone's clock; `impossible_speed`, it is further from the "
        "last position than the courier's vehicle can go in the time between them. Null when used."
    )


class CashHeld(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"held_vnd": 850000, "deliveries": 3}]})

    held_vnd: int = Field(description="Cash collected on delivery and not yet handed in at the hub")
    deliveries: int = Field(description="Of how many deliveries")


# --- jobs --------------------------------------------------------------------------------------


class PlaceView(BaseModel):
    name: str
    phone: str = Field(description="E.164")
    address: str
    lat: float
    lng: float


class ParcelView(BaseModel):
    weight_grams: int
    description: str | None = None
    value_vnd: int | None = None


JobStatus = Literal[JOB_STATUSES]  # type: ignore[valid-type]  # domain.JOB_STATUSES, spelled once


class DropoffArea(BaseModel):
    area: str = Field(
        description='The drop-off address without its street and number ("" when the address has a single part)'
    )
    lat: float = Field(description="The drop-off point rounded to 2 decimals (about 1 km)")
    lng: float


class Job(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": _ORDER_ID,
                    "status": "offered",
                    "pickup": _PICKUP,
                    "dropoff": None,
                    "dropoff_area": _DROPOFF_AREA,
                    "distance_m": 4200,
                    "fee_vnd": 25000,
                    "parcel": {"weight_grams": 1200, "description": "Áo dài lụa", "value_vnd": 850000},
                    "note": None,
                    "cod_amount_vnd": 850000,
                    "offer_expires_at": "2025-03-14T09:30:30+07:00",
                    "updated_at": "2025-03-14T09:30:00+07:00",
                },
                {
                    "order_id": _ORDER_ID,
                    "status": "assigned",
                    "pickup": _PICKUP,
                    "dropoff": _DROPOFF,
                    "dropoff_area": _DROPOFF_AREA,
                    "distance_m": 4200,
                    "fee_vnd": 25000,
                    "parcel": {"weight_grams": 1200, "description": "Áo dài lụa", "value_vnd": 850000},
                    "note": "Gọi trước khi giao",
                    "cod_amount_vnd": 850000,
                    "offer_expires_at": None,
                    "updated_at": "2025-03-14T09:30:04+07:00",
                },
            ]
        }
    )

    order_id: UUID
    status: JobStatus = Field(description="`offered` while it is an offer waiting for an answer")
    pickup: PlaceView
    dropoff: PlaceView | None = Field(
        description="The recipient (name, phone, address, exact point): "
        "null while the job is `offered`, shown once accepted"
    )
    dropoff_area: DropoffArea = Field(description="Roughly where the parcel goes, shown in every status")
    distance_m: int = Field(description="Estimated road distance from the pickup to the drop-off")
    fee_vnd: int = Field(description="The delivery fee")
    parcel: ParcelView
    note: str | None = Field(description="The merchant's note: null while the job is `offered`")
    cod_amount_vnd: int = Field(description="Cash to collect from the recipient")
    offer_expires_at: datetime | None = Field(description="While an offer: when it lapses")
    updated_at: datetime


class JobList(BaseModel):
    items: list[Job]


# GET /v1/courier/jobs/events, as the OpenAPI document shows it: each event (its data a JobList
# in JSON), and a stream of the list, a ping, a new offer.
JOBS_SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"const": "jobs"},
        "data": {"type": "string", "contentMediaType": "application/json", "description": "A JobList"},
    },
    "required": ["event", "data"],
}
_OFFER_EXAMPLE = Job.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
JOBS_SSE_EXAMPLE = (
    'event: jobs\ndata: {"items":[]}\n\n: ping\n\n'
    "event: jobs\ndata: " + orjson.dumps({"items": [_OFFER_EXAMPLE]}).decode() + "\n\n"
)


class Declined(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"order_id": _ORDER_ID, "declined": True}]})

    order_id: UUID
    declined: bool = True


class DeliverRequest(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"delivery_code": "482913", "cod_collected_vnd": 850000}]}
    )

    delivery_code: str = Field(pattern=r"^[0-9]{6}$", description="The 6 digits the recipient gives")
    cod_collected_vnd: Annotated[int, BeforeValidator(_a_number)] = Field(
        ge=0, le=1_000_000_000, description="Must equal the job's cod_amount_vnd"
    )


class FailRequest(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "recipient_unreachable"}]})

    reason: FailReason
