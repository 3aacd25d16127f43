"""Settings read from the environment (pydantic-settings). Every name is listed in
docs/configuration.md (generated from these classes).

Common names have no service prefix (GIAO_ENV, GIAO_KAFKA_BOOTSTRAP_SERVERS, ...); each
service adds its own with its prefix (GIAO_ORDERS_PORT, GIAO_ORDERS_DATABASE_URL, ...).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ADMIN_TOKEN = "dev-admin-token"
DEV_DELIVERY_CODE_KEY = "dev-delivery-code-key"
# The only GIAO_ENV values in which the public development secrets may be used: anything else
# (production, prod, staging, Production, a typo) refuses them, so a mistake fails closed.
DEV_ENVS = frozenset({"development", "test"})
# field -> (its environment name, its public development default)
DEV_SECRETS = {
    "admin_token": ("GIAO_ADMIN_TOKEN", DEV_ADMIN_TOKEN),
    "delivery_code_key": ("GIAO_DELIVERY_CODE_KEY", DEV_DELIVERY_CODE_KEY),
}


def admin_token_field() -> Any:
    """The admin token, for the services that serve admin routes (a field of their settings)."""
    return Field(
        DEV_ADMIN_TOKEN,
        validation_alias="GIAO_ADMIN_TOKEN",
        description="Bearer token of the admin routes (the same in every service that has them)",
    )


def delivery_code_key_field() -> Any:
    """The key of the keyed hash that carries the delivery code on Kafka (orders hashes,
    dispatch checks): a field of those two services' settings only."""
    return Field(
        DEV_DELIVERY_CODE_KEY,
        validation_alias="GIAO_DELIVERY_CODE_KEY",
        description="Key of the keyed hash that carries the delivery code on Kafka "
        "(orders hashes, dispatch checks; the same in both)",
    )


class CommonSettings(BaseSettings):
    """Settings every service reads. Subclasses set `env_prefix` for their own fields."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # development or test allow the public development secrets; any other value refuses them.
    env: str = Field("development", validation_alias="GIAO_ENV")
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias="GIAO_KAFKA_BOOTSTRAP_SERVERS")
    # Prepended to every topic name; tests use it to give each test topics of its own.
    topic_prefix: str = Field("", validation_alias="GIAO_TOPIC_PREFIX")
    # Partitions of the topics a consumer creates when they do not exist yet: one consumer
    # instance per partition at most, so this caps how many instances share a topic's work.
    kafka_topic_partitions: int = Field(6, ge=1, validation_alias="GIAO_KAFKA_TOPIC_PARTITIONS")
    log_level: str = Field("INFO", validation_alias="GIAO_LOG_LEVEL")
    # Seconds a SIGTERM may take: stop taking work, finish in-flight work, commit offsets.
    shutdown_grace_s: float = Field(10.0, validation_alias="GIAO_SHUTDOWN_GRACE_S")
    host: str = Field("127.0.0.1", validation_alias="GIAO_HOST")
    # Connections and requests one process serves at once (uvicorn's limit_concurrency); more
    # are answered 503 at once instead of queueing without bound (SSE streams count too).
    limit_concurrency: int = Field(1000, ge=1, validation_alias="GIAO_LIMIT_CONCURRENCY")
    # Comma-separated networks of the reverse proxies in front of the services: X-Forwarded-For
    # is believed only from them, and the client is its right-most address outside them.
    # Empty: nobody's X-Forwarded-For is believed (the client is the peer's address).
    trusted_proxies: str = Field("", validation_alias="GIAO_TRUSTED_PROXIES")
    # Set when several instances of a service share its port: each binds the port with
    # SO_REUSEPORT (the kernel spreads new connections among them) and also listens alone on
    # this one, so that a health check or a metrics scrape reaches this instance in particular.
    instance_port: int | None = Field(None, ge=1, le=65535, validation_alias="GIAO_INSTANCE_PORT")
    # How long a service remembers the position of a subject after its last event: at least the topics' retention plus their segments' roll time (168 + 24 h with
    # deploy/local's Kafka), after which no event can be delivered again.
    inbox_keep_hours: float = Field(192.0, gt=0, validation_alias="GIAO_INBOX_KEEP_HOURS")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        networks_of(value)  # ValueError names the bad one
        return value

    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return networks_of(self.trusted_proxies)

    @model_validator(mode="after")
    def _refuse_dev_secrets_outside_development(self) -> CommonSettings:
        # Each service's settings hold only the secrets it uses (admin_token_field, ...).
        if self.env in DEV_ENVS:
            return self
        for field, (env_name, default) in DEV_SECRETS.items():
            if getattr(self, field, None) == default:
                raise ValueError(
                    f"{env_name} must be set: its default is public, and GIAO_ENV={self.env!r} "
                    f"is not one of {sorted(DEV_ENVS)}"
                )
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def networks_of(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of a comma-separated list of addresses or CIDRs ("10.0.0.0/8, ::1")."""
    return [ipaddress.ip_network(a.strip(), strict=False) for a in text.split(",") if a.strip()]
