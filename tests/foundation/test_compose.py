"""docker-compose.yml runs the same system as `make up`: it is valid, and its services, ports and
environment names are the ones the code reads."""

from __future__ import annotations

import importlib
import os
import subprocess
from typing import Any

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
    # probed on its ops port (the default: port + 100), not published
    assert f"http://127.0.0.1:{port + 100}/readyz" in " ".join(spec["healthcheck"]["test"])
    dsn = spec["environment"][f"GIAO_{service.upper()}_DATABASE_URL"]
    assert dsn.startswith(f"postgresql://giao_{service}:") and dsn.endswith(f"@postgres:5432/giao_{service}")
    owner = spec["environment"][f"GIAO_{service.upper()}_MIGRATION_DATABASE_URL"]
    assert owner.startswith(f"postgresql://giao_{service}_owner:") and owner.endswith(f"@postgres:5432/giao_{service}")
    # The stop grace period outlasts the service's own graceful shutdown (HTTP drain + each step).
    grace = float(spec["stop_grace_period"].rstrip("s"))
    assert grace > 3 * CommonSettings.model_fields["shutdown_grace_s"].default


def test_compose_creates_every_service_database_and_its_roles(compose):
    """deploy/docker/initdb.sh runs the same SQL as deploy/local/postgres.sh for each service,
    with the passwords the services' URLs carry (tests/foundation/test_pg_roles.py tries it)."""
    initdb = (ROOT / "deploy/docker/initdb.sh").read_text()
    assert "for s in orders dispatch tracking; do" in initdb and "-f /etc/giao/service-database.sql" in initdb
    postgres = compose["services"]["postgres"]
    assert "./deploy/postgres/service-database.sql:/etc/giao/service-database.sql:ro" in postgres["volumes"]
    assert "./deploy/docker/initdb.sh:/docker-entrypoint-initdb.d/initdb.sh:ro" in postgres["volumes"]
    for service in SETTINGS:
        for name, role in (("DB_PASSWORD", f"giao_{service}"), ("DB_OWNER_PASSWORD", f"giao_{service}_owner")):
            variable = f"GIAO_{service.upper()}_{name}"
            password = f"${{{variable}:-giao-dev}}"
            assert postgres["environment"][variable] == password
            urls = " ".join(compose["services"][service]["environment"].values())
            assert f"postgresql://{role}:{password}@" in urls
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
REAL_DATABASE_PASSWORDS = {
    f"GIAO_{service.upper()}_{name}": f"{service}-{name.lower()}-7c2a"
    for service in SETTINGS
    for name in ("DB_PASSWORD", "DB_OWNER_PASSWORD")
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


def load_settings(service: str, environment: dict[str, str], monkeypatch) -> Any:
    """The service's settings as the service reads them in its container."""
    for name in [n for n in os.environ if n.startswith("GIAO_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, "" if value is None else str(value))
    module, name = SETTINGS[service]
    return getattr(importlib.import_module(module), name)()


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_runs_in_production_when_given_real_secrets(service, monkeypatch):
    compose = rendered({"GIAO_ENV": "production", **REAL_SECRETS, **REAL_DATABASE_PASSWORDS})
    environment = compose["services"][service]["environment"]
    assert environment["GIAO_ENV"] == "production"
    settings = load_settings(service, environment, monkeypatch)
    assert settings.env == "production"
    prefix = f"GIAO_{service.upper()}_"
    assert f":{REAL_DATABASE_PASSWORDS[prefix + 'DB_PASSWORD']}@" in settings.database_url
    assert f":{REAL_DATABASE_PASSWORDS[prefix + 'DB_OWNER_PASSWORD']}@" in settings.migration_database_url
    assert (
        compose["services"]["postgres"]["environment"][f"{prefix}DB_PASSWORD"]
        == (REAL_DATABASE_PASSWORDS[prefix + "DB_PASSWORD"])
    )
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
    environment = rendered({"GIAO_ENV": "production", **REAL_DATABASE_PASSWORDS})["services"][service]["environment"]
    if service == "tracking":  # tracking holds neither the admin token nor the code key
        with pytest.raises(ValueError, match="GIAO_KAFKA_USERNAME and GIAO_KAFKA_PASSWORD must be set"):
            load_settings(service, environment, monkeypatch)
    else:
        with pytest.raises(ValueError, match="GIAO_ADMIN_TOKEN must be set"):
            load_settings(service, environment, monkeypatch)
    kafka_only = {k: v for k, v in REAL_SECRETS.items() if k.startswith("GIAO_KAFKA_")}
    environment = rendered({"GIAO_ENV": "production", **REAL_DATABASE_PASSWORDS, **kafka_only})["services"][service][
        "environment"
    ]
    if service == "tracking":
        load_settings(service, environment, monkeypatch)  # its database and Kafka passwords are all it needs
    else:
        with pytest.raises(ValueError, match="GIAO_ADMIN_TOKEN must be set"):
            load_settings(service, environment, monkeypatch)


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_in_production_refuses_the_public_database_passwords(service, monkeypatch):
    environment = rendered({"GIAO_ENV": "production", **REAL_SECRETS})["services"][service]["environment"]
    with pytest.raises(ValueError, match=f"GIAO_{service.upper()}_DATABASE_URL carries a public development password"):
        load_settings(service, environment, monkeypatch)
