"""The orders service's settings: its own GIAO_ORDERS_* names, besides the common GIAO_* ones of
shared.settings. Each field's description says what it sets."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import orjson
from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import SettingsConfigDict

from services.orders.domain import ServiceArea, Tariff
from services.orders.webhooks import DEFAULT_RETRY_SCHEDULE_S
from shared.ratelimit import LimitSettings
from shared.settings import (
    DEV_ENVS,
    CommonSettings,
    admin_token_field,
    delivery_code_key_field,
    migration_database_url_field,
)

# Quảng Ninh province, where the demo (Hạ Long) and the bench (Cẩm Phả) place their orders.
DEFAULT_SERVICE_AREA = Path(__file__).parent / "service_area.geojson"


def load_service_area(value: str) -> ServiceArea:
    """GIAO_SERVICE_AREA: inline GeoJSON (it starts with "{"), a GeoJSON file's path, or "" for
    the built-in Quảng Ninh outline. ValueError says what is wrong."""
    text = value.strip()
    try:
        raw = text.encode() if text.startswith("{") else Path(text or DEFAULT_SERVICE_AREA).read_bytes()
        return ServiceArea.from_geojson(orjson.loads(raw))
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"GIAO_SERVICE_AREA: {exc}") from None


class OrdersSettings(CommonSettings, LimitSettings):
    model_config = SettingsConfigDict(env_prefix="GIAO_ORDERS_", extra="ignore", populate_by_name=True)
    is_kafka_principal: ClassVar[bool] = True

    port: int = Field(8001, description="HTTP port")
    database_url: str = Field(
        "postgresql://giao:giao@127.0.0.1:5432/giao_orders",
        description="Its PostgreSQL database as the service's runtime role (DML only)",
    )
    migration_database_url: str = migration_database_url_field("orders")
    db_pool_size: int = Field(20, ge=2, description="Connections in the pool")
    base_fare_vnd: int = Field(15_000, ge=0, description="Every delivery's fixed part")
    per_km_vnd: int = Field(5_000, ge=0, description="Per kilometre of estimated road distance")
    free_weight_grams: int = Field(3_000, ge=0, description="Parcels up to this weight pay no surcharge")
    per_extra_kg_vnd: int = Field(2_500, ge=0, description="Per started kilogram above that")
    fee_rounding_vnd: int = Field(1_000, ge=1, description="Fees are rounded up to a multiple of this")
    idempotency_ttl_hours: float = Field(24, gt=0, description="How long an Idempotency-Key is remembered")
    api_key_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long an instance trusts an API key it looked up (a revoked key stops working "
        "everywhere within this), and refuses an unknown one without looking it up again",
    )
    # The benchmark's merchants place 7.6 orders a second each on average; a browser console a few.
    api_key_rate_per_s: float = Field(
        50.0,
        gt=0,
        description="Requests a second one merchant may make with its API keys (all of them together, "
        "on every route), on average; more is 429 with Retry-After",
    )
    api_key_rate_burst: int = Field(100, ge=1, description="Requests one merchant may make at once after a pause")
    auth_failures_per_s: float = Field(
        10.0,
        gt=0,
        description="Failed authentications (no API key, a malformed, unknown or revoked one) a second one client "
        "address may make, on average; past the burst, its requests with a key this instance does not know from "
        "memory are 429 with Retry-After, before any lookup",
    )
    auth_failures_burst: int = Field(50, ge=1, description="Failed authentications one client address may make at once")
    webhook_retry_schedule_s: tuple[float, ...] = Field(
        DEFAULT_RETRY_SCHEDULE_S,
        min_length=1,
        description="Seconds before each retry of a failed webhook delivery (JSON list; +-10% jitter); "
        "after the last one fails the endpoint is disabled",
    )
    webhook_secret_overlap_hours: float = Field(
        24, ge=0, description="After a secret rotation, how long the previous secret keeps signing too"
    )
    webhook_allow_private: bool = Field(
        False,
        description="Let webhook URLs reach loopback, private and link-local addresses (development and tests only)",
    )
    webhook_poll_s: float = Field(1.0, gt=0, description="How often the webhook worker looks for due deliveries")
    webhook_log_keep_days: float = Field(
        30, gt=0, description="How long delivered and failed webhook deliveries stay in the delivery log"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook delivery")
    webhook_in_flight: int = Field(
        256,
        ge=1,
        description="Deliveries one instance's worker has in flight at once, at most: with endpoints answering "
        "in 200 ms, 256 carry about 1,280 deliveries a second (50 carried 250, under the 450 a second "
        "that 150 orders a second make when every merchant listens)",
    )
    webhook_endpoint_concurrency: int = Field(
        8,
        ge=1,
        description="Deliveries in flight at once to one webhook endpoint from one instance, at most (of the "
        "GIAO_ORDERS_WEBHOOK_IN_FLIGHT its worker sends at once): a slow or silent endpoint holds no more of them",
    )
    admission_enabled: bool = Field(
        True, description="Refuse new orders (503 with Retry-After) while dispatch is behind (admission.py)"
    )
    admission_bound_s: float = Field(
        30.0,
        gt=0,
        description="An order still waiting for a courier (placed, not assigned) this long is late. It includes "
        "the courier's time to accept an offer: keep it above that",
    )
    admission_min_late: int = Field(
        50, ge=1, description="Late orders at which intake starts limiting the orders it admits"
    )
    admission_horizon_s: float = Field(
        300.0,
        gt=0,
        description="Only orders placed within this are counted (an order no courier near can take would "
        "otherwise count as late until it expires); keep it above the bound",
    )
    admission_refresh_s: float = Field(0.5, gt=0, description="How often the backlog of waiting orders is read")
    admission_min_rate: float = Field(
        1.0, gt=0, description="Orders per second an instance admits at least, however late dispatch is"
    )
    tracking_public_url: str = Field(
        "http://127.0.0.1:8003",
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="The tracking service as recipients reach it: the links the "
        "merchant console shares are this + /t/{tracking_code}",
    )

    service_area: str = Field(
        "",
        validation_alias="GIAO_SERVICE_AREA",
        description="Where pickups and drop-offs may be (else 422): GeoJSON Polygon, MultiPolygon, Feature or "
        "FeatureCollection, inline or the path of a file; empty: Quảng Ninh province "
        "(services/orders/service_area.geojson)",
    )
    _service_area: ServiceArea = PrivateAttr()

    admin_token: str = admin_token_field()
    delivery_code_key: str = delivery_code_key_field()

    @model_validator(mode="after")
    def _load_service_area(self) -> OrdersSettings:
        # Read once, when the settings are: a wrong area stops the service at start, not at an order.
        self._service_area = load_service_area(self.service_area)
        return self

    @model_validator(mode="after")
    def _no_private_webhooks_in_production(self) -> OrdersSettings:
        # Fails closed like the secrets: private targets only where GIAO_ENV is development or test.
        if self.env not in DEV_ENVS and self.webhook_allow_private:
            raise ValueError(f"GIAO_ORDERS_WEBHOOK_ALLOW_PRIVATE is refused when GIAO_ENV is {self.env!r}")
        return self

    @model_validator(mode="after")
    def _horizon_covers_the_bound(self) -> OrdersSettings:
        # An order older than the horizon is not counted: with a shorter horizon none could be late.
        if self.admission_horizon_s <= self.admission_bound_s:
            raise ValueError("GIAO_ORDERS_ADMISSION_HORIZON_S must be longer than GIAO_ORDERS_ADMISSION_BOUND_S")
        return self

    def area(self) -> ServiceArea:
        return self._service_area

    def tariff(self) -> Tariff:
        return Tariff(
            base_fare_vnd=self.base_fare_vnd,
            per_km_vnd=self.per_km_vnd,
            free_weight_grams=self.free_weight_grams,
            per_extra_kg_vnd=self.per_extra_kg_vnd,
            rounding_vnd=self.fee_rounding_vnd,
        )
