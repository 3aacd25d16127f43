"""Settings read from the environment (pydantic-settings). Every name is listed in
docs/configuration.md (generated from these classes).

Common names have no service prefix (GIAO_ENV, GIAO_KAFKA_BOOTSTRAP_SERVERS, ...); each
service adds its own with its prefix (GIAO_ORDERS_PORT, GIAO_ORDERS_DATABASE_URL, ...).
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

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
# Kafka's principals (SASL/SCRAM users) and their public development passwords: the ones
# deploy/local/kafka.sh and docker-compose.yml create when no other is given. `admin` is the
# super user of tooling and tests; each service is its own principal, allowed by the ACLs of
# shared.kafka_acls only what it needs.
KAFKA_PRINCIPALS = ("admin", "orders", "dispatch", "tracking")
DEV_KAFKA_PASSWORDS = frozenset(f"dev-kafka-{name}" for name in KAFKA_PRINCIPALS)

# The public passwords of development's PostgreSQL roles (deploy/local, docker-compose.yml): the
# superuser's and the one every service role gets there. A database URL carrying one of them is
# refused outside development and test, like the secrets above.
DEV_DATABASE_PASSWORD = "giao-dev"
DEV_DATABASE_PASSWORDS = frozenset({"giao", DEV_DATABASE_PASSWORD})
# The distance from a service's port to its ops port when GIAO_OPS_PORT is not set.
OPS_PORT_OFFSET = 100


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
    # A service's settings: outside development and test it must name its own Kafka user (tools
    # and tests that read only these common settings need not).
    is_kafka_principal: ClassVar[bool] = False

    # development or test allow the public development secrets; any other value refuses them.
    env: str = Field("development", validation_alias="GIAO_ENV")
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias="GIAO_KAFKA_BOOTSTRAP_SERVERS")
    # The principal this process is to Kafka (SASL/SCRAM over SASL_PLAINTEXT): each service has its
    # own (orders, dispatch, tracking), allowed only its topics. Empty: no authentication, for a
    # broker without it (the tests' shared one); refused unless GIAO_ENV is development or test.
    kafka_username: str = Field("", validation_alias="GIAO_KAFKA_USERNAME")
    # That principal's password; deploy/local's public development ones (dev-kafka-<user>) are
    # refused unless GIAO_ENV is development or test.
    kafka_password: str = Field("", validation_alias="GIAO_KAFKA_PASSWORD", repr=False)
    # SCRAM-SHA-256 or SCRAM-SHA-512 (deploy/local and the compose file create both for each user;
    # aiokafka refuses any other name when the service starts).
    kafka_sasl_mechanism: str = Field("SCRAM-SHA-256", validation_alias="GIAO_KAFKA_SASL_MECHANISM")
    # Prepended to every topic name; tests use it to give each test topics of its own.
    topic_prefix: str = Field("", validation_alias="GIAO_TOPIC_PREFIX")
    # Partitions of the topics a consumer creates when they do not exist yet: one consumer
    # instance per partition at most, so this caps how many instances share a topic's work.
    kafka_topic_partitions: int = Field(6, ge=1, validation_alias="GIAO_KAFKA_TOPIC_PARTITIONS")
    log_level: str = Field("INFO", validation_alias="GIAO_LOG_LEVEL")
    # Seconds each of a SIGTERM's two phases may take: finishing the requests in flight, then
    # everything else together (consumers commit their offsets, loops end, the outbox drains,
    # clients close; a step still running at the end is named in the log and left). The kill
    # must come later than twice this.
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
    # SO_REUSEPORT (the kernel spreads new connections among them) and also serves its API alone
    # on this one, so that a client can reach this instance in particular.
    instance_port: int | None = Field(None, ge=1, le=65535, validation_alias="GIAO_INSTANCE_PORT")
    # The port of this process alone for its operators: /metrics is served here only (404 on
    # the public ports), besides /healthz and /readyz; nothing else is. Unset: the service's
    # port + 100 (8101, 8102, 8103). Several processes of a service each need their own.
    ops_port: int | None = Field(None, ge=1, le=65535, validation_alias="GIAO_OPS_PORT")
    # How long the broker may hold a consumer's fetch while it gathers records (up to 64 KiB):
    # it adds up to this to each hop's latency and sets how many events a batch (one
    # transaction) holds. 100 ms against 50 ms: 11% less CPU per order in make bench at 60/s,
    # every process less, and a lower p99 placed -> offered (docs/performance.md).
    kafka_fetch_wait_ms: int = Field(100, ge=1, le=1000, validation_alias="GIAO_KAFKA_FETCH_WAIT_MS")
    # How long a service remembers the position of a subject after its last event: at least
    # the topics' retention plus their segments' roll time (168 + 24 h with
    # deploy/local's Kafka), after which no event can be delivered again.
    inbox_keep_hours: float = Field(192.0, gt=0, validation_alias="GIAO_INBOX_KEEP_HOURS")
    # How often a process looks at its consumers' lag and its outbox for /metrics and /readyz
    # (shared.health): one query on the outbox and no request to Kafka per look.
    health_every_s: float = Field(5.0, gt=0, validation_alias="GIAO_HEALTH_EVERY_S")
    # Readiness turns red when a consumer has retried an outage, or had lag and handled
    # nothing, for longer than this (giao_consumer_stuck; docs/operations.md).
    consumer_stuck_after_s: float = Field(60.0, gt=0, validation_alias="GIAO_CONSUMER_STUCK_AFTER_S")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        networks_of(value)  # ValueError names the bad one
        return value

    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return networks_of(self.trusted_proxies)

    @model_validator(mode="after")
    def _ops_port_beside_the_service_port(self) -> CommonSettings:
        port = getattr(self, "port", None)  # each service's own field
        if self.ops_port is None and isinstance(port, int):
            self.ops_port = port + OPS_PORT_OFFSET
        return self

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
        self._refuse_dev_database_roles()
        # Every service is a Kafka principal: without one the broker would refuse it anyway.
        kafka_secret = self.kafka_password and self.kafka_password not in DEV_KAFKA_PASSWORDS
        if self.is_kafka_principal and not (self.kafka_username and kafka_secret):
            raise ValueError(
                "GIAO_KAFKA_USERNAME and GIAO_KAFKA_PASSWORD must be set (not a public development "
                f"password): GIAO_ENV={self.env!r} is not one of {sorted(DEV_ENVS)}"
            )
        return self

    def _refuse_dev_database_roles(self) -> None:
        """Outside development and test a service migrates as its database's owner role and
        runs as its runtime role (deploy/postgres/service-database.sql), neither with a
        public password."""
        if not hasattr(self, "database_url"):
            return
        prefix = str(self.model_config.get("env_prefix", "GIAO_"))
        for field in ("database_url", "migration_database_url"):
            url = getattr(self, field, "")
            env_name = f"{prefix}{field}".upper()
            if not url:
                raise ValueError(
                    f"{env_name} must be set when GIAO_ENV={self.env!r}: migrations run as the database's "
                    "owner role, the service as its runtime role"
                )
            if database_password(url) in DEV_DATABASE_PASSWORDS:
                raise ValueError(
                    f"{env_name} carries a public development password, and GIAO_ENV={self.env!r} "
                    f"is not one of {sorted(DEV_ENVS)}"
                )
        if database_user(self.database_url) == database_user(self.migration_database_url):  # type: ignore[attr-defined]
            raise ValueError(f"{prefix}DATABASE_URL and {prefix}MIGRATION_DATABASE_URL must name different roles")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def database_password(url: str) -> str | None:
    """The password a PostgreSQL URL carries, in its authority or as `?password=`."""
    parts = urlsplit(url)
    return parts.password or next(iter(parse_qs(parts.query).get("password", [])), None)


def database_user(url: str) -> str | None:
    parts = urlsplit(url)
    return parts.username or next(iter(parse_qs(parts.query).get("user", [])), None)


def migration_database_url_field(service: str) -> Any:
    """The URL migrations run with: the service's database as its owner role (a field of each
    service's settings)."""
    return Field(
        "",
        description=f"Its PostgreSQL database as the owner role, for the migrations "
        f"(deploy/postgres/service-database.sql makes it); empty: GIAO_{service.upper()}_DATABASE_URL "
        "migrates too (development and tests only)",
    )


def networks_of(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of a comma-separated list of addresses or CIDRs ("10.0.0.0/8, ::1")."""
    return [ipaddress.ip_network(a.strip(), strict=False) for a in text.split(",") if a.strip()]
