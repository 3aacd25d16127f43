"""One order's events as orders and dispatch publish them to tracking, built from shared.events.

Each `Story` numbers its events per topic the way the producers' outboxes do (1, 2, ...
per order id), and its courier's location pings per courier id. Everything personal that
goes in (names, phones, addresses, the delivery code and its hash) is listed in
`secrets()` so that tests can look for it in what tracking shows.

Times have whole seconds, and coordinates few decimals, so that no digit string in an
answer can match a phone number or the delivery code by chance.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.events import (
    COURIER_LOCATIONS_TOPIC,
    DISPATCH_TOPIC,
    ORDER_TRACKING_TOPIC,
    ORDERS_TOPIC,
    CancelConfirmed,
    CancelRefused,
    CourierInfo,
    CourierLocation,
    DeliveryAssigned,
    DeliveryDelivered,
    DeliveryExpired,
    DeliveryFailed,
    DeliveryOffered,
    DeliveryPickedUp,
    DeliveryReturned,
    Envelope,
    OrderCancelRequested,
    OrderPlaced,
    OrderTrackable,
    new_event,
)
from shared.secrets import hash_delivery_code
from shared.settings import DEV_DELIVERY_CODE_KEY

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone(timedelta(hours=7)))
DELIVERY_CODE = "735291"
PICKUP = (20.9511, 107.0735)
DROPOFF = (20.9586, 107.0452)

Item = tuple[str, Envelope]


def new_code() -> str:
    """A code of the shape orders makes (12 characters), of letters only: no digits to confuse a scan."""
    return "".join(secrets.choice("ABCDEFGHJKMNPQRSTUVWXYZ") for _ in range(12))


class Story:
    def __init__(self, *, code: str | None = None, vehicle: str = "motorbike") -> None:
        self.order_id = uuid.uuid4()
        self.courier_id = uuid.uuid4()
        self.code = code or new_code()
        self.vehicle = vehicle
        self._sequences = {ORDERS_TOPIC: 0, ORDER_TRACKING_TOPIC: 0, DISPATCH_TOPIC: 0, COURIER_LOCATIONS_TOPIC: 0}
        self._minute = 0
        self.code_hash = hash_delivery_code(DELIVERY_CODE, DEV_DELIVERY_CODE_KEY)
        self.pickup = {
            "name": "Trần Thị Hoa Mai",
            "phone": "+84912345678",
            "address": "12 Lê Thánh Tông, Hồng Gai, Hạ Long, Quảng Ninh",
            "lat": PICKUP[0],
            "lng": PICKUP[1],
        }
        self.dropoff = {
            "name": "Nguyễn Văn An",
            "phone": "+84987654321",
            "address": "45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh",
            "lat": DROPOFF[0],
            "lng": DROPOFF[1],
        }
        self.courier = CourierInfo(
            id=self.courier_id, name="Phạm Văn Minh", phone="+84903123456", display_name="Minh P.", vehicle=vehicle
        )

    def secrets(self) -> dict[str, str]:
        """What must never show in tracking: label -> the text to look for."""
        return {
            "sender name": self.pickup["name"],
            "sender phone": self.pickup["phone"],
            "sender phone, national": self.pickup["phone"].replace("+84", "0"),
            "sender phone, digits": self.pickup["phone"][3:],
            "sender address": self.pickup["address"],
            "sender street": "Lê Thánh Tông",
            "recipient name": self.dropoff["name"],
            "recipient phone": self.dropoff["phone"],
            "recipient phone, digits": self.dropoff["phone"][3:],
            "recipient address": self.dropoff["address"],
            "recipient street": "Trần Hưng Đạo",
            "courier name": self.courier.name,
            "courier phone": self.courier.phone,
            "courier phone, digits": self.courier.phone[3:],
            "delivery code": DELIVERY_CODE,
            "delivery code hash": self.code_hash.hash,
            "delivery code salt": self.code_hash.salt,
            "order id": str(self.order_id),
            "courier id": str(self.courier_id),
            "parcel description": "Áo dài lụa",
            "note": "Gọi trước khi giao",
        }

    # --- events ------------------------------------------------------------------------

    def _event(
        self,
        cls: type[Envelope],
        topic: str,
        data: dict[str, Any],
        *,
        subject: str | None = None,
        source: str = "dispatch",
    ) -> Item:
        self._sequences[topic] += 1
        self._minute += 1
        return topic, new_event(
            cls,
            subject=subject or str(self.order_id),
            sequence=self._sequences[topic],
            source=source,
            occurred_at=T0 + timedelta(minutes=self._minute),
            data=data,
        )

    def placed(self) -> Item:
        """The order as tracking learns of it: order.trackable (order.placed, with the personal
        data, is on giao.orders.v1, which tracking does not read)."""
        return self._event(
            OrderTrackable,
            ORDER_TRACKING_TOPIC,
            {
                "order_id": self.order_id,
                "tracking_code": self.code,
                "dropoff": {"lat": self.dropoff["lat"], "lng": self.dropoff["lng"]},
                "distance_m": 3900,
            },
            source="orders",
        )

    def order_placed(self) -> Item:
        """order.placed as orders writes it on giao.orders.v1 (for dispatch; tracking does not read it)."""
        return self._event(
            OrderPlaced,
            ORDERS_TOPIC,
            {
                "order_id": self.order_id,
                "merchant_id": uuid.uuid4(),
                "tracking_code": self.code,
                "pickup": self.pickup,
                "dropoff": self.dropoff,
                "parcel": {"weight_grams": 1200, "description": "Áo dài lụa", "value_vnd": 850000},
                "cod_amount_vnd": 850000,
                "fee_vnd": 25000,
                "distance_m": 3900,
                "delivery_code": self.code_hash,
                "note": "Gọi trước khi giao",
            },
            source="orders",
        )

    def cancel_requested(self) -> Item:
        """On giao.orders.v1, which tracking does not read."""
        return self._event(
            OrderCancelRequested, ORDERS_TOPIC, {"order_id": self.order_id, "reason": "Khách đổi ý"}, source="orders"
        )

    def offered(self) -> Item:
        return self._event(
            DeliveryOffered,
            DISPATCH_TOPIC,
            {
                "order_id": self.order_id,
                "courier_id": self.courier_id,
                "expires_at": T0 + timedelta(minutes=self._minute + 1),
            },
        )

    def assigned(self) -> Item:
        return self._event(DeliveryAssigned, DISPATCH_TOPIC, {"order_id": self.order_id, "courier": self.courier})

    def picked_up(self) -> Item:
        return self._event(DeliveryPickedUp, DISPATCH_TOPIC, {"order_id": self.order_id})

    def delivered(self) -> Item:
        return self._event(DeliveryDelivered, DISPATCH_TOPIC, {"order_id": self.order_id, "cod_collected_vnd": 850000})

    def failed(self) -> Item:
        return self._event(
            DeliveryFailed, DISPATCH_TOPIC, {"order_id": self.order_id, "reason": "recipient_unreachable"}
        )

    def returned(self) -> Item:
        return self._event(DeliveryReturned, DISPATCH_TOPIC, {"order_id": self.order_id})

    def expired(self) -> Item:
        return self._event(DeliveryExpired, DISPATCH_TOPIC, {"order_id": self.order_id})

    def cancel_confirmed(self) -> Item:
        return self._event(CancelConfirmed, DISPATCH_TOPIC, {"order_id": self.order_id})

    def cancel_refused(self) -> Item:
        return self._event(CancelRefused, DISPATCH_TOPIC, {"order_id": self.order_id, "reason": "đã lấy hàng"})

    def location(self, lat: float, lng: float, *, carrying: bool = True) -> Item:
        return self._event(
            CourierLocation,
            COURIER_LOCATIONS_TOPIC,
            {
                "courier_id": self.courier_id,
                "order_ids": [self.order_id] if carrying else [],
                "lat": lat,
                "lng": lng,
                "at": T0 + timedelta(minutes=self._minute + 1),
            },
            subject=str(self.courier_id),
        )


# The lifecycles of the contract: every status appears in one of them.
def delivered_story(s: Story) -> list[tuple[str, Item]]:
    return [
        ("placed", s.placed()),
        ("placed", s.offered()),
        ("assigned", s.assigned()),
        ("picked_up", s.picked_up()),
        ("picked_up", s.location(20.9541, 107.0611)),
        ("delivered", s.delivered()),
    ]


def returned_story(s: Story) -> list[tuple[str, Item]]:
    return [
        ("placed", s.placed()),
        ("assigned", s.assigned()),
        ("picked_up", s.picked_up()),
        ("picked_up", s.location(20.9552, 107.0533)),
        ("delivery_failed", s.failed()),
        ("returned", s.returned()),
    ]


def cancelled_story(s: Story) -> list[tuple[str, Item]]:
    return [
        ("placed", s.placed()),
        ("assigned", s.assigned()),
        ("cancelled", s.cancel_confirmed()),
    ]


def expired_story(s: Story) -> list[tuple[str, Item]]:
    return [("placed", s.placed()), ("placed", s.offered()), ("expired", s.expired())]


def refused_cancel_story(s: Story) -> list[tuple[str, Item]]:
    return [
        ("placed", s.placed()),
        ("assigned", s.assigned()),
        ("picked_up", s.picked_up()),
        ("picked_up", s.cancel_refused()),
        ("delivered", s.delivered()),
    ]


LIFECYCLES = {
    "delivered": delivered_story,
    "returned": returned_story,
    "cancelled": cancelled_story,
    "expired": expired_story,
    "refused cancel": refused_cancel_story,
}
