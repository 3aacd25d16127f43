"""The bodies of the merchant API (field names fixed by the contract) and the order as the
merchant sees it.

Requests are validated models: an unknown field, a string where a number belongs or text
PostgreSQL cannot hold is a 422 naming the field. Responses are documented by models but built
as plain dicts (order_view) and written by orjson: the hot routes skip a model per answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from services.orders.domain import Cancellation
from shared.contract import Latitude, Longitude, OrderStatus
from shared.inputs import Address, Note, PersonName, safe_text
from shared.phones import Phone

# --- request bodies ---------------------------------------------------------------


# Every text refuses NUL, control characters, lone surrogates and bidi controls (shared.inputs
# says why): a 422 naming the field, never a 500.
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(safe_text)]
# strict: "20.95" (a string) is not a coordinate, and 1.5 is not an amount of money.
StrictLatitude = Annotated[Latitude, Field(strict=True, examples=[20.9511])]
StrictLongitude = Annotated[Longitude, Field(strict=True, examples=[107.0735])]

PICKUP_EXAMPLE: dict[str, Any] = {
    "name": "Shop Hoa Mai",
    "phone": "0912 345 678",
    "address": "12 Lê Thánh Tông, Hồng Gai, Hạ Long, Quảng Ninh",
    "lat": 20.9511,
    "lng": 107.0735,
}
DROPOFF_EXAMPLE: dict[str, Any] = {
    "name": "Nguyễn Văn An",
    "phone": "0987 654 321",
    "address": "45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh",
    "lat": 20.9586,
    "lng": 107.0452,
}
PARCEL_EXAMPLE: dict[str, Any] = {"weight_grams": 1200, "description": "Áo dài lụa, hộp giấy", "value_vnd": 850000}


class Input(BaseModel):
    # An unknown field is a mistake the client should hear about, not silently lose.
    model_config = ConfigDict(extra="forbid")


class PlaceIn(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [DROPOFF_EXAMPLE]})

    name: PersonName = Field(examples=["Nguyễn Văn An"])
    phone: Phone = Field(description="Parsed with region VN; answered in E.164")
    address: Address = Field(examples=["45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh"])
    lat: StrictLatitude
    lng: StrictLongitude


class QuotePlaceIn(Input):
    """A quote needs only the coordinates; the rest is accepted so one body fits both calls."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"lat": 20.9511, "lng": 107.0735}]})

    lat: StrictLatitude
    lng: StrictLongitude
    name: PersonName | None = None
    phone: Phone | None = None
    address: Address | None = None


class ParcelIn(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [PARCEL_EXAMPLE]})

    weight_grams: int = Field(strict=True, ge=1, le=50_000, examples=[1200])
    description: Note | None = Field(None, examples=["Áo dài lụa, hộp giấy"])
    value_vnd: int | None = Field(None, strict=True, ge=0, le=10_000_000_000, examples=[850000])


class QuoteIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pickup": {"lat": 20.9511, "lng": 107.0735},
                    "dropoff": {"lat": 20.9586, "lng": 107.0452},
                    "parcel": {"weight_grams": 1200},
                }
            ]
        }
    )

    pickup: QuotePlaceIn
    dropoff: QuotePlaceIn
    parcel: ParcelIn


class OrderIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "external_id": "HM-2024-000123",
                    "pickup": PICKUP_EXAMPLE,
                    "dropoff": DROPOFF_EXAMPLE,
                    "parcel": PARCEL_EXAMPLE,
                    "cod_amount_vnd": 850000,
                    "note": "Gọi trước khi giao, giao giờ hành chính",
                }
            ]
        }
    )

    external_id: ExternalId | None = Field(
        None, description="The merchant's own reference; unique per merchant", examples=["HM-2024-000123"]
    )
    pickup: PlaceIn
    dropoff: PlaceIn
    parcel: ParcelIn
    cod_amount_vnd: int = Field(
        0,
        strict=True,
        ge=0,
        le=50_000_000,
        description="Cash the courier collects from the recipient",
        examples=[850000],
    )
    note: Note | None = Field(None, examples=["Gọi trước khi giao, giao giờ hành chính"])


class CancelIn(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "Khách đổi ý, không mua nữa"}]})

    reason: Note | None = None


class MerchantIn(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Shop Hoa Mai", "phone": "0912 345 678"}]})

    name: PersonName
    phone: Phone


# --- responses (documented; bodies are built as plain dicts, see order_view) ----------


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlaceOut(Output):
    name: str
    phone: str = Field(description="E.164", examples=["+84987654321"])
    address: str
    lat: float
    lng: float


class ParcelOut(Output):
    weight_grams: int
    description: str | None
    value_vnd: int | None


class CourierOut(Output):
    id: UUID
    name: str = Field(examples=["Trần Minh Đức"])
    phone: str = Field(examples=["+84903123456"])


class HistoryEntry(Output):
    status: OrderStatus
    at: datetime


class OrderOut(Output):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b6f3c1e-5d7a-4f55-9c43-2f4a8e1d9b10",
                    "external_id": "HM-2024-000123",
                    "tracking_code": "K7M2QX9HT4PA",
                    "delivery_code": "482915",
                    "status": "assigned",
                    "fee_vnd": 36000,
                    "distance_m": 3900,
                    "cod_amount_vnd": 850000,
                    "pickup": {**PICKUP_EXAMPLE, "phone": "+84912345678"},
                    "dropoff": {**DROPOFF_EXAMPLE, "phone": "+84987654321"},
                    "parcel": PARCEL_EXAMPLE,
                    "note": "Gọi trước khi giao, giao giờ hành chính",
                    "courier": {
                        "id": "5f0e8a52-8d0b-4c1e-a7a6-1c2b3d4e5f60",
                        "name": "Trần Minh Đức",
                        "phone": "+84903123456",
                    },
                    "history": [
                        {"status": "placed", "at": "2024-05-06T09:15:02.120000+07:00"},
                        {"status": "assigned", "at": "2024-05-06T09:16:40.500000+07:00"},
                    ],
                    "cancellation": None,
                    "created_at": "2024-05-06T09:15:02.120000+07:00",
                    "updated_at": "2024-05-06T09:16:40.612000+07:00",
                }
            ]
        }
    )

    id: UUID
    external_id: str | None
    tracking_code: str = Field(description="For the recipient's tracking page; 12 characters, not guessable")
    delivery_code: str = Field(description="6 digits the recipient tells the courier; shown to the merchant only")
    status: OrderStatus
    fee_vnd: int
    distance_m: int
    cod_amount_vnd: int
    pickup: PlaceOut
    dropoff: PlaceOut
    parcel: ParcelOut
    note: str | None
    courier: CourierOut | None
    history: list[HistoryEntry] = Field(description="Each status reached, oldest first")
    cancellation: Cancellation | None
    created_at: datetime
    updated_at: datetime


class OrderPage(Output):
    items: list[OrderOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


class QuoteOut(Output):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"fee_vnd": 36000, "distance_m": 3900, "eta_minutes": 10}]}
    )

    fee_vnd: int
    distance_m: int
    eta_minutes: int


class MerchantCreated(Output):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3c9a1f7e-2b4d-4e8f-9a1b-7c6d5e4f3a21",
                    "name": "Shop Hoa Mai",
                    "phone": "+84912345678",
                    "api_key": "gk_Yk3v9Q0lqk3Jx0m1u6wqQy7z0b3n5f8h2k4p6r8t0v2",
                }
            ]
        }
    )

    id: UUID
    name: str
    phone: str
    api_key: str = Field(description="Shown this once; only its hash is kept")


def order_view(row: Any) -> dict[str, Any]:
    """The order as the merchant sees it (OrderOut), from a row or a new order's dict, ready
    for orjson (and for the idempotency store, which replays it as it was)."""
    return {
        "id": str(row["id"]),
        "external_id": row["external_id"],
        "tracking_code": row["tracking_code"],
        "delivery_code": row["delivery_code"],
        "status": row["status"],
        "fee_vnd": row["fee_vnd"],
        "distance_m": row["distance_m"],
        "cod_amount_vnd": row["cod_amount_vnd"],
        "pickup": row["pickup"],
        "dropoff": row["dropoff"],
        "parcel": row["parcel"],
        "note": row["note"],
        "courier": row["courier"],
        "history": list(row["history"]),
        "cancellation": row["cancellation"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


# --- the statement (cash on delivery, reconciled) -------------------------------------------


class StatementDay(Output):
    date: str = Field(description="A calendar day in Vietnam (UTC+7), YYYY-MM-DD", examples=["2024-05-06"])
    delivered: int = Field(description="Orders delivered that day")
    cod_collected_vnd: int = Field(description="Cash collected from their recipients")
    fees_vnd: int = Field(description="Their delivery fees")
    net_vnd: int = Field(description="cod_collected_vnd - fees_vnd: what Giao owes the shop (negative: the shop owes)")


class StatementOut(Output):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "from": "2024-05-01",
                    "to": "2024-05-31",
                    "delivered": 3,
                    "cod_collected_vnd": 1250000,
                    "fees_vnd": 96000,
                    "net_vnd": 1154000,
                    "days": [
                        {
                            "date": "2024-05-06",
                            "delivered": 2,
                            "cod_collected_vnd": 850000,
                            "fees_vnd": 66000,
                            "net_vnd": 784000,
                        },
                        {
                            "date": "2024-05-09",
                            "delivered": 1,
                            "cod_collected_vnd": 400000,
                            "fees_vnd": 30000,
                            "net_vnd": 370000,
                        },
                    ],
                }
            ]
        }
    )

    from_: str = Field(alias="from", description="The first day, as asked")
    to: str = Field(description="The last day, as asked (included)")
    delivered: int
    cod_collected_vnd: int
    fees_vnd: int
    net_vnd: int = Field(description="What Giao owes the shop for these days (negative: what the shop owes Giao)")
    days: list[StatementDay] = Field(description="Only the days with a delivery, in date order")


class StatementLine(Output):
    order_id: UUID
    external_id: str | None
    tracking_code: str
    delivered_at: datetime = Field(description="The time of the delivery (its history's `delivered` entry)")
    cod_collected_vnd: int
    fee_vnd: int


class StatementPage(Output):
    items: list[StatementLine] = Field(description="Oldest delivery first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


# --- API keys and the audit log ------------------------------------------------------


class ApiKeyOut(Output):
    id: UUID
    prefix: str | None = Field(
        description="The key's first characters (null for a merchant's first key made before keys were listed)"
    )
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="Shown this once; only its hash is kept")


# --- the merchant console ---------------------------------------------------------------


class ConsoleConfigOut(Output):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tracking_url": "https://theodoi.giao.example",
                    "service_area_bounds": [[20.72, 106.42], [21.7, 108.12]],
                }
            ]
        }
    )

    tracking_url: str = Field(
        description="The tracking service's public base URL (no trailing slash): "
        "a recipient's link is `<tracking_url>/t/{tracking_code}`"
    )
    service_area_bounds: list[list[float]] = Field(
        description="[[south, west], [north, east]] of the service area: the order form's map stays within"
    )
