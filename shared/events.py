"""The event envelope of the contract and the typed events Giao's services exchange.

Every event is `{id, type, occurred_at, source, subject, sequence, data}` (+ `version`);
`sequence` rises by one per subject within its topic. Models are frozen and forbid
unknown fields, so a producer's typo fails at the producer, and a consumer dead-letters
what it does not understand. `python -m shared.catalog` writes the JSON Schemas and the
AsyncAPI catalog from these classes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self, TypeAlias, get_args
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic_core import PydanticCustomError

from shared.contract import FailReason, Latitude, Longitude, Vehicle

ORDERS_TOPIC = "giao.orders.v1"
DISPATCH_TOPIC = "giao.dispatch.v1"
COURIER_LOCATIONS_TOPIC = "giao.courier-locations.v1"
# What tracking may know of a new order, without the personal data of giao.orders.v1 (names,
# phones, addresses, notes): tracking is allowed this topic and refused that one (Kafka ACLs,
# shared.kafka_acls).
ORDER_TRACKING_TOPIC = "giao.order-tracking.v1"
TOPICS = (ORDERS_TOPIC, DISPATCH_TOPIC, COURIER_LOCATIONS_TOPIC, ORDER_TRACKING_TOPIC)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Every number and time of an event fits the column it is stored in: a value PostgreSQL (or
# the driver) refuses would otherwise fail the consumer's handler again on every attempt.
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
Int4 = Annotated[int, Field(ge=0, le=INT4_MAX)]
Int8 = Annotated[int, Field(ge=0, le=INT8_MAX)]
FIRST_YEAR, LAST_YEAR = 2000, 9999


def _within_years(value: datetime) -> datetime:
    """Years FIRST_YEAR..LAST_YEAR in UTC (`0001-01-01T00:00:00+14:00` is year 0 in UTC)."""
    try:
        year = value.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"the time must fall in the years {FIRST_YEAR}..{LAST_YEAR} (UTC)")
    return value


Instant = Annotated[
    AwareDatetime,
    AfterValidator(_within_years),
    Field(description=f"With its UTC offset; the years {FIRST_YEAR}..{LAST_YEAR} in UTC"),
]


# An event's data as producers pass it: the model, or a dict the event validates into it.
EventData: TypeAlias = Model | dict[str, Any]


# --- pieces -----------------------------------------------------------------------


class Place(Model):
    name: str
    phone: str = Field(description="E.164")
    address: str
    lat: Latitude
    lng: Longitude


class Parcel(Model):
    weight_grams: int = Field(ge=1, le=50_000)
    description: str | None = None
    value_vnd: Int8 | None = None


class CourierInfo(Model):
    id: UUID
    name: str = Field(description="Full name: for the merchant, never shown by tracking")
    phone: str = Field(description="E.164: for the merchant, never shown by tracking")
    display_name: str = Field(description='Public short name, such as "Minh N."')
    vehicle: Vehicle


class DeliveryCodeHash(Model):
    """The delivery code as it travels: a keyed, salted hash (shared.secrets)."""

    salt: str
    hash: str


# The data of every event about one order (all but courier.location) starts with its id.
class OrderData(Model):
    order_id: UUID


# --- giao.orders.v1 (source: orders, subject: order id) ---------------------------


class OrderPlacedData(OrderData):
    merchant_id: UUID
    tracking_code: str
    pickup: Place
    dropoff: Place
    parcel: Parcel
    cod_amount_vnd: Int8
    fee_vnd: Int8
    distance_m: Int4
    delivery_code: DeliveryCodeHash
    note: str | None = None


class OrderCancelRequestedData(OrderData):
    reason: str | None = None


class OrderCodeUnlockRequestedData(OrderData):
    merchant_id: UUID


# --- giao.order-tracking.v1 (source: orders, subject: order id) -------------------


class Point(Model):
    lat: Latitude
    lng: Longitude


class OrderTrackableData(OrderData):
    """What the tracking read model needs of a new order, and nothing personal."""

    tracking_code: str
    dropoff: Point = Field(description="The dropoff point (for the ETA; never shown)")
    distance_m: Int4 = Field(description="Pickup to dropoff along streets (for the ETA before pickup)")


# --- giao.dispatch.v1 (source: dispatch, subject: order id) -----------------------


class DeliveryOfferedData(OrderData):
    courier_id: UUID
    expires_at: Instant


class DeliveryAssignedData(OrderData):
    courier: CourierInfo


class DeliveryStepData(OrderData):
    """picked_up, returned, expired, cancel_confirmed: nothing beyond the order."""


class DeliveryDeliveredData(OrderData):
    cod_collected_vnd: Int8


class DeliveryFailedData(OrderData):
    reason: FailReason


class CancelRefusedData(OrderData):
    reason: str


# --- giao.courier-locations.v1 (source: dispatch, subject: courier id) ------------


class CourierLocationData(Model):
    courier_id: UUID
    order_ids: list[UUID] = Field(description="Orders this courier carries now")
    lat: Latitude
    lng: Longitude
    at: Instant


# --- the envelope ------------------------------------------------------------------


class Envelope(Model):
    """What every event has; each event type narrows `type` and `data` and names its topic."""

    topic: ClassVar[str]
    # The first event of every subject of its topic, written once, as the subject comes to be:
    # sequence 1 without a row in the writer's event_sequences (shared.outbox).
    opens_subject: ClassVar[bool] = False
    id: UUID
    type: str
    version: Literal[1] = 1
    occurred_at: Instant
    source: Literal["orders", "dispatch"]
    subject: str = Field(
        min_length=1,
        max_length=64,
        description="What the event is about, as its data names it: the order id (courier.location: the courier id)",
    )
    sequence: int = Field(ge=1, le=INT8_MAX)
    data: Model

    @model_validator(mode="after")
    def _subject_is_what_the_data_is_about(self) -> Self:
        # Consumers order events by subject (shared.inbox) and apply them to the data's id: an
        # event filed under another subject would escape its order's ordering and dedup.
        data = self.data
        about = (
            data.order_id
            if isinstance(data, OrderData)
            else data.courier_id
            if isinstance(data, CourierLocationData)
            else None
        )
        if about is not None and self.subject != str(about):
            raise PydanticCustomError(  # its own kind, so that a log can name it (shared.errors)
                "subject_mismatch",
                "the subject {subject} is not the id in the data ({about})",
                {"subject": self.subject, "about": str(about)},
            )
        return self


class OrderPlaced(Envelope):
    """A merchant placed an order."""

    topic: ClassVar[str] = ORDERS_TOPIC
    opens_subject: ClassVar[bool] = True
    type: Literal["order.placed"]
    data: OrderPlacedData


class OrderCancelRequested(Envelope):
    """The merchant asked to cancel; dispatch answers with cancel_confirmed or cancel_refused."""

    topic: ClassVar[str] = ORDERS_TOPIC
    type: Literal["order.cancel_requested"]
    data: OrderCancelRequestedData


class OrderCodeUnlockRequested(Envelope):
    """The merchant asked to clear the delivery-code lock of their order's job (wrong codes
    locked it; the recipient confirmed the courier is with them): dispatch forgets the job's
    wrong codes and lockouts, as the admin's clear does. Nothing answers it."""

    topic: ClassVar[str] = ORDERS_TOPIC
    type: Literal["order.code_unlock_requested"]
    data: OrderCodeUnlockRequestedData


class OrderTrackable(Envelope):
    """A merchant placed an order, as the public tracking may know it: written with its
    order.placed (the same occurred_at), on a topic without personal data."""

    topic: ClassVar[str] = ORDER_TRACKING_TOPIC
    opens_subject: ClassVar[bool] = True
    type: Literal["order.trackable"]
    data: OrderTrackableData


class DeliveryOffered(Envelope):
    """The order was offered to a courier (the order's status stays placed)."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.offered"]
    data: DeliveryOfferedData


class DeliveryAssigned(Envelope):
    """A courier accepted the order."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.assigned"]
    data: DeliveryAssignedData


class DeliveryPickedUp(Envelope):
    """The courier has the parcel."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.picked_up"]
    data: DeliveryStepData


class DeliveryDelivered(Envelope):
    """Handed over with the right delivery code; COD collected."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.delivered"]
    data: DeliveryDeliveredData


class DeliveryFailed(Envelope):
    """The courier could not deliver."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.failed"]
    data: DeliveryFailedData


class DeliveryReturned(Envelope):
    """The parcel went back to the sender."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.returned"]
    data: DeliveryStepData


class DeliveryExpired(Envelope):
    """No courier accepted within the dispatch window."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.expired"]
    data: DeliveryStepData


class CancelConfirmed(Envelope):
    """Dispatch cancelled the job before pickup; the courier is free."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.cancel_confirmed"]
    data: DeliveryStepData


class CancelRefused(Envelope):
    """Dispatch refused the cancel: the parcel is already picked up."""

    topic: ClassVar[str] = DISPATCH_TOPIC
    type: Literal["delivery.cancel_refused"]
    data: CancelRefusedData


class CourierLocation(Envelope):
    """Where a courier carrying an active job is (at most one per courier per second)."""

    topic: ClassVar[str] = COURIER_LOCATIONS_TOPIC
    type: Literal["courier.location"]
    data: CourierLocationData


# Every event type of the contract; `type` tells them apart when parsing.
AnyEvent = Annotated[
    OrderPlaced
    | OrderCancelRequested
    | OrderCodeUnlockRequested
    | OrderTrackable
    | DeliveryOffered
    | DeliveryAssigned
    | DeliveryPickedUp
    | DeliveryDelivered
    | DeliveryFailed
    | DeliveryReturned
    | DeliveryExpired
    | CancelConfirmed
    | CancelRefused
    | CourierLocation,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[type[Envelope], ...] = get_args(get_args(AnyEvent)[0])
# Topics whose every subject begins with an event that opens it (Envelope.opens_subject).
OPENED_TOPICS = frozenset(cls.topic for cls in EVENT_TYPES if cls.opens_subject)
_any_event = TypeAdapter(AnyEvent)


def parse_event(raw: bytes | str) -> Envelope:
    """Parse and validate one event; raises pydantic.ValidationError on anything off-contract."""
    return _any_event.validate_json(raw)


def type_name(cls: type[Envelope]) -> str:
    """The `type` an event class carries: the one value of its Literal."""
    (name,) = get_args(cls.model_fields["type"].annotation)
    return str(name)


# The order status each dispatch event moves the order to (None: status unchanged).
STATUS_AFTER: dict[str, str | None] = {
    "order.placed": "placed",
    "order.cancel_requested": None,
    "order.code_unlock_requested": None,
    "order.trackable": "placed",
    "delivery.offered": None,
    "delivery.assigned": "assigned",
    "delivery.picked_up": "picked_up",
    "delivery.delivered": "delivered",
    "delivery.failed": "delivery_failed",
    "delivery.returned": "returned",
    "delivery.expired": "expired",
    "delivery.cancel_confirmed": "cancelled",
    "delivery.cancel_refused": None,
    "courier.location": None,
}


def new_event(
    cls: type[Envelope],
    *,
    subject: str,
    sequence: int,
    source: str,
    data: EventData,
    occurred_at: datetime | None = None,
    id: UUID | None = None,
) -> Envelope:
    """Build a validated event (the outbox normally does this with the sequence it assigns)."""
    from uuid import uuid4

    return cls(
        id=id or uuid4(),
        type=type_name(cls),
        occurred_at=occurred_at or datetime.now(UTC),
        source=source,
        subject=subject,
        sequence=sequence,
        data=data,
    )
