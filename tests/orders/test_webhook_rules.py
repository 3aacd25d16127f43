"""The webhook rules without I/O (services/orders/webhooks.py), and the SSRF guard of the API
with the default settings (private targets not allowed)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from services.orders import webhook_store, webhooks
from services.orders.domain import Progress
from services.orders.settings import OrdersSettings
from services.orders.webhook_service import WebhookService
from services.orders.webhooks import (
    UnsafeTarget,
    check_addresses,
    check_url,
    new_signing_secret,
    next_attempt_delay,
    signature_header,
    unsafe_address,
    webhook_events,
)
from shared.http import Metrics
from shared.service import Runtime
from tests.orders.receiver import receiver
from tests.support import eventually

AT = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "fc00::1",
        "::ffff:127.0.0.1",
        "fe80::1%eth0",
        "100.64.0.1",
    ],
)
def test_unsafe_addresses_are_named(address):
    assert unsafe_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_may_be_called(address):
    assert unsafe_address(address) is None


def test_one_unsafe_address_among_several_refuses_the_host():
    with pytest.raises(UnsafeTarget, match=r"^the URL points to an address that is not allowed$"):
        check_addresses("shop.example", ["93.184.215.14", "10.0.0.1"])
    with pytest.raises(UnsafeTarget, match=r"^10\.0\.0\.1 is a private address$"):  # the URL's own address
        check_addresses("10.0.0.1", ["10.0.0.1"])
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        check_addresses("nowhere.invalid", [])


def test_urls_https_in_production_and_no_credentials():
    assert check_url("http://shop.example/h", production=False) == ("shop.example", 80)
    assert check_url("https://shop.example:8443/h", production=True) == ("shop.example", 8443)
    for url, production in [
        ("http://shop.example/h", True),
        ("ftp://shop.example/", False),
        ("https://user:pw@shop.example/", False),
        ("https://shop.example:99999/", False),
    ]:
        with pytest.raises(UnsafeTarget):
            check_url(url, production=production)


def _deployed(env: str, **more: Any) -> OrdersSettings:
    """Settings as a deployment outside development and test must give them."""
    return OrdersSettings(
        env=env,
        admin_token="a" * 32,
        delivery_code_key="b" * 32,
        database_url="postgresql://giao_orders:r3al@db/giao_orders",
        migration_database_url="postgresql://giao_orders_owner:r3al@db/giao_orders",
        kafka_username="orders",
        kafka_password="c" * 32,
        **more,
    )


def test_allowing_private_targets_is_refused_in_production():
    with pytest.raises(ValueError, match="ALLOW_PRIVATE"):
        _deployed("production", webhook_allow_private=True)


@pytest.mark.parametrize("env", ["production", "staging", "prod"])
async def test_endpoints_need_https_wherever_giao_env_is_not_development_or_test(env):
    service = WebhookService(cast(Runtime, SimpleNamespace(pool=None)), _deployed(env), Metrics("orders"))
    with pytest.raises(UnsafeTarget):
        await service.check_target("http://shop.example/hooks")
    for dev in ("development", "test"):
        local = WebhookService(cast(Runtime, SimpleNamespace(pool=None)), OrdersSettings(env=dev), Metrics("orders"))
        assert local.production is False


def test_the_retry_schedule_has_jitter_and_an_end():
    schedule = (5.0, 300.0)
    rand = random.Random(7)
    first = next_attempt_delay(schedule, 1, rand)
    assert first is not None and 4.5 <= first <= 5.5
    second = next_attempt_delay(schedule, 2, rand)
    assert second is not None and 270 <= second <= 330
    assert next_attempt_delay(schedule, 3, rand) is None


def test_both_secrets_sign_and_either_verifies():
    old, new = new_signing_secret(), new_signing_secret()
    body = '{"type":"ping"}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
        "webhook-signature": signature_header([new, old], "msg_1", datetime.now(UTC), body),
    }
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "ping"}


def test_which_changes_a_merchant_hears_about():
    placed = Progress(status="placed", history=())
    failed = Progress(status="delivery_failed", history=())
    ids = {"order_id": uuid4(), "event_id": uuid4(), "sequence": 3, "at": AT}
    assert [e.type for e in webhook_events(placed, failed, reason="recipient_unreachable", **ids)] == [
        "order.status_changed",
        "order.delivery_failed",
    ]
    refused = Progress(status="placed", history=(), cancellation="refused")
    requested = Progress(status="placed", history=(), cancellation="requested")
    assert [e.type for e in webhook_events(requested, refused, **ids)] == ["order.cancellation_answered"]
    assert webhook_events(placed, requested, **ids) == []
    event = webhook_events(placed, failed, **ids)[0]
    assert event.payload()["data"]["sequence"] == 3 and event.payload()["timestamp"] == "2024-05-06T02:00:00Z"


# --- the guard in the API (private targets not allowed: the default) -------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/h",
        "http://10.0.0.5/h",
        "http://169.254.169.254/latest",
        "http://localhost:8080/h",
        "http://[::1]:8080/h",
    ],
)
async def test_private_targets_are_refused_at_registration(client, merchant, url):
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": ["order.returned"]}, headers=merchant["headers"]
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "url"]


async def test_a_target_that_became_private_is_refused_at_delivery(client, merchant, settings):
    h = merchant["headers"]
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": "http://93.184.215.14/h", "event_types": ["order.returned"]}, headers=h
    )
    assert r.status_code == 201, r.text
    endpoint_id = r.json()["id"]
    r = await client.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"url": "http://10.0.0.5/h"}, headers=h)
    assert r.status_code == 422
    # As if the name's DNS now pointed inside: the URL changes under the service's feet.
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("UPDATE webhook_endpoints SET url = 'http://127.0.0.1:9/h' WHERE id = $1", endpoint_id)
    finally:
        await conn.close()
    await client.post(f"/v1/webhook-endpoints/{endpoint_id}/test", headers=h)

    async def refused():
        items = (await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=h)).json()["items"]
        return items[0] if items and items[0]["attempts"] else None

    delivery = await eventually(refused, what="the refused attempt")
    assert delivery["attempts"][0]["status_code"] is None
    assert delivery["attempts"][0]["error"] == "refused: 127.0.0.1 is a loopback address"


async def test_refusing_a_name_does_not_say_where_it_points(client, merchant, app):
    # The addresses behind a merchant's host name are not the merchant's to learn from us (an
    # internal name would map the private network).
    class InsideResolver:
        async def resolve(self, host: str, port: int) -> list[str]:
            return ["10.0.3.7"]

    app.state.webhooks.resolver = InsideResolver()
    r = await client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://db.internal/h", "event_types": ["order.returned"]},
        headers=merchant["headers"],
    )
    assert r.status_code == 422, r.text
    assert "10.0.3.7" not in r.text
    assert r.json()["errors"][0]["msg"] == "the URL points to an address that is not allowed"


async def test_a_delivery_connects_to_the_address_checked_not_to_a_second_lookup(client, merchant, monkeypatch):
    # DNS rebinding: a name answers an allowed address to the check, an internal one to the next
    # lookup. Here the receiver on 127.0.0.1 plays an allowed (public) address and 127.0.0.2,
    # the same port, the internal network: a listener there counts whoever reaches it. The
    # "DNS" is the event loop's getaddrinfo, which the check and any connect by name both ask.
    loopback_policy = webhooks.unsafe_address
    monkeypatch.setattr(webhooks, "unsafe_address", lambda a: None if a == "127.0.0.1" else loopback_policy(a))
    loop = asyncio.get_running_loop()
    system_lookup = loop.getaddrinfo
    answers, asked = ["127.0.0.1"], []

    async def dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "rebind.test":
            return await system_lookup(host, port, *args, **kwargs)
        asked.append(host)
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]

    monkeypatch.setattr(loop, "getaddrinfo", dns)
    reached_inside: list[object] = []
    with receiver() as hooks:
        port = int(hooks.url.rsplit(":", 1)[1].split("/")[0])
        inside = await asyncio.start_server(lambda _, writer: reached_inside.append(writer.close()), "127.0.0.2", port)
        try:
            h = merchant["headers"]
            r = await client.post(
                "/v1/webhook-endpoints",
                json={"url": f"http://rebind.test:{port}/hooks", "event_types": ["order.returned"]},
                headers=h,
            )
            assert r.status_code == 201, r.text
            endpoint_id = r.json()["id"]
            answers[:] = ["127.0.0.1", "127.0.0.2"]  # the next lookup: allowed; every one after it: inside
            await client.post(f"/v1/webhook-endpoints/{endpoint_id}/test", headers=h)

            async def attempted():
                items = (await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=h)).json()["items"]
                return items[0] if items and items[0]["attempts"] else None

            delivery = await eventually(attempted, what="the first attempt")
        finally:
            inside.close()
    assert reached_inside == []
    assert (delivery["state"], delivery["attempts"][0]["status_code"]) == ("delivered", 200), delivery
    assert [r.headers["host"] for r in hooks.all()] == [f"rebind.test:{port}"]  # the name, not the address
    assert len(asked) == 2  # at registration, and once before the attempt: not again to connect


async def test_a_round_of_deliveries_looks_each_host_up_once(monkeypatch):
    # Four deliveries to one host and one to another, claimed together: two lookups, made at
    # delivery time; the host that now resolves inside is refused, the other one is posted to.
    class CountingResolver:
        def __init__(self) -> None:
            self.asked: list[tuple[str, int]] = []

        async def resolve(self, host: str, port: int) -> list[str]:
            self.asked.append((host, port))
            return ["10.0.0.5"] if host == "inside.example" else ["93.184.215.14"]

    class RecordingSender:
        def __init__(self) -> None:
            self.posted: list[tuple[str, Sequence[str] | None]] = []

        async def post(
            self, url: str, body: bytes, headers: dict[str, str], *, addresses: Sequence[str] | None = None
        ) -> int:
            self.posted.append((url, addresses))
            return 204

    urls = ["https://hooks.example/a", "https://hooks.example/b", "https://inside.example/h"]
    rows = [
        {"id": uuid4(), "endpoint_id": uuid4(), "body": "{}", "attempts": 0, "created_at": AT, "url": url}
        | {"secret": new_signing_secret(), "previous_secret": None, "previous_secret_until": None}
        for url in urls[:2] * 2 + urls[2:]
    ]
    recorded: list[webhook_store.Attempt] = []

    async def claim_due(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        claimed, rows[:] = rows[:], []
        return claimed

    async def record_attempts(conn: Any, attempts: list[webhook_store.Attempt], **_: Any) -> set[Any]:
        recorded.extend(attempts)
        return {a.delivery_id for a in attempts}

    monkeypatch.setattr(webhook_store, "claim_due", claim_due)
    monkeypatch.setattr(webhook_store, "record_attempts", record_attempts)
    resolver, sender = CountingResolver(), RecordingSender()
    settings = OrdersSettings(webhook_poll_s=5.0)
    service = WebhookService(cast(Runtime, SimpleNamespace(pool=None)), settings, Metrics("orders"), resolver=resolver)
    in_flight: dict[Any, Any] = {}
    await service.deliver_due(sender, in_flight)
    while in_flight:
        await service.deliver_due(sender, in_flight)
    assert sorted(resolver.asked) == [("hooks.example", 443), ("inside.example", 443)]
    assert sorted(sender.posted) == sorted((url, ["93.184.215.14"]) for url in urls[:2] * 2)  # the checked address
    errors = sorted(str(a.error) for a in recorded)
    assert errors == ["None"] * 4 + ["refused: the URL points to an address that is not allowed"]


async def test_the_worker_keeps_as_many_deliveries_in_flight_as_its_setting(monkeypatch):
    """Throughput is what is in flight over the endpoints' latency: the worker claims for every
    free place up to GIAO_ORDERS_WEBHOOK_IN_FLIGHT, and no more."""

    class SilentSender:  # answers nothing until released: every delivery stays in flight
        def __init__(self) -> None:
            self.release = asyncio.Event()

        async def post(
            self, url: str, body: bytes, headers: dict[str, str], *, addresses: Sequence[str] | None = None
        ) -> int:
            await self.release.wait()
            return 204

    asked: list[int] = []

    async def claim_due(pool: Any, limit: int, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        asked.append(limit)
        return [
            {"id": uuid4(), "endpoint_id": uuid4(), "body": "{}", "attempts": 0, "created_at": AT}
            | {"url": f"https://hooks.example/{i}", "secret": new_signing_secret()}
            | {"previous_secret": None, "previous_secret_until": None}
            for i in range(limit if len(asked) == 1 else 0)
        ]

    async def record_attempts(conn: Any, attempts: list[webhook_store.Attempt], **_: Any) -> set[Any]:
        return {a.delivery_id for a in attempts}

    monkeypatch.setattr(webhook_store, "claim_due", claim_due)
    monkeypatch.setattr(webhook_store, "record_attempts", record_attempts)
    settings = OrdersSettings(webhook_poll_s=0.01, webhook_in_flight=120, webhook_allow_private=True)
    service = WebhookService(cast(Runtime, SimpleNamespace(pool=None)), settings, Metrics("orders"))
    sender, in_flight = SilentSender(), {}
    await service.deliver_due(sender, in_flight)
    await service.deliver_due(sender, in_flight)
    assert asked == [120] and len(in_flight) == 120  # full: the second turn claimed nothing
    sender.release.set()
    while in_flight:
        await service.deliver_due(sender, in_flight)
    await service.deliver_due(sender, in_flight)
    assert asked == [120, 120]  # every place free again
