"""The development secrets are refused everywhere but in development and test: the check fails
closed, and each service holds only the secrets it uses."""

from __future__ import annotations

import pytest

from services.dispatch.settings import DispatchSettings
from services.orders.settings import OrdersSettings
from services.tracking.settings import TrackingSettings
from shared.settings import CommonSettings

REAL = {"admin_token": "a-real-admin-token", "delivery_code_key": "a-real-code-key"}
KAFKA = {"kafka_username": "orders", "kafka_password": "a-real-kafka-password"}


@pytest.mark.parametrize("env", ["production", "prod", "staging", "Production", "PRODUCTION", " production", ""])
@pytest.mark.parametrize("cls", [OrdersSettings, DispatchSettings])
def test_the_default_secrets_are_refused_outside_development_and_test(cls, env):
    with pytest.raises(ValueError, match="must be set"):
        cls(env=env)
    with pytest.raises(ValueError, match="GIAO_DELIVERY_CODE_KEY must be set"):
        cls(env=env, admin_token=REAL["admin_token"])
    with pytest.raises(ValueError, match="GIAO_KAFKA_USERNAME and GIAO_KAFKA_PASSWORD must be set"):
        cls(env=env, **REAL)
    assert cls(env=env, **REAL, **KAFKA).admin_token == REAL["admin_token"]


@pytest.mark.parametrize("cls", [OrdersSettings, DispatchSettings, TrackingSettings])
def test_every_service_needs_a_kafka_principal_of_its_own_outside_development(cls, monkeypatch):
    for name in ("GIAO_KAFKA_USERNAME", "GIAO_KAFKA_PASSWORD"):  # tests.infra may have set them
        monkeypatch.delenv(name, raising=False)
    secrets = REAL if cls is not TrackingSettings else {}
    for kafka in [
        {},
        {"kafka_username": "tracking"},
        {"kafka_username": "tracking", "kafka_password": "dev-kafka-tracking"},  # public
        {"kafka_username": "tracking", "kafka_password": "dev-kafka-admin"},
    ]:
        with pytest.raises(ValueError, match="GIAO_KAFKA_USERNAME and GIAO_KAFKA_PASSWORD must be set"):
            cls(env="production", **secrets, **kafka)
    settings = cls(env="production", **secrets, kafka_username="tracking", kafka_password="s3cret-from-the-vault")
    assert "s3cret" not in repr(settings), "the password stays out of logs"
    assert cls(env="development").kafka_username == "", "a broker without authentication, by default"


@pytest.mark.parametrize("env", ["development", "test"])
def test_development_and_test_may_use_the_default_secrets(env):
    for cls in (OrdersSettings, DispatchSettings, TrackingSettings):
        cls(env=env)


def test_each_service_holds_only_the_secrets_it_uses():
    assert {"admin_token", "delivery_code_key"} <= set(OrdersSettings.model_fields)
    assert {"admin_token", "delivery_code_key"} <= set(DispatchSettings.model_fields)
    assert not {"admin_token", "delivery_code_key"} & set(TrackingSettings.model_fields)
    assert not {"admin_token", "delivery_code_key"} & set(CommonSettings.model_fields)
    assert TrackingSettings(env="production", **KAFKA).env == "production", "tracking needs only its Kafka password"
