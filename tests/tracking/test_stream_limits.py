"""The limits on SSE streams through a real server: a burst from one client, the cap of the
process, and who a client is (IPv6 networks, addresses forwarded by trusted proxies)."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.requests import Request

from services.tracking.live import Streams, change_feed
from services.tracking.settings import TrackingSettings
from shared.live import StreamsFull
from shared.ratelimit import AddressLimits
from shared.service import uvicorn_config
from tests.infra import free_port
from tests.support import eventually, serving
from tests.tracking.stories import Story
from tests.tracking.support import Stream, running, send


async def _known(settings, http: httpx.AsyncClient) -> Story:
    story = Story()
    await send(settings, story.placed())

    async def visible():
        return (await http.get(f"/v1/tracking/{story.code}")).status_code == 200

    await eventually(visible, what="the parcel to be projected")
    return story


async def _open_at_once(http: httpx.AsyncClient, code: str, count: int) -> tuple[list[Stream], list[int]]:
    streams = [Stream(http, code) for _ in range(count)]

    async def all_answered():
        return all(s.status is not None for s in streams)

    await eventually(all_answered, what="every stream answered")
    return streams, sorted(s.status or 0 for s in streams)


async def _close(streams: list[Stream]) -> None:
    await asyncio.gather(*(s.close() for s in streams))


async def test_a_burst_of_stream_openings_gets_no_more_than_the_clients_limit(settings):
    # The count used to be taken after the lookup's awaits: 50 openings at once all passed it.
    limited = settings.model_copy(update={"sse_max_streams_per_client": 20})
    async with running(limited) as app, serving(app) as http:
        story = await _known(limited, http)
        streams, statuses = await _open_at_once(http, story.code, 50)
        try:
            assert statuses == [200] * 20 + [429] * 30
            assert app.state.streams.open == 20
        finally:
            await _close(streams)

        async def all_released():
            return app.state.streams.open == 0

        await eventually(all_released, what="the slots of closed streams released")
        again, statuses = await _open_at_once(http, story.code, 1)
        await _close(again)
        assert statuses == [200]


async def test_the_process_caps_its_open_streams_with_503(settings):
    capped = settings.model_copy(update={"sse_max_streams": 3, "sse_max_streams_per_client": 20})
    async with running(capped) as app, serving(app) as http:
        story = await _known(capped, http)
        streams, statuses = await _open_at_once(http, story.code, 3)
        try:
            assert statuses == [200] * 3
            refused = await http.get(f"/v1/tracking/{story.code}/events")
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
            assert refused.headers["content-type"].startswith("application/problem+json")
        finally:
            await _close(streams)
        assert app.state.streams.open <= 3


async def test_a_refused_or_unknown_stream_gives_its_slot_back(settings):
    async with running(settings.model_copy(update={"sse_max_streams_per_client": 1})) as app, serving(app) as http:
        for _ in range(3):
            assert (await http.get("/v1/tracking/ZZZZZZZZZZZZ/events")).status_code == 404
        assert app.state.streams.open == 0


# --- without a server ----------------------------------------------------------------------------


def _streams(**limits) -> Streams:
    feed = change_feed("postgresql://unused", lambda: None)  # type: ignore[arg-type,return-value]
    gauge = Gauge("streams", "Open streams", registry=CollectorRegistry())
    return Streams(feed, lambda: None, max_stream_s=60, gauge=gauge, **limits)  # type: ignore[arg-type,return-value]


def test_slots_are_counted_per_client_and_for_the_process():
    streams = _streams(max_per_client=2, max_open=3)
    a1, a2 = streams.reserve("a", exempt=False), streams.reserve("a", exempt=False)
    try:
        streams.reserve("a", exempt=False)
        raise AssertionError("a third stream of one client")
    except StreamsFull as full:
        assert not full.everyone
    exempt = streams.reserve("a", exempt=True)  # exempt from the client's limit, not the process's
    try:
        streams.reserve("b", exempt=True)
        raise AssertionError("over the process's cap")
    except StreamsFull as full:
        assert full.everyone
    a1.release()
    a1.release()  # twice is once
    assert streams.open == 2
    streams.reserve("b", exempt=False)
    a2.release()
    exempt.release()
    assert streams.open == 1


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 5000)})


def limits(**settings: str) -> AddressLimits:
    refused = Counter("refused", "Requests refused", registry=CollectorRegistry())
    s = TrackingSettings(**settings)
    return AddressLimits(s.rate_limit_per_s, s.rate_limit_burst, exempt=s.exempt_networks(), refused=refused)


def test_ipv6_clients_are_keyed_by_their_64():
    lim = limits(rate_limit_exempt="::1")
    one, other = lim.client_of(request("2001:db8:1:2::1")), lim.client_of(request("2001:db8:1:2:ffff::9"))
    assert one == other == "2001:db8:1:2::/64", "one household's (or one attacker's) /64 is one client"
    assert lim.client_of(request("2001:db8:1:3::1")) != one
    assert lim.client_of(request("203.0.113.7")) == "203.0.113.7"
    assert lim.client_of(request("::ffff:203.0.113.7")) == "203.0.113.7", "an IPv4 client over IPv6"
    assert lim.is_exempt(lim.client_of(request("::1"))), "an exempt address stays exempt"
    assert lim.client_of(request("203.0.113.7", "198.51.100.1")) == "203.0.113.7", "X-Forwarded-For is uvicorn's"


async def _statuses(http: httpx.AsyncClient, *forwarded_for: str) -> list[int]:
    return [
        (await http.get("/v1/tracking/ZZZZZZZZZZZZ", headers={"X-Forwarded-For": f})).status_code for f in forwarded_for
    ]


async def test_x_forwarded_for_is_believed_only_from_trusted_proxies(settings):
    # One request per client: a second from the same client is 429.
    strict = settings.model_copy(update={"rate_limit_per_s": 0.001, "rate_limit_burst": 1})
    behind_proxy = strict.model_copy(update={"trusted_proxies": "127.0.0.1/32, 10.0.0.0/8"})
    async with running(behind_proxy) as app, serving(app, uvicorn_config(app, behind_proxy, free_port())) as http:
        # The right-most address outside our proxies is the client; what it wrote to the left
        # of it is not believed, and an address of our own proxies is passed over.
        assert await _statuses(
            http, "198.51.100.1, 203.0.113.7", "198.51.100.1, 203.0.113.8", "6.6.6.6, 203.0.113.7, 10.0.0.2"
        ) == [404, 404, 429]
    direct = strict.model_copy(update={"trusted_proxies": ""})
    async with running(direct) as app, serving(app, uvicorn_config(app, direct, free_port())) as http:
        # Nobody is trusted (the default, whatever uvicorn's own default): the peer is the client.
        assert await _statuses(http, "203.0.113.7", "203.0.113.8") == [404, 429]


def test_every_service_runs_with_a_concurrency_limit():
    settings = TrackingSettings()
    config = uvicorn_config(FastAPI(), settings, 8003)
    assert config.limit_concurrency == settings.limit_concurrency == 1000
    assert not config.proxy_headers, "no proxy trusted by default"
    assert settings.sse_max_streams < settings.limit_concurrency, "GETs get through when streams are at their cap"
