"""The orders service's settings: its own GIAO_ORDERS_* names, besides the common GIAO_* ones of
shared.settings. Each field's description says what it sets."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.orders.domain import Tariff
from services.orders.webhooks import DEFAULT_RETRY_SCHEDULE_S
from shared.settings import DEV_ENVS, CommonSettings, admin_token_field, delivery_code_key_field


class OrdersSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GIAO_ORDERS_", extra="ignore", populate_by_name=True)

    port: int = Field(8001, description="HTTP port")
    database_url: str = Field(
        "postgresql://giao:giao@127.0.0.1:5432/giao_orders", description="Its PostgreSQL database"
    )
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
        description="How long an instance trusts an API key it looked up: "
        "a revoked key stops working everywhere within this",
    )
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

    admin_token: str = admin_token_field()
    delivery_code_key: str = delivery_code_key_field()

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

    def tariff(self) -> Tariff:
        return Tariff(
            base_fare_vnd=self.base_fare_vnd,
            per_km_vnd=self.per_km_vnd,
            free_weight_grams=self.free_weight_grams,
            per_extra_kg_vnd=self.per_extra_kg_vnd,
            rounding_vnd=self.fee_rounding_vnd,
        )
