"""The bodies the admin's routes and the ops console's views take and give (admin_api.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.contract import FailReason, Vehicle
from shared.inputs import safe_stripped
from shared.phones import Phone

from .domain import MAX_HANDIN_VND, OfferState
from .schemas import _COURIER_ID, _DROPOFF, _ORDER_ID, _PICKUP, Body, CourierFlag, JobStatus, ParcelView, PlaceView

# --- couriers ----------------------------------------------------------------------------

# No NUL, control characters, lone surrogates or bidi controls (shared.inputs says why).
CourierName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"\S"), AfterValidator(safe_stripped)
]


class CourierCreate(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Trần Văn Minh", "phone": "0912 345 678", "vehicle": "motorbike"}]},
    )

    name: CourierName = Field(description="Full name (family name first)")
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
                    "delivery_code": {"wrong_codes": 0, "lockouts": 0, "locked_until": None, "held": False},
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
    delivery_code: CodeLock


class CodeLock(BaseModel):
    wrong_codes: int = Field(description="Wrong delivery codes given on this job (since the admin last cleared it)")
    lockouts: int
    locked_until: datetime | None = Field(description="Locked for a while (past: no longer locked)")
    held: bool = Field(
        description="Locked until the admin clears it (`POST /v1/admin/jobs/{order_id}/code-lock/clear`): "
        "the job's wrong codes reached the cap"
    )


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
    flag: CourierFlag | None = Field(description="Set, no new offers until the admin clears it")


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


# --- cash on delivery (admin_cash_api.py) ---------------------------------------------------


class CashHandinCreate(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount_vnd": 1_250_000}]})

    amount_vnd: int = Field(
        strict=True,
        gt=0,
        le=MAX_HANDIN_VND,
        description="The cash handed in: the courier's oldest deliveries whose cash adds up to exactly it are settled",
    )


class HeldDelivery(BaseModel):
    order_id: UUID
    tracking_code: str
    delivered_at: datetime
    cod_collected_vnd: int


class CashHandinView(BaseModel):
    id: int
    amount_vnd: int
    deliveries: int = Field(description="How many deliveries' cash it settled")
    received_at: datetime


class CourierCash(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "courier_id": _COURIER_ID,
                    "held_vnd": 850000,
                    "held_deliveries": 1,
                    "deliveries": [
                        {
                            "order_id": _ORDER_ID,
                            "tracking_code": "GX7K2M9QPL4T",
                            "delivered_at": "2025-03-14T09:52:10+07:00",
                            "cod_collected_vnd": 850000,
                        }
                    ],
                    "more": False,
                    "handins": [
                        {"id": 41, "amount_vnd": 1250000, "deliveries": 3, "received_at": "2025-03-13T18:05:00+07:00"}
                    ],
                }
            ]
        }
    )

    courier_id: UUID
    held_vnd: int = Field(description="Cash collected on delivery and not yet handed in")
    held_deliveries: int = Field(description="Of how many deliveries")
    deliveries: list[HeldDelivery] = Field(description="Those deliveries, the oldest first (at most 500)")
    more: bool = Field(description="True when more deliveries hold cash than are listed")
    handins: list[CashHandinView] = Field(description="The latest 20 hand-ins, newest first")


class CashHandinCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "courier_id": _COURIER_ID,
                    "amount_vnd": 850000,
                    "deliveries": 1,
                    "received_at": "2025-03-14T18:02:41+07:00",
                    "held_vnd": 0,
                }
            ]
        }
    )

    id: int
    courier_id: UUID
    amount_vnd: int
    deliveries: int = Field(description="How many of the oldest deliveries' cash it settled")
    received_at: datetime
    held_vnd: int = Field(description="What the courier still holds after it")


class CourierHoldingCash(BaseModel):
    courier_id: UUID
    display_name: str
    held_vnd: int
    deliveries: int
    oldest_delivered_at: datetime = Field(description="When the oldest delivery whose cash they hold was delivered")


class CashPage(BaseModel):
    items: list[CourierHoldingCash] = Field(description="The couriers holding cash, the one holding it longest first")
    total_held_vnd: int = Field(description="The cash all couriers hold")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
