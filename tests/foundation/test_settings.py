"""The development secrets are refused everywhere but in development and test: the check fails
closed, and each service holds only the secrets it uses."""

from __future__ import annotations

from typing import Any

import pytest

from services.dispatch.settings import DispatchSettings
from services.orders.settings import OrdersSettings
from services.tracking.settings import TrackingSettings
from shared.settings import CommonSettings

REAL: dict[str, Any] = {"admin_token": "a-real-admin-token", "delivery_code_key": "a-real-code-key"}


def real_database(service: str) -> dict[str, Any]:
    """A service's database URLs as production sets them: two roles, real passwords."""
    at = f"db.internal:5432/giao_{service}"
    return {
        "database_url": f"postgresql://giao_{service}:r3al-app@{at}",
        "migration_database_url": f"postgresql://giao_{service}_owner:r3al-owner@{at}",
    }


DATABASES = {OrdersSettings: real_database("orders"), DispatchSettings: real_database("dispatch")}
KAFKA = {"kafka_username": "orders", "kafka_password": "a-real-kafka-password"}


@pytest.mark.parametrize("env", ["production", "prod", "staging", "Production", "PRODUCTION", " production", ""])
@pytest.mark.parametrize("cls", [OrdersSettings, DispatchSettings])
def test_the_default_secrets_are_refused_outside_development_and_test(cls, env):
    with pytest.raises(ValueError, match="must be set"):
        cls(env=env, **DATABASES[cls])
    with pytest.raises(ValueError, match="GIAO_DELIVERY_CODE_KEY must be set"):
        cls(env=env, admin_token=REAL["admin_token"], **DATABASES[cls])
    with pytest.raises(ValueError, match="GIAO_KAFKA_USERNAME and GIAO_KAFKA_PASSWORD must be set"):
        cls(env=env, **REAL, **DATABASES[cls])
    assert cls(env=env, **REAL, **DATABASES[cls], **KAFKA).admin_token == REAL["admin_token"]


@pytest.mark.parametrize("cls", [OrdersSettings, DispatchSettings, TrackingSettings])
def test_every_service_needs_a_kafka_principal_of_its_own_outside_development(cls, monkeypatch):
    for name in ("GIAO_KAFKA_USERNAME", "GIAO_KAFKA_PASSWORD"):  # tests.infra may have set them
        monkeypatch.delenv(name, raising=False)
    secrets = REAL if cls is not TrackingSettings else {}
    database = real_database(cls.model_config["env_prefix"].split("_")[1].lower())
    for kafka in [
        {},
        {"kafka_username": "tracking"},
        {"kafka_username": "tracking", "kafka_password": "dev-kafka-tracking"},  # public
        {"kafka_username": "tracking", "kafka_password": "dev-kafka-admin"},
    ]:
        with pytest.raises(ValueError, match="GIAO_KAFKA_USERNAME and GIAO_KAFKA_PASSWORD must be set"):
            cls(env="production", **secrets, **database, **kafka)
    settings = cls(
        env="production", **secrets, **database, kafka_username="tracking", kafka_password="s3cret-from-the-vault"
    )
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
    production = TrackingSettings(env="production", **real_database("tracking"), **KAFKA)
    assert production.env == "production", "tracking needs no secret but its database's and its Kafka password"


@pytest.mark.parametrize("env", ["production", "staging", ""])
@pytest.mark.parametrize("cls", [OrdersSettings, DispatchSettings, TrackingSettings])
def test_outside_development_a_service_migrates_and_runs_as_two_roles_without_public_passwords(cls, env):
    service = cls.model_config["env_prefix"].split("_")[1].lower()
    secrets: dict[str, Any] = {} if cls is TrackingSettings else REAL
    real = real_database(service)
    prefix = f"GIAO_{service.upper()}_"
    with pytest.raises(ValueError, match=f"{prefix}DATABASE_URL carries a public development password"):
        cls(env=env, **secrets)  # the default URL: the superuser's development password
    with pytest.raises(ValueError, match=f"{prefix}MIGRATION_DATABASE_URL must be set"):
        cls(env=env, **secrets, database_url=real["database_url"])
    for public in ("giao", "giao-dev"):
        owner = f"postgresql://giao_{service}_owner@db.internal/giao_{service}?password={public}"
        with pytest.raises(ValueError, match=f"{prefix}MIGRATION_DATABASE_URL carries a public"):
            cls(env=env, **secrets, database_url=real["database_url"], migration_database_url=owner)
    with pytest.raises(ValueError, match="must name different roles"):
        cls(env=env, **secrets, database_url=real["database_url"], migration_database_url=real["database_url"])
    assert cls(env=env, **secrets, **real, **KAFKA).migration_database_url == real["migration_database_url"]


def test_every_process_has_an_ops_port_beside_its_service_port():
    assert (OrdersSettings().ops_port, DispatchSettings().ops_port, TrackingSettings().ops_port) == (8101, 8102, 8103)
    assert DispatchSettings(port=8004).ops_port == 8104
    assert TrackingSettings(ops_port=9003).ops_port == 9003
