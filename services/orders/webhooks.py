"""The rules of webhooks, free of I/O: which order changes a merchant hears about, the payload,
the Standard Webhooks signature, the retry schedule, and which URLs and addresses may be called.

The service (webhook_service.py) and the consumer (handlers.py) apply these rules; the SQL is in
webhook_store.py.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from services.orders.domain import Progress

# --- what a merchant hears about ---------------------------------------------------

# The event types an endpoint can subscribe to (the contract's list).
EventType = Literal["order.status_changed", "order.cancellation_answered", "order.delivery_failed", "order.returned"]
EVENT_TYPES: tuple[str, ...] = (
    "order.status_changed",
    "order.cancellation_answered",
    "order.delivery_failed",
    "order.returned",
)
PING = "ping"  # sent by POST /v1/webhook-endpoints/{id}/test, to that endpoint only


@dataclass(frozen=True)
class WebhookEvent:
    """One thing to tell the merchant about an order, caused by one of dispatch's events."""

    type: str
    order_id: Any
    status: str
    event_id: Any
    sequence: int
    at: datetime
    extra: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """The delivery's body but for `data.external_id`, which the store fills in from the order."""
        return payload(
            self.type,
            self.at,
            {
                "order_id": str(self.order_id),
                "external_id": None,
                "status": self.status,
                "event_id": str(self.event_id),
                "sequence": self.sequence,
                **self.extra,
            },
        )


def webhook_events(
    before: Progress,
    after: Progress,
    *,
    order_id: Any,
    event_id: Any,
    sequence: int,
    at: datetime,
    reason: str | None = None,
) -> list[WebhookEvent]:
    """What the merchant hears of one change of an order (nothing if nothing it sees changed)."""
    found: list[WebhookEvent] = []

    def add(type_: str, **extra: Any) -> None:
        found.append(WebhookEvent(type_, order_id, after.status, event_id, sequence, at, extra))

    if after.status != before.status:
        add("order.status_changed", previous_status=before.status)
        if after.status == "delivery_failed":
            add("order.delivery_failed", reason=reason)
        elif after.status == "returned":
            add("order.returned")
    if after.cancellation != before.cancellation and after.cancellation in ("done", "refused"):
        add("order.cancellation_answered", cancellation=after.cancellation)
    return found


def payload(type_: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The body of every delivery: `{type, timestamp, data}` (Standard Webhooks' shape)."""
    return {"type": type_, "timestamp": at.astimezone(UTC).isoformat().replace("+00:00", "Z"), "data": data}


# --- secrets and signatures --------------------------------------------------------


def new_signing_secret() -> str:
    """A `whsec_` secret: 24 random bytes, base64 (as Standard Webhooks libraries read it)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    """The signer of a secret (it decodes the secret once: a worker signs with the same few often)."""
    return Webhook(secret)


def signature_header(secrets_: Iterable[str], msg_id: str, at: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space-separated (during a rotation's
    overlap the old and the new secret both sign, and a receiver holding either verifies)."""
    return " ".join(_signer(s).sign(msg_id=msg_id, timestamp=at, data=body) for s in secrets_)


# --- retries -----------------------------------------------------------------------

DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.1  # +-10%: receivers that came back are not hit by every sender at the same second


def next_attempt_delay(
    schedule: Sequence[float], failed_attempts: int, rand: random.Random | None = None
) -> float | None:
    """Seconds before the next attempt after `failed_attempts` failures, or None: give up."""
    if failed_attempts > len(schedule):
        return None
    base = schedule[failed_attempts - 1]
    return base * (1 + (rand or random).uniform(-JITTER, JITTER))


def give_up_reason(attempts: int, error: str, since: datetime) -> str:
    return f"disabled after a delivery failed {attempts} times since {since.isoformat()}: {error}"


# --- the URL and address policy (SSRF) ---------------------------------------------

# Cloud metadata services: not always covered by is_link_local (AWS's IPv6 one is in fd00::/8).
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


class UnsafeTarget(ValueError):
    """A webhook URL that this service must not call."""


@functools.lru_cache(maxsize=4096)
def check_url(url: str, *, production: bool) -> tuple[str, int]:
    """The URL's host and port, or UnsafeTarget: https only in production, no credentials.
    (Cached: the worker checks every delivery's URL, and an endpoint's URL rarely changes.)"""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # such as an unclosed "[" of an IPv6 address
        raise UnsafeTarget("the URL cannot be parsed") from None
    if parts.scheme not in ("https", "http") or not host:
        raise UnsafeTarget("the URL must be http(s)://host/...")
    if production and parts.scheme != "https":
        raise UnsafeTarget("the URL must be https")
    if parts.username or parts.password:
        raise UnsafeTarget("the URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeTarget("the URL's port is invalid") from None
    return host, port


def unsafe_address(address: str) -> str | None:
    """Why this resolved address must not be called (None: it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    for kind in ("loopback", "private", "link_local", "unspecified", "multicast", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:  # shared (carrier-grade NAT), documentation, benchmarking... ranges
        return f"{ip} is not a global address"
    return None


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """UnsafeTarget unless every address the host resolved to may be called.

    The merchant reads the reason (the 422, the delivery log): it names no address a name
    resolves to, which would map a private network for whoever registers internal names. A
    URL that holds an address itself is told what is wrong with it."""
    found = list(addresses)
    if not found:
        raise UnsafeTarget(f"{host} does not resolve")
    for address in found:
        reason = unsafe_address(address)
        if reason is not None:
            raise UnsafeTarget(reason if _is_address(host) else "the URL points to an address that is not allowed")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def overlap_ends(now: datetime, overlap_hours: float) -> datetime:
    return now + timedelta(hours=overlap_hours)
