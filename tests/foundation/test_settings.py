"""The development secrets are refused everywhere but in development and test: the check fails
closed, and each service holds only the secrets it uses."""

from __future__ import annotations

import pytest

from services.dispatch.settings import DispatchSettings
from services.orders.settings import OrdersSettings
from services.tracking.settings import TrackingSettings
from shared.settings import CommonSettings

REAL = {"admin_token": "a-real-admin-token", "delivery_code_key": "a-real-code-key"}


@pytest.mark.parametrize("env", ["production", "prod", "staging", "Production", "PRODUCTION", " production", ""])
@pytest.mark.parametrize("cls", [OrdersSettings, DispatchSettings])
def test_the_default_secrets_are_refused_outside_development_and_test(cls, env):
    with pytest.raises(ValueError, match="must be set"):
        cls(env=env)
    with pytest.raises(ValueError, match="GIAO_DELIVERY_CODE_KEY must be set"):
        cls(env=env, admin_token=REAL["admin_token"])
    assert cls(env=env, **REAL).admin_token == REAL["admin_token"]


@pytest.mark.parametrize("env", ["development", "test"])
def test_development_and_test_may_use_the_default_secrets(env):
    for cls in (OrdersSettings, DispatchSettings, TrackingSettings):
        cls(env=env)


def test_each_service_holds_only_the_secrets_it_uses():
    assert {"admin_token", "delivery_code_key"} <= set(OrdersSettings.model_fields)
    assert {"admin_token", "delivery_code_key"} <= set(DispatchSettings.model_fields)
    assert not {"admin_token", "delivery_code_key"} & set(TrackingSettings.model_fields)
    assert not {"admin_token", "delivery_code_key"} & set(CommonSettings.model_fields)
    assert TrackingSettings(env="production").env == "production", "tracking needs no secret"
