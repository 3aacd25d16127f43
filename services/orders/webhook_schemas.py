"""The HTTP bodies of webhook endpoints and their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from services.orders.schemas import Input, Output
from services.orders.webhooks import EVENT_TYPES
from services.orders.webhooks import EventType as WebhookEventType
from shared.inputs import safe_text

# --- webhook endpoints --------------------------------------------------------------

WebhookUrl = Annotated[
    str, StringConstraints(min_length=8, max_length=2000, pattern=r"^https?://\S+$"), AfterValidator(safe_text)
]
WebhookEventTypes = Annotated[list[WebhookEventType], Field(min_length=1, max_length=len(EVENT_TYPES))]


class WebhookEndpointIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"url": "https://shop.example/giao/webhooks", "event_types": ["order.status_changed"]}]
        }
    )

    url: WebhookUrl = Field(
        description="https (http only where GIAO_ENV is development or test); must not resolve to a private, "
        "loopback, link-local or metadata address"
    )
    event_types: WebhookEventTypes = Field(description="The events to receive")
    enabled: bool = True


class WebhookEndpointPatch(Input):
    url: WebhookUrl | None = None
    event_types: WebhookEventTypes | None = None
    enabled: bool | None = Field(None, description="true again after the endpoint was disabled clears the reason")


class WebhookEndpointOut(Output):
    id: UUID
    url: str
    event_types: list[WebhookEventType]
    enabled: bool
    disabled_reason: str | None = Field(description="Why the service disabled it (deliveries kept failing)")
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None = Field(description="Until then the previous secret signs too")


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="The `whsec_` signing secret: shown at creation and rotation only")


class WebhookAttemptOut(Output):
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


class WebhookDeliveryOut(Output):
    id: UUID = Field(description="Also the `webhook-id` header: the same on every attempt")
    order_id: UUID | None
    event_type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: list[WebhookAttemptOut]
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveryPage(Output):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


class PingOut(Output):
    delivery_id: UUID
