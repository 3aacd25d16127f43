"""The bodies dispatch's HTTP API takes and gives (field names fixed by the contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from shared.contract import FailReason, Latitude, Longitude, Vehicle
from shared.phones import Phone

from .domain import JOB_STATUSES, OfferState

# Strict: `false` is not a coordinate and `0` is not a time, whatever lax parsing would make of them.
Lat = Annotated[Latitude, Field(strict=True, examples=[20.9516])]
Lng = Annotated[Longitude, Field(strict=True, examples=[107.0801])]


def _a_string(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_a_string)]


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


class CourierCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Trần Văn Minh", "phone": "0912 345 678", "vehicle": "motorbike"}]},
    )

    name: str = Field(min_length=1, max_length=100, description="Full name (family name first)")
    phone: Phone
    vehicle: Vehicle


class CourierToken(BaseModel):
    id: UUID
    token: str = Field(description="The courier's new bearer token; shown once, stored only hashed")
    signin_link: str = Field(description="Opens the courier app signed in with the new token")


class CourierCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _COURIER_ID,
                    "name": "Trần Văn Minh",
                    "token": "ct_Yb2k...shown-once",
                    "signin_link": "https://giao.example/app/#t=ct_Yb2k...shown-once",
                    "vehicle": "motorbike",
                    "capacity": 3,
                }
            ]
        }
    )

    id: UUID
    name: str
    token: str = Field(description="The courier's bearer token; shown once, stored only hashed")
    signin_link: str = Field(
        description="Opens the courier app signed in: the token travels in the "
        "fragment, which browsers never send to a server"
    )
    vehicle: Vehicle
    capacity: int = Field(description="Offers plus jobs the courier may hold at once")


class CourierStatusUpdate(Body):
    """Going online needs a position (both lat and lng); going offline may give one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"online": True, "lat": 20.9516, "lng": 107.0801}, {"online": False}]},
    )

    online: bool = Field(strict=True)
    lat: Lat | None = Field(None, description="Required when going online")
    lng: Lng | None = Field(None, description="Required when going online")

    @model_validator(mode="after")
    def _position_when_online(self) -> CourierStatusUpdate:
        if (self.lat is None) != (self.lng is None):
            raise ValueError("give both lat and lng, or neither")
        if self.online and self.lat is None:
            raise ValueError("lat and lng are required to go online")
        return self


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


class LocationPoint(Body):
    lat: Lat
    lng: Lng
    at: Timestamp = Field(
        description="When the phone took the position (RFC 3339 with offset)", examples=["2025-03-14T09:30:00+07:00"]
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


# --- admin ----------------------------------------------------------------------------------------


class OfferReason(BaseModel):
    distance_m: int = Field(description="Estimated road distance from the courier to the pickup")
    travel_estimate_s: int = Field(description="Estimated travel time to the pickup with their vehicle")
    courier_load: int = Field(description="Offers plus jobs the courier held before this offer")
    courier_capacity: int
    candidates_weighed: int = Field(description="Available couriers compared for this offer")
    search_rings: int = Field(description="H3 rings around the pickup that were searched ...")
    search_resolution: int = Field(description="... with cells of this H3 resolution")
    summary: str


class OfferView(BaseModel):
    courier_id: UUID
    state: OfferState
    offered_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    why: OfferReason


class AdminJob(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": _ORDER_ID,
                    "tracking_code": "GX7K2M9QPL4T",
                    "status": "assigned",
                    "courier_id": _COURIER_ID,
                    "pickup": _PICKUP,
                    "dropoff": _DROPOFF,
                    "parcel": {"weight_grams": 1200},
                    "note": None,
                    "cod_amount_vnd": 850000,
                    "fee_vnd": 25000,
                    "offer_expires_at": None,
                    "placed_at": "2025-03-14T09:29:58+07:00",
                    "dispatch_deadline": "2025-03-14T09:59:58+07:00",
                    "cod_collected_vnd": None,
                    "fail_reason": None,
                    "cancel_reason": None,
                    "updated_at": "2025-03-14T09:30:04+07:00",
                    "offers": [
                        {
                            "courier_id": _COURIER_ID,
                            "state": "accepted",
                            "offered_at": "2025-03-14T09:30:00+07:00",
                            "expires_at": "2025-03-14T09:30:30+07:00",
                            "answered_at": "2025-03-14T09:30:04+07:00",
                            "why": {
                                "distance_m": 640,
                                "travel_estimate_s": 91,
                                "courier_load": 0,
                                "courier_capacity": 3,
                                "candidates_weighed": 7,
                                "search_rings": 2,
                                "search_resolution": 9,
                                "summary": "Quickest to the pickup of 7 available couriers: ~640 m, ~2 min; "
                                "held 0 of 3 before this offer",
                            },
                        }
                    ],
                }
            ]
        }
    )

    order_id: UUID
    tracking_code: str
    status: JobStatus
    courier_id: UUID | None
    pickup: PlaceView
    dropoff: PlaceView
    parcel: ParcelView
    note: str | None
    cod_amount_vnd: int
    fee_vnd: int
    offer_expires_at: datetime | None
    placed_at: datetime
    dispatch_deadline: datetime
    cod_collected_vnd: int | None
    fail_reason: FailReason | None
    cancel_reason: str | None
    updated_at: datetime
    offers: list[OfferView]


# --- the ops console's views (admin_api.py) ------------------------------------------------


class CourierOnMap(BaseModel):
    id: UUID
    display_name: str = Field(description="Given name and the family name's initial")
    vehicle: Vehicle
    lat: float
    lng: float
    load: int = Field(description="Offers plus jobs the courier holds")
    capacity: int
    online: bool
    busy: bool = Field(description="True when load has reached capacity: no more offers for now")


class CourierPage(BaseModel):
    items: list[CourierOnMap]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class JobOnMap(BaseModel):
    order_id: UUID
    status: Literal["waiting", "offered", "assigned", "picked_up"]
    pickup_lat: float
    pickup_lng: float
    placed_at: datetime
    age_s: int = Field(description="Seconds since the order was placed")
    courier_id: UUID | None = Field(description="Who holds the offer or the job")
    offer_expires_at: datetime | None


class JobPage(BaseModel):
    items: list[JobOnMap]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class CourierJobs(BaseModel):
    courier_id: UUID
    items: list[JobOnMap]


class Overview(BaseModel):
    waiting: int = Field(description="Orders waiting for a courier (nobody holds an offer)")
    offers_out: int = Field(description="Offers waiting for a courier's answer")
    oldest_waiting_s: int | None = Field(description="Age of the oldest waiting order; null when none waits")
    in_progress: int = Field(description="Deliveries under way (assigned or picked up)")
    expired_today: int = Field(description="Orders expired since midnight in Vietnam (UTC+7)")
    couriers_online: int
    outbox_backlog: int = Field(description="Events written but not yet published (counted up to 100000)")
    dead_letters: int | None = Field(
        description="Events this process's consumers sent to the dead-letter topic since it started; "
        "null when this process runs no consumer"
    )
    at: datetime
