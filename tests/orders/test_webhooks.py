"""Webhooks through the real broker and database: dispatch's events (played by the test, as in
test_flow.py) move orders along, and a local receiver gets signed deliveries."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import trustme
from standardwebhooks.webhooks import WebhookVerificationError

from services.orders import webhook_store
from services.orders.app import create_app
from services.orders.settings import OrdersSettings
from services.orders.webhook_http import HttpSender
from shared.events import DeliveryAssigned, DeliveryFailed, DeliveryPickedUp, DeliveryReturned
from tests.orders.receiver import keep_alive_receiver, receiver
from tests.orders.support import new_merchant
from tests.orders.test_flow import Dispatch, courier, place, send
from tests.support import eventually, ops_client, running

ALL_TYPES = ["order.status_changed", "order.cancellation_answered", "order.delivery_failed", "order.returned"]


@pytest.fixture
def settings(infra, database, topic_prefix) -> OrdersSettings:
    # The receiver is on 127.0.0.1 (a development setting allows it); retries come fast.
    return OrdersSettings(
        database_url=database,
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        topic_prefix=topic_prefix,
        db_pool_size=10,
        webhook_allow_private=True,
        webhook_poll_s=0.05,
        webhook_retry_schedule_s=(0.2, 0.4, 0.8),
    )


async def add_endpoint(client, merchant, url: str, types: list[str] | None = None) -> dict[str, Any]:
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": types or ALL_TYPES}, headers=merchant["headers"]
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_") and body["enabled"] is True
    return body


async def lifecycle(settings, order_id: str) -> None:
    d = Dispatch(order_id)
    await send(
        settings,
        d.next(DeliveryAssigned, 1, courier=courier()),
        d.next(DeliveryPickedUp, 2),
        d.next(DeliveryFailed, 3, reason="recipient_unreachable"),
        d.next(DeliveryReturned, 4),
    )


async def test_a_receiver_hears_every_change_signed_once_and_in_order(client, merchant, settings):
    with receiver() as hooks:
        endpoint = await add_endpoint(client, merchant, hooks.url)
        order = await place(client, merchant)
        await lifecycle(settings, order["id"])
        await eventually(lambda: _async(len(hooks.all()) >= 6), what="six deliveries")
        payloads = hooks.unique(endpoint["secret"])
    assert [(p["type"], p["data"]["status"], p["data"]["sequence"]) for p in payloads] == [
        ("order.status_changed", "assigned", 1),
        ("order.status_changed", "picked_up", 2),
        ("order.status_changed", "delivery_failed", 3),
        ("order.delivery_failed", "delivery_failed", 3),
        ("order.status_changed", "returned", 4),
        ("order.returned", "returned", 4),
    ]
    for p in payloads:
        assert p["data"]["order_id"] == order["id"] and p["data"]["external_id"] == "HM-0001"
        assert p["data"]["event_id"]
    assert payloads[3]["data"]["reason"] == "recipient_unreachable"
    assert payloads[0]["data"]["previous_status"] == "placed"
    # A wrong secret does not verify.
    with pytest.raises(WebhookVerificationError):
        hooks.all()[0].verified("whsec_" + "A" * 32)


async def test_only_subscribed_types_are_sent(client, merchant, settings):
    with receiver() as hooks:
        endpoint = await add_endpoint(client, merchant, hooks.url, ["order.returned"])
        order = await place(client, merchant)
        await lifecycle(settings, order["id"])
        await eventually(lambda: _async(len(hooks.all()) >= 1), what="the returned delivery")
        r = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=merchant["headers"])
    assert [d["event_type"] for d in r.json()["items"]] == ["order.returned"]
    assert [p["type"] for p in hooks.unique(endpoint["secret"])] == ["order.returned"]


async def test_a_failing_receiver_gets_retries_then_everything_in_order(client, merchant, settings):
    # The first three requests fail: the first delivery is retried on the schedule, and the
    # later ones of the same order wait for it.
    with receiver(answer=lambda n: 500 if n < 3 else 204) as hooks:
        endpoint = await add_endpoint(client, merchant, hooks.url, ["order.status_changed"])
        order = await place(client, merchant)
        await lifecycle(settings, order["id"])

        async def all_delivered():
            log = (
                await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=merchant["headers"])
            ).json()["items"]
            return log if len(log) == 4 and all(d["state"] == "delivered" for d in log) else None

        log = await eventually(all_delivered, what="four deliveries delivered")
        received = hooks.all()
    statuses = [r.verified(endpoint["secret"])["data"]["status"] for r in received]
    assert statuses == ["assigned"] * 4 + ["picked_up", "delivery_failed", "returned"]
    assert len({r.id for r in received[:4]}) == 1  # the same webhook-id on every attempt
    first = log[-1]
    assert first["state"] == "delivered"
    assert [a["status_code"] for a in first["attempts"]] == [500, 500, 500, 204]
    assert first["attempts"][0]["error"] == "answered 500"
    assert all(a["latency_ms"] >= 0 for a in first["attempts"])


async def test_a_receiver_that_keeps_failing_gets_its_endpoint_disabled(client, merchant, settings, app):
    with receiver(answer=lambda n: 500) as hooks:
        endpoint = await add_endpoint(client, merchant, hooks.url)
        await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=merchant["headers"])

        async def disabled():
            r = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=merchant["headers"])
            return r.json() if not r.json()["enabled"] else None

        found = await eventually(disabled, what="the endpoint disabled")
        assert len(hooks.all()) == 4  # the first attempt and three retries
    assert "failed 4 times" in found["disabled_reason"] and "answered 500" in found["disabled_reason"]
    async with ops_client(app) as ops:
        metrics = (await ops.get("/metrics")).text
    assert "orders_webhook_delivery_failures_total 4.0" in metrics
    # Enabled again by the merchant, it forgets the reason.
    r = await client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}, headers=merchant["headers"]
    )
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None


async def test_during_a_rotation_both_secrets_sign(client, merchant, settings):
    with receiver() as hooks:
        endpoint = await add_endpoint(client, merchant, hooks.url)
        r = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=merchant["headers"])
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"]
        r = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=merchant["headers"])
        assert r.status_code == 202
        ping = (await eventually(lambda: _async(hooks.all()), what="the ping"))[0]
    assert ping.id == r.json()["delivery_id"]
    assert len(ping.headers["webhook-signature"].split(" ")) == 2
    assert ping.verified(endpoint["secret"])["type"] == "ping"
    assert ping.verified(rotated["secret"])["data"] == {"endpoint_id": endpoint["id"]}


async def test_redeliver_sends_a_delivery_again(client, merchant, settings):
    with receiver() as hooks:
        endpoint = await add_endpoint(client, merchant, hooks.url)
        r = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=merchant["headers"])
        delivery_id = r.json()["delivery_id"]

        async def delivered():
            log = (
                await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=merchant["headers"])
            ).json()["items"]
            return log[0]["state"] == "delivered"

        await eventually(delivered, what="the ping delivered")
        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}/redeliver"
        assert (await client.post(path, headers=merchant["headers"])).status_code == 202
        await eventually(lambda: _async(len(hooks.all()) == 2), what="the ping again")
    assert {r.id for r in hooks.all()} == {delivery_id}


async def test_endpoints_crud_and_ownership(client, merchant, settings):
    h = merchant["headers"]
    endpoint = await add_endpoint(client, merchant, "http://127.0.0.1:9/a", ["order.returned"])
    listed = (await client.get("/v1/webhook-endpoints", headers=h)).json()
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    r = await client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}",
        json={"event_types": ["order.status_changed"], "enabled": False},
        headers=h,
    )
    assert (r.json()["event_types"], r.json()["enabled"]) == (["order.status_changed"], False)
    other = await new_merchant(client, "Another shop")
    for method in ("GET", "PATCH", "DELETE"):
        r = await client.request(
            method,
            f"/v1/webhook-endpoints/{endpoint['id']}",
            headers=other["headers"],
            json={} if method == "PATCH" else None,
        )
        assert r.status_code == 404, (method, r.text)
    r = await client.post(
        "/v1/webhook-endpoints", json={"url": "http://x.test", "event_types": ["order.placed"]}, headers=h
    )
    assert r.status_code == 422
    assert (await client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=h)).status_code == 204
    assert (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=h)).status_code == 404
    assert (await client.get("/v1/webhook-endpoints/nope", headers=h)).status_code == 404
    assert (await client.get("/v1/webhook-endpoints")).status_code == 401


async def _async(value: Any) -> Any:
    return value


async def test_two_instances_share_the_deliveries_and_send_each_once(client, merchant, settings, app):
    n = 40
    async with running(create_app(settings)):
        with receiver() as hooks:
            endpoint = await add_endpoint(client, merchant, hooks.url)
            # Queued while no worker can see them, then released to both instances' workers at once.
            async with app.state.runtime.pool.acquire() as conn:
                await conn.execute("UPDATE webhook_endpoints SET enabled = false WHERE id = $1", UUID(endpoint["id"]))
                for _ in range(n):
                    await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=merchant["headers"])
                await conn.execute("UPDATE webhook_endpoints SET enabled = true WHERE id = $1", UUID(endpoint["id"]))
            await eventually(lambda: _async(len(hooks.all()) >= n), what=f"{n} pings")
            ids = [r.id for r in hooks.all()]
    assert len(ids) == len(set(ids)) == n


async def test_finished_deliveries_are_forgotten_after_the_log_keeps_them(client, merchant, settings, app):
    # The rows are young today and the test asks about a day 29 days from now, so the app's own
    # hourly prune (which ran, or runs, at start) leaves them alone and cannot race the test.
    assert settings.webhook_log_keep_days == 30
    endpoint = await add_endpoint(client, merchant, "http://127.0.0.1:9/never", ["order.returned"])
    async with app.state.runtime.pool.acquire() as conn:
        for state, days_old in (("delivered", 2), ("failed", 2), ("pending", 2), ("delivered", 0)):
            await conn.execute(
                """INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, state, created_at,
                                                   next_attempt_at)
                   VALUES (gen_random_uuid(), $1, 'ping', '{}', $2, now() - make_interval(days => $3),
                           now() + interval '1 day')""",
                UUID(endpoint["id"]),
                state,
                days_old,
            )
    in_29_days = datetime.now(UTC) + timedelta(days=29)
    assert await app.state.webhooks.forget_finished_deliveries(now=in_29_days) == 2
    log = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=merchant["headers"])).json()
    assert sorted(d["state"] for d in log["items"]) == ["delivered", "pending"]


async def test_a_redirect_is_a_failed_attempt_not_followed(client, merchant, settings):
    with receiver(answer=lambda n: 302 if n == 0 else 200) as hooks:
        endpoint = await add_endpoint(client, merchant, hooks.url)
        await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=merchant["headers"])

        async def delivered():
            log = (
                await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=merchant["headers"])
            ).json()["items"]
            return log[0] if log and log[0]["state"] == "delivered" else None

        delivery = await eventually(delivered, what="the ping delivered")
    assert [(a["status_code"], a["error"]) for a in delivery["attempts"]] == [(302, "answered 302"), (200, None)]
    assert len(hooks.all()) == 2


async def test_a_silent_endpoint_holds_only_its_own_places(client, merchant, settings, app):
    # An endpoint that takes connections and never answers: each of its deliveries waits for the
    # timeout (10 s), at most webhook_endpoint_concurrency of them at once, and meanwhile another
    # endpoint's deliveries leave (one worker turn used to wait for its slowest delivery).
    pool = app.state.runtime.pool
    with socket.socket() as silent, receiver() as hooks:
        silent.bind(("127.0.0.1", 0))
        silent.listen(100)
        mute = await add_endpoint(client, merchant, f"http://127.0.0.1:{silent.getsockname()[1]}/hooks")
        heard = await add_endpoint(client, merchant, hooks.url)
        await pool.execute(  # more than the worker sends at once
            """INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload)
               SELECT gen_random_uuid(), $1, 'ping', '{}' FROM generate_series(1, 60)""",
            UUID(mute["id"]),
        )
        leased = """SELECT count(*) FROM webhook_deliveries
                    WHERE endpoint_id = $1 AND next_attempt_at > now() + interval '5 seconds'"""
        await eventually(lambda: pool.fetchval(leased, UUID(mute["id"])), what="the silent endpoint's deliveries sent")
        await client.post(f"/v1/webhook-endpoints/{heard['id']}/test", headers=merchant["headers"])
        await eventually(lambda: _async(hooks.all()), timeout=5.0, what="the other endpoint's ping")
        in_flight = await pool.fetchval(leased, UUID(mute["id"]))
        answered = await pool.fetchval(
            """SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
               WHERE d.endpoint_id = $1""",
            UUID(mute["id"]),
        )
    assert in_flight == settings.webhook_endpoint_concurrency
    assert answered == 0  # its first attempts were still waiting for an answer


@pytest.mark.parametrize("last_attempt", [False, True], ids=["delivered", "given-up"])
async def test_deleting_an_endpoint_with_a_delivery_in_flight_spoils_no_other_delivery(
    client, merchant, settings, app, caplog, last_attempt
):
    # One merchant deletes its endpoint while a delivery to it is in flight; that delivery's
    # answer (a 2xx, or the last failure, which disables the endpoint) has nothing left to be
    # recorded on. Another merchant's delivery, in flight meanwhile, is still recorded, once.
    worker_loggers = ("shared.service", "services.orders.webhook_service")  # its restarts, its record's failures
    for name in worker_loggers:
        caplog.set_level(logging.WARNING, logger=name)
    other = await new_merchant(client, "Another shop")
    gone_answers, other_answers = threading.Event(), threading.Event()
    with (
        receiver(answer=lambda n: 500 if last_attempt else 200, hold=gone_answers) as gone_hooks,
        receiver(hold=other_answers) as other_hooks,
    ):
        gone = await add_endpoint(client, merchant, gone_hooks.url)
        kept = await add_endpoint(client, other, other_hooks.url)
        pool = app.state.runtime.pool
        if last_attempt:  # its ping queued while the worker cannot see it, with every retry spent
            await pool.execute("UPDATE webhook_endpoints SET enabled = false WHERE id = $1", UUID(gone["id"]))
        await client.post(f"/v1/webhook-endpoints/{gone['id']}/test", headers=merchant["headers"])
        if last_attempt:
            await pool.execute("UPDATE webhook_deliveries SET attempts = 3 WHERE endpoint_id = $1", UUID(gone["id"]))
            await pool.execute("UPDATE webhook_endpoints SET enabled = true WHERE id = $1", UUID(gone["id"]))
        await client.post(f"/v1/webhook-endpoints/{kept['id']}/test", headers=other["headers"])
        await eventually(lambda: _async(gone_hooks.all() and other_hooks.all()), what="both pings in flight")
        r = await client.delete(f"/v1/webhook-endpoints/{gone['id']}", headers=merchant["headers"])
        assert r.status_code == 204

        gone_answers.set()
        counted = (
            "orders_webhook_delivery_failures_total 1.0" if last_attempt else "orders_webhook_deliveries_sent_total 1.0"
        )

        async def gone_answer_handled() -> bool:
            async with ops_client(app) as ops:
                return counted in (await ops.get("/metrics")).text or "restarting" in caplog.text

        await eventually(gone_answer_handled, what="the worker to handle the deleted endpoint's answer")
        other_answers.set()

        async def kept_recorded():
            log = (await client.get(f"/v1/webhook-endpoints/{kept['id']}/deliveries", headers=other["headers"])).json()[
                "items"
            ]
            return log[0] if log and log[0]["state"] == "delivered" else None

        delivery = await eventually(kept_recorded, timeout=5.0, what="the other merchant's ping recorded")
        assert [a["status_code"] for a in delivery["attempts"]] == [200]
        assert len(other_hooks.all()) == 1
    # Nothing ended the worker's turn, and nothing failed to be recorded.
    assert [r.getMessage() for r in caplog.records if r.name in worker_loggers and r.levelno >= logging.WARNING] == []
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", UUID(gone["id"])) == 0


async def test_recording_a_round_leaves_out_deliveries_gone_or_held_without_waiting(client, merchant, settings, app):
    # The round's statement records what it can at once: a delivery deleted since is left out
    # (no attempt row to break the foreign key), and so is one another transaction holds (an
    # endpoint's deletion, say), rather than waited for; the one-row statement then waits.
    endpoint = await add_endpoint(client, merchant, "http://127.0.0.1:9/never")
    pool = app.state.runtime.pool
    free, held, gone = uuid4(), uuid4(), uuid4()
    for delivery_id in (free, held):
        await pool.execute(
            """INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, next_attempt_at)
               VALUES ($1, $2, 'ping', '{}', now() + interval '1 day')""",
            delivery_id,
            UUID(endpoint["id"]),
        )
    now = datetime.now(UTC)
    attempts = [webhook_store.Attempt(d, now, 200, 5, None, "delivered", None) for d in (free, held, gone)]
    holder = await asyncpg.connect(settings.database_url)
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM webhook_deliveries WHERE id = $1 FOR UPDATE", held)
        recorded = await asyncio.wait_for(webhook_store.record_attempts(pool, attempts, wait=False), 5)
        assert recorded == {free}
        waiting = asyncio.create_task(webhook_store.record_attempts(pool, attempts[1:2]))
        await holding.rollback()
        assert await asyncio.wait_for(waiting, 5) == {held}
    finally:
        await holder.close()
    logged = await pool.fetch(
        "SELECT d.id, d.state, count(a.*) AS n FROM webhook_deliveries d LEFT JOIN webhook_attempts a "
        "ON a.delivery_id = d.id GROUP BY d.id, d.state"
    )
    assert {(r["id"], r["state"], r["n"]) for r in logged} == {(free, "delivered", 1), (held, "delivered", 1)}


async def test_an_attempt_postgresql_refuses_costs_the_rest_of_its_round_nothing(
    client, merchant, settings, app, caplog
):
    # A NUL in an attempt's error is text PostgreSQL refuses: the round's one statement fails,
    # and each attempt is then recorded alone; the refused one is logged and left to its lease.
    endpoint = await add_endpoint(client, merchant, "http://127.0.0.1:9/never")
    pool = app.state.runtime.pool
    rows = [
        await pool.fetchrow(
            """INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, next_attempt_at)
               VALUES ($1, $2, 'ping', '{}', now() + interval '1 day')
               RETURNING id, endpoint_id, attempts, created_at""",
            uuid4(),
            UUID(endpoint["id"]),
        )
        for _ in range(3)
    ]
    now = datetime.now(UTC)
    sent = [(rows[0], (now, 200, 5, None)), (rows[1], (now, None, 5, "bad\x00byte")), (rows[2], (now, 204, 5, None))]
    await app.state.webhooks.record_round(sent)  # raises nothing
    states = dict(
        await pool.fetch("SELECT id, state FROM webhook_deliveries WHERE endpoint_id = $1", rows[0]["endpoint_id"])
    )
    assert states == {rows[0]["id"]: "delivered", rows[1]["id"]: "pending", rows[2]["id"]: "delivered"}
    assert await pool.fetchval("SELECT count(*) FROM webhook_attempts") == 2
    assert f"webhook delivery {rows[1]['id']}: its attempt could not be recorded" in caplog.text


async def test_the_sender_closes_the_clients_it_no_longer_uses(monkeypatch):
    sender = HttpSender(timeout_s=10, per_endpoint=8)
    monkeypatch.setattr(sender, "MAX_CLIENTS", 2)
    try:
        with receiver() as hooks:
            for path in ("a", "b", "c", "a"):
                assert await sender.post(f"{hooks.url}/{path}", b"{}", {}) == 200
            # A client per URL; past MAX_CLIENTS the least recently used went (a, then b).
            assert list(sender.targets) == [f"{hooks.url}/c", f"{hooks.url}/a"]
            monkeypatch.setattr(sender, "IDLE_CLIENT_S", 0.0)
            await sender.close_unused()
            assert not sender.targets
    finally:
        await sender.aclose()


async def test_the_sender_reuses_its_connections_and_keeps_no_more_than_an_endpoint_may_use():
    sender = HttpSender(timeout_s=10, per_endpoint=3)
    try:
        async with keep_alive_receiver() as (url, served):
            for _ in range(4):
                assert await sender.post(url, b"{}", {}) == 200
            assert served == [4]  # one after the other: one connection
            assert await asyncio.gather(*(sender.post(url, b"{}", {}) for _ in range(5))) == [200] * 5
            assert sum(served) == 9 and len(served) <= 5
            assert len(sender.targets[url].idle) == 3  # kept: per_endpoint, the others closed
            before = len(served)
            for _ in range(3):
                assert await sender.post(url, b"{}", {}) == 200
            assert len(served) == before  # the kept ones served these
    finally:
        await sender.aclose()


async def test_a_connection_after_a_large_answer_is_closed_not_reused():
    sender = HttpSender(timeout_s=10, per_endpoint=3)
    try:
        async with keep_alive_receiver(answer_body=b"x" * (HttpSender.ANSWER_READ_BYTES * 4)) as (url, served):
            assert await sender.post(url, b"{}", {}) == 200
            assert await sender.post(url, b"{}", {}) == 200
            assert served[0] == -1 and abs(served[1]) == 1  # the first closed after its one answer
            assert not sender.targets[url].idle
    finally:
        await sender.aclose()


async def test_a_connection_the_receiver_closed_is_not_used_again():
    sender = HttpSender(timeout_s=10, per_endpoint=3)
    try:
        async with keep_alive_receiver(hang_up=True) as (url, served):
            assert await sender.post(url, b"{}", {}) == 200

            async def hung_up() -> bool:
                return served == [-1]

            await eventually(hung_up, what="the receiver to hang up")
            assert await sender.post(url, b"{}", {}) == 200  # on a new connection, not the closed one
            assert served[1:] in ([1], [-1])
    finally:
        await sender.aclose()


async def test_the_sender_speaks_tls_and_checks_the_receivers_certificate():
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    sender = HttpSender(timeout_s=10, per_endpoint=2)
    try:
        async with keep_alive_receiver(b"", status=204, tls=server_tls) as (url, _):
            with pytest.raises(ssl.SSLCertVerificationError):  # a certificate no public authority signed
                await sender.post(url, b"{}", {})
            authority.configure_trust(sender.tls)  # as if the test authority were a public one
            assert await sender.post(url, b"{}", {}) == 204
    finally:
        await sender.aclose()


async def test_the_sender_dials_only_the_addresses_given_and_checks_the_certificate_of_the_name():
    # The worker hands over the addresses its policy checked: the sender connects to one of them
    # (the next when one refuses) without looking the name up, and TLS still checks the name.
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("hooks.example").configure_cert(server_tls)
    sender = HttpSender(timeout_s=10, per_endpoint=2)
    authority.configure_trust(sender.tls)
    try:
        async with keep_alive_receiver(b"", status=204, tls=server_tls) as (url, _):
            port = url.rsplit(":", 1)[1].split("/")[0]
            # No DNS knows hooks.example, and nothing listens on 127.0.0.2.
            named = f"https://hooks.example:{port}/hook"
            assert await sender.post(named, b"{}", {}, addresses=["127.0.0.2", "127.0.0.1"]) == 204
            with pytest.raises(socket.gaierror):  # an address, not a name to look up
                await sender.post(f"https://hooks.example:{port}/other", b"{}", {}, addresses=["localhost"])
            with pytest.raises(ssl.SSLCertVerificationError):  # the certificate is not for that name
                await sender.post(f"https://other.example:{port}/hook", b"{}", {}, addresses=["127.0.0.1"])
    finally:
        await sender.aclose()
