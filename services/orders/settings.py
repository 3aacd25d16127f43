"""The orders service's settings: its own GIAO_ORDERS_* names, besides the common GIAO_* ones of
shared.settings. Each field's description says what it sets."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.orders.domain import Tariff
from shared.settings import CommonSettings, admin_token_field, delivery_code_key_field


class OrdersSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GIAO_ORDERS_", extra="ignore", populate_by_name=True)

    port: int = Field(8001, description="HTTP port")
    database_url: str = Field("postgresql://giao:giao@127.0.0.1:5432/giao_orders",
                              description="Its PostgreSQL database")
    db_pool_size: int = Field(20, ge=2, description="Connections in the pool")
    base_fare_vnd: int = Field(15_000, ge=0, description="Every delivery's fixed part")
    per_km_vnd: int = Field(5_000, ge=0, description="Per kilometre of estimated road distance")
    free_weight_grams: int = Field(3_000, ge=0, description="Parcels up to this weight pay no surcharge")
    per_extra_kg_vnd: int = Field(2_500, ge=0, description="Per started kilogram above that")
    fee_rounding_vnd: int = Field(1_000, ge=1, description="Fees are rounded up to a multiple of this")
    idempotency_ttl_hours: float = Field(24, gt=0, description="How long an Idempotency-Key is remembered")
    admin_token: str = admin_token_field()
    delivery_code_key: str = delivery_code_key_field()

    def tariff(self) -> Tariff:
        return Tariff(base_fare_vnd=self.base_fare_vnd, per_km_vnd=self.per_km_vnd,
                      free_weight_grams=self.free_weight_grams, per_extra_kg_vnd=self.per_extra_kg_vnd,
                      rounding_vnd=self.fee_rounding_vnd)
