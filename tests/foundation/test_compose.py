"""docker-compose.yml runs the same system as `make up`: it is valid, and its services, ports and
environment names are the ones the code reads."""

from __future__ import annotations

import importlib
import os
import subprocess

import pytest
import yaml

from shared.settings import CommonSettings
from tests import ROOT
from tests.infra import need_tool

SETTINGS = {
    "orders": ("services.orders.app", "OrdersSettings"),
    "dispatch": ("services.dispatch.settings", "DispatchSettings"),
    "tracking": ("services.tracking.settings", "TrackingSettings"),
}


def env_names(cls) -> set[str]:
    """Every environment name a settings class reads."""
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for name, f in cls.model_fields.items():
        alias = f.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_service_matches_its_settings(compose, service):
    module, name = SETTINGS[service]
    cls = getattr(importlib.import_module(module), name)
    spec = compose["services"][service]
    unknown = set(spec["environment"]) - env_names(cls)
    assert not unknown, f"compose sets names {service} never reads: {unknown}"
    port = cls.model_fields["port"].default
    assert spec["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert spec["environment"][f"GIAO_{service.upper()}_PORT"] == str(port)
    assert spec["command"] == ["python", "-m", f"services.{service}"]
    assert str(port) in " ".join(spec["healthcheck"]["test"])
    dsn = spec["environment"][f"GIAO_{service.upper()}_DATABASE_URL"]
    assert dsn.endswith(f"/giao_{service}") and "@postgres:5432/" in dsn
    # The stop grace period outlasts the service's own graceful shutdown (HTTP drain + each step).
    grace = float(spec["stop_grace_period"].rstrip("s"))
    assert grace > 3 * CommonSettings.model_fields["shutdown_grace_s"].default


def test_compose_creates_every_service_database(compose):
    initdb = (ROOT / "deploy/docker/initdb.sql").read_text()
    for service in SETTINGS:
        assert f"CREATE DATABASE giao_{service};" in initdb
    assert "127.0.0.1:9092:9092" in compose["services"]["kafka"]["ports"]
    assert compose["services"]["kafka"]["environment"]["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0


def test_docker_compose_file_is_valid():
    result = subprocess.run(
        [need_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


REAL_SECRETS = {
    "GIAO_ADMIN_TOKEN": "a-real-admin-token-4f0c",
    "GIAO_DELIVERY_CODE_KEY": "a-real-code-key-9d1e",
    # Kafka's users (the broker creates them, each service is one: shared/kafka_acls.py)
    "GIAO_KAFKA_BROKER_PASSWORD": "a-real-broker-password-1",
    "GIAO_KAFKA_ADMIN_PASSWORD": "a-real-admin-password-2",
    "GIAO_KAFKA_ORDERS_PASSWORD": "a-real-orders-password-3",
    "GIAO_KAFKA_DISPATCH_PASSWORD": "a-real-dispatch-password-4",
    "GIAO_KAFKA_TRACKING_PASSWORD": "a-real-tracking-password-5",
}


def rendered(environment: dict[str, str]) -> dict:
    """docker-compose.yml as Docker Compose renders it with `environment` in its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIAO_")} | environment
    result = subprocess.run(
        [need_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def load_settings(service: str, environment: dict[str, str], monkeypatch) -> object:
    """The service's settings as the service reads them in its container."""
    for name in [n for n in os.environ if n.startswith("GIAO_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, "" if value is None else str(value))
    module, name = SETTINGS[service]
    return getattr(importlib.import_module(module), name)()


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_runs_in_production_when_given_real_secrets(service, monkeypatch):
    compose = rendered({"GIAO_ENV": "production", **REAL_SECRETS})
    environment = compose["services"][service]["environment"]
    assert environment["GIAO_ENV"] == "production"
    settings = load_settings(service, environment, monkeypatch)
    assert settings.env == "production"
    assert (settings.kafka_username, settings.kafka_password) == (
        service,
        REAL_SECRETS[f"GIAO_KAFKA_{service.upper()}_PASSWORD"],
    ), "each service is its own Kafka user"
    for field, value in [
        ("admin_token", REAL_SECRETS["GIAO_ADMIN_TOKEN"]),
        ("delivery_code_key", REAL_SECRETS["GIAO_DELIVERY_CODE_KEY"]),
    ]:
        if field in type(settings).model_fields:
            assert getattr(settings, field) == value


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_in_production_without_secrets_stops_only_the_services_that_need_them(service, monkeypatch):
    environment = rendered({"GIAO_ENV": "production"})["services"][service]["environment"]
    if service == "tracking":  # tracking holds neither the admin token nor the code key
        with pytest.raises(ValueError, match="GIAO_KAFKA_USERNAME and GIAO_KAFKA_PASSWORD must be set"):
            load_settings(service, environment, monkeypatch)
    else:
        with pytest.raises(ValueError, match="GIAO_ADMIN_TOKEN must be set"):
            load_settings(service, environment, monkeypatch)
    kafka_only = {k: v for k, v in REAL_SECRETS.items() if k.startswith("GIAO_KAFKA_")}
    environment = rendered({"GIAO_ENV": "production", **kafka_only})["services"][service]["environment"]
    if service == "tracking":
        load_settings(service, environment, monkeypatch)  # its Kafka password is all it needs
    else:
        with pytest.raises(ValueError, match="GIAO_ADMIN_TOKEN must be set"):
            load_settings(service, environment, monkeypatch)
