"""A courier's stream of offers (GET /v1/courier/jobs/events) through a real server: what it
sends and when, across instances, and its limits.

Orders arrive as orders' events handed to the consumer's handler, as in test_api.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.dispatch.settings import DispatchSettings
from tests.dispatch.support import ADMIN, Courier, Dispatch, Order
from tests.support import EventStream, eventually, serving

PATH = "/v1/courier/jobs/events"


class JobsStream(EventStream):
    def __init__(self, http: httpx.AsyncClient, courier: Courier) -> None:
        super().__init__(http, PATH, courier.auth)

    def lists(self) -> list[list[dict[str, Any]]]:
        return [data["items"] for name, data in self.events if name == "jobs"]

    async def sent(self, count: int) -> list[dict[str, Any]]:
        """The `count`-th list the stream sent (waiting for it), 1 the first."""

        async def arrived() -> bool:
            return len(self.lists()) >= count

        await eventually(arrived, timeout=10, what=f"list {count} on the stream")
        return self.lists()[count - 1]


@contextlib.asynccontextmanager
async def stream_of(http: httpx.AsyncClient, courier: Courier) -> AsyncIterator[JobsStream]:
    stream = JobsStream(http, courier)
    try:
        yield stream
    finally:
        await stream.close()


async def _listening(dispatch: Dispatch) -> None:
    async def listening() -> bool:
        return dispatch.app.state.feed.listening.is_set()

    await eventually(listening, what="the change feed listening")


async def test_the_stream_sends_the_list_then_what_others_change_and_not_the_couriers_own_steps(start):
    dispatch = await start()
    courier = await dispatch.new_courier()
    await _listening(dispatch)
    async with serving(dispatch.app) as http, stream_of(http, courier) as stream:
        assert await stream.sent(1) == []
        assert stream.status == 200
        order = await dispatch.place(Order(cod_amount_vnd=0))
        offered = await stream.sent(2)  # pushed: nobody polled
        assert [(j["order_id"], j["status"]) for j in offered] == [(order.id, "offered")]
        assert offered == await dispatch.jobs(courier)  # the poll's document
        await dispatch.feed(order.cancel_event())  # the merchant cancels: the offer is withdrawn
        assert await stream.sent(3) == []

        kept = await dispatch.place(Order(cod_amount_vnd=0))
        assert [j["order_id"] for j in await stream.sent(4)] == [kept.id]
        assert (await dispatch.act(courier, kept.id, "accept")).status_code == 200
        assert (await dispatch.act(courier, kept.id, "pickup")).status_code == 200
        # The courier's own steps are answered by their calls, not by the stream: a marker
        # offer made after them must be the very next list.
        marker = await dispatch.place(Order(cod_amount_vnd=0))
        after = await stream.sent(5)
        assert {j["order_id"]: j["status"] for j in after} == {kept.id: "picked_up", marker.id: "offered"}
        assert len(stream.lists()) == 5


async def test_an_offer_made_by_another_instance_reaches_the_stream_and_so_does_its_expiry(start):
    worker = await start(offer_timeout_s=1)  # consumes, matches and expires
    api = await start(background=False)  # holds the courier's stream
    courier = await api.new_courier()
    await _listening(api)
    async with serving(api.app) as http, stream_of(http, courier) as stream:
        assert await stream.sent(1) == []
        order = await worker.place(Order(cod_amount_vnd=0))
        assert [j["order_id"] for j in await stream.sent(2)] == [order.id]
        # Unanswered, the offer expires (in the worker) and goes; then to the same courier
        # again? No: a courier is never asked twice, so the list stays empty.
        assert await stream.sent(3) == []


async def test_a_replaced_token_gets_nothing_more_on_its_open_stream(start):
    dispatch = await start(token_cache_s=0)
    courier = await dispatch.new_courier()
    await _listening(dispatch)
    async with serving(dispatch.app) as http, stream_of(http, courier) as stream:
        assert await stream.sent(1) == []
        # A new phone: a new token; the courier stays online, the old phone's stream goes quiet.
        reissued = await dispatch.client.post(f"/v1/admin/couriers/{courier.id}/token", headers=ADMIN)
        assert reissued.status_code == 201
        order = await dispatch.place(Order(cod_amount_vnd=0))
        assert await dispatch.job_status(order.id) == "offered"  # offered to them, not shown to the old phone
        await stream.finished(timeout=10)
        assert stream.lists() == [[]]


async def test_heartbeats_and_the_streams_end_after_its_time(start):
    dispatch = await start(stream_heartbeat_s=0.2, stream_max_s=1)
    courier = await dispatch.new_courier()
    async with serving(dispatch.app) as http, stream_of(http, courier) as stream:
        await stream.finished(timeout=10)
        assert stream.status == 200 and stream.lists() == [[]]
        assert stream.comments >= 2  # ": ping" every 0.2 s for a second
    assert dispatch.app.state.streams.open == 0


async def test_streams_are_limited_per_courier_and_per_process_and_need_a_courier(start):
    dispatch = await start(streams_per_courier=2, streams_max=3)
    one, other = await dispatch.new_courier(), await dispatch.new_courier(name="Lê Thị Hoa")
    async with serving(dispatch.app) as http:
        assert (await http.get(PATH)).status_code == 401
        assert (await http.get(PATH, headers={"Authorization": "Bearer ct_" + "x" * 43})).status_code == 401
        async with stream_of(http, one) as a, stream_of(http, one) as b:
            await a.sent(1), await b.sent(1)
            third = await http.get(PATH, headers=one.auth)
            assert third.status_code == 429 and third.headers["retry-after"] == "5"
            assert third.headers["content-type"] == "application/problem+json"
            async with stream_of(http, other) as c:
                await c.sent(1)
                full = await http.get(PATH, headers=other.auth)
                assert full.status_code == 503 and full.headers["retry-after"] == "5"
        # closed streams give their slots back
        await eventually(lambda: _open(dispatch, 0), what="every slot given back")
        async with stream_of(http, one) as again:
            assert await again.sent(1) == []


async def _open(dispatch: Dispatch, count: int) -> bool:
    return dispatch.app.state.streams.open == count


def test_the_process_caps_its_streams_below_its_connections():
    settings = DispatchSettings()
    # uvicorn answers 503 past limit_concurrency open connections, streams included: the
    # streams' own cap comes first, so that the couriers' calls still get through.
    assert settings.streams_max < settings.limit_concurrency
