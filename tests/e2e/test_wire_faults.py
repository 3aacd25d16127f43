"""Faults on the wire under steady load: nothing accepted is lost, nothing is applied twice.

The services run as processes and reach Kafka and PostgreSQL only through Toxiproxy (Kafka: a
broker of the test's own, advertised at the proxy's port; tests/e2e/wire.py says why), while
merchants place orders at a steady rate and couriers work them. In turn:

| link                 | fault                                   | held  |
| -------------------- | --------------------------------------- | ----- |
| Kafka and PostgreSQL | 500 ms latency on every answer          | 6 s   |
| Kafka and PostgreSQL | every connection reset (reset_peer)     | 5 s   |
| Kafka                | 10 KB/s each way                        | 8 s   |
| Kafka                | blackhole: nothing passes either way    | 30 s  |
| PostgreSQL           | blackhole: nothing passes either way    | 30 s  |

The bandwidth limit runs on Kafka only: PostgreSQL's answers here are a few hundred bytes, so
at 10 KB/s it is another latency, which the latency fault already covers. Latency and resets
hit both links at once; the blackhole runs on each link alone, because each fails differently: the services keep
taking orders while Kafka is away (the outbox grows, and /metrics must show it) and cannot
while PostgreSQL is (requests and consumers wait on a database that does not answer).
A blackhole drops what is sent (Toxiproxy's `timeout` toxic); when it ends, the connections
that lost data are reset, as a stateful firewall that forgot them would do: no TCP stream
survives data silently dropped from its middle.

After each fault ends, every order accepted so far reaches, within RECOVERY_S, the status its
courier drove it to in all three services, with no status twice in its history; no courier is
over capacity. While a blackhole lasts, /readyz is red naming the link. At the end every event
on the topics was applied exactly once by each consumer (tests/e2e/steady_load.py).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.steady_load import FINAL, Load, invariants_hold, no_event_lost, why_not_final
from tests.e2e.system import System, start_system, stop_system
from tests.e2e.wire import Proxy, broker_behind, proxies, start_toxiproxy, through, upstream_of
from tests.infra import Infra, Kafka, free_port
from tests.support import eventually
from tools.client import Giao

# A broker of its own and the services to start (under a minute on an idle 2-core machine,
# three with a load average of 25), then the matrix (three to five minutes).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

# After a fault ends, every order accepted so far is final everywhere within this. The longest
# is after the blackhole of Kafka: orders were taken all along (about 60 at 2/s) and reach the
# couriers all at once when it ends. Measured on the 2-core machine with a load average of 30
# (other work beside): 8 to 16 s after latency, resets and the bandwidth limit, 25 s after
# Kafka's blackhole, 8 s after PostgreSQL's; the matrix took 214 s.
RECOVERY_S = 60.0
BLACKHOLE_S = 30.0
ENV = {
    "GIAO_DISPATCH_WINDOW_S": "300",  # longer than any fault: every order is driven by a courier
    "GIAO_HEALTH_EVERY_S": "1",
}


@dataclass
class Fault:
    link: str  # "kafka" or "postgres"
    name: str
    held_s: float
    inject: Callable[[Proxy], Awaitable[object]]
    blackhole: bool = False
    also: tuple[str, ...] = ()  # further links given the same fault at the same time

    @property
    def links(self) -> tuple[str, ...]:
        return (self.link, *self.also)

    @property
    def label(self) -> str:
        return f"{' and '.join(self.links)} {self.name}"


def _latency(proxy: Proxy) -> Awaitable[str]:
    return proxy.add("latency", "downstream", latency=500)


def _resets(proxy: Proxy) -> Awaitable[str]:
    return proxy.add("reset_peer", "upstream", timeout=0)


def _bandwidth(proxy: Proxy) -> Awaitable[None]:
    return proxy.add_both_ways("bandwidth", rate=10)  # KB/s


def _blackhole(proxy: Proxy) -> Awaitable[None]:
    return proxy.add_both_ways("timeout", timeout=0)  # drops everything, closes nothing


# Latency and resets hit both links at once (one recovery to wait for, not two: the suite's
# time); each blackhole has a link to itself, as readiness must name the one that is down.
MATRIX = (
    Fault("kafka", "latency 500 ms", 6, _latency, also=("postgres",)),
    Fault("kafka", "connection resets", 5, _resets, also=("postgres",)),
    Fault("kafka", "bandwidth 10 KB/s", 8, _bandwidth),
    Fault("kafka", "blackhole 30 s", BLACKHOLE_S, _blackhole, blackhole=True),
    Fault("postgres", "blackhole 30 s", BLACKHOLE_S, _blackhole, blackhole=True),
)


async def test_faults_on_the_wire_lose_nothing(infra: Infra) -> None:
    toxiproxy = await asyncio.to_thread(start_toxiproxy)
    tag = uuid.uuid4().hex[:8]
    kafka_proxied = free_port()
    upstreams = {"kafka": f"127.0.0.1:{kafka_proxied}", "postgres": upstream_of(infra.postgres)}
    async with proxies(toxiproxy, f"giao_{tag}", upstreams) as proxy:
        with broker_behind(kafka_proxied, proxy["kafka"].listen_port, tag) as kafka:
            direct = Infra(infra.postgres, kafka)
            reach = Infra(
                through(infra.postgres, proxy["postgres"].listen_port),
                Kafka(f"127.0.0.1:{proxy['kafka'].listen_port}"),
            )
            # One dispatch instance: the faults are on the wire; the crash tests cover two.
            system = await asyncio.to_thread(start_system, direct, 1, ENV, reach)
            try:
                await _run_matrix(system, proxy)
            finally:
                await asyncio.to_thread(stop_system, system)


async def _run_matrix(system: System, proxy: dict[str, Proxy]) -> None:
    # The probes of /readyz and /metrics open a connection each: a kept-alive one that the
    # service closes meanwhile fails the next request ("Server disconnected").
    probes = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
    async with Giao(system.endpoints()) as client, probes as http:
        load = Load(system, client, couriers=6, rate=2.0)
        await load.setup()
        placer = asyncio.create_task(load.place())
        couriers = [asyncio.create_task(load.courier(t)) for t in load.tokens]
        confirmed: set[str] = set()

        async def all_final(orders: set[str]) -> bool:
            """Each order is final, the same in all three services, no status twice."""
            pending = sorted(orders - confirmed)
            # Those their couriers finished, up to the first one still under way.
            finished = list(itertools.takewhile(lambda oid: load.expected.get(oid) in FINAL, pending))
            merchant_sees = await load.merchant_orders() if finished else {}  # a page a request
            for oid in finished:
                expected = load.expected[oid]
                o = merchant_sees[oid]
                try:
                    t = await client.parcel(load.orders[oid]["tracking_code"])  # {}: tracking behind
                    j = await client.admin_job(oid)
                except httpx.TransportError:  # a kept-alive connection the service just closed
                    return False
                if not o["status"] == t.get("status") == j["status"] == expected:
                    return False
                history = [h["status"] for h in o["history"]]
                timeline = [h["status"] for h in t["timeline"]]
                assert len(history) == len(set(history)), (oid, history)
                assert len(timeline) == len(set(timeline)), (oid, timeline)
                assert sum(1 for off in j["offers"] if off.get("state") == "accepted") <= 1, j
                confirmed.add(oid)
            return len(finished) == len(pending)

        recoveries: dict[str, float] = {}
        matrix_started = time.monotonic()
        for fault in MATRIX:
            await eventually(_more_orders(load, 3), timeout=60, what="load going on")
            links = [proxy[name] for name in fault.links]
            _say(f"{fault.label}: on ({len(load.orders)} orders so far)")
            for link in links:
                await fault.inject(link)
            if fault.blackhole:
                await _red_while_blackholed(system, http, fault)
            else:
                await asyncio.sleep(fault.held_s)
            for link in links:
                await link.clear()
                if fault.blackhole:
                    await link.reset_connections()
            healed = time.monotonic()
            accepted = set(load.orders)
            progress = asyncio.create_task(_progress(system, http, load, accepted))
            try:
                await eventually(
                    functools.partial(all_final, accepted),
                    timeout=RECOVERY_S,
                    interval=0.5,
                    what=f"every order accepted before the end of {fault.label} to be final everywhere",
                )
            except AssertionError as exc:
                why = await why_not_final(system, client, load, accepted, couriers)
                raise AssertionError(f"{exc}\n{why}") from None
            finally:
                progress.cancel()
            recoveries[fault.label] = time.monotonic() - healed
            _say(f"{fault.label}: recovered in {time.monotonic() - healed:.1f} s")
            await _ready(system, http)
            await invariants_hold(system)
        matrix_s = time.monotonic() - matrix_started

        load.placing = False
        await placer
        last = functools.partial(all_final, set(load.orders))
        await eventually(last, timeout=RECOVERY_S, interval=0.5, what="the last orders")
        load.stop.set()
        await asyncio.gather(*couriers)
    report = ", ".join(f"{name}: {s:.1f} s" for name, s in recoveries.items())
    _say(f"matrix {matrix_s:.0f} s, {len(load.orders)} orders; recovery after {report}")
    assert len(load.orders) >= 40
    await no_event_lost(system)
    await invariants_hold(system)


async def _red_while_blackholed(system: System, http: httpx.AsyncClient, fault: Fault) -> None:
    """Hold the blackhole, asking /readyz meanwhile: red (503, naming the link) from a few
    seconds in until it ends; with Kafka away, orders' outbox backlog shows on /metrics."""
    orders = system.procs["orders"][0].ops_url  # /readyz and /metrics: the ops port
    started = time.monotonic()
    answers: list[tuple[float, int, dict]] = []
    while (elapsed := time.monotonic() - started) < fault.held_s - 6:
        r = await http.get(f"{orders}/readyz")
        answers.append((elapsed, r.status_code, r.json().get("checks", {})))
        await asyncio.sleep(1)
    late = [(at, status, checks) for at, status, checks in answers if at >= 3]
    assert late and all(status == 503 and fault.link in checks for _, status, checks in late), answers
    if fault.link == "kafka":
        text = (await http.get(f"{orders}/metrics")).text
        seen = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
        assert seen.get("giao_outbox_backlog", 0) > 0, "orders placed meanwhile wait in the outbox"
        assert seen.get("giao_outbox_oldest_seconds", 0) > 5, seen.get("giao_outbox_oldest_seconds")
    await asyncio.sleep(max(0.0, fault.held_s - (time.monotonic() - started)))


async def _progress(system: System, http: httpx.AsyncClient, load: Load, accepted: set[str]) -> None:
    """While orders catch up after a fault: how many couriers finished, the outboxes and the
    consumers' lag, every 3 s."""
    while True:
        await asyncio.sleep(3)
        seen = []
        for service, procs in system.procs.items():
            try:
                text = (await http.get(f"{procs[0].ops_url}/metrics")).text
            except httpx.HTTPError:
                continue
            samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
            backlog = sum(s.value for s in samples if s.name == "giao_outbox_backlog")
            lag = sum(s.value for s in samples if s.name == "giao_consumer_lag")
            seen.append(f"{service} outbox {backlog:.0f} lag {lag:.0f}")
        done = sum(1 for o in accepted if load.expected.get(o) in FINAL)
        _say(f"  {done}/{len(accepted)} finished by their couriers; " + ", ".join(seen))


async def _ready(system: System, http: httpx.AsyncClient) -> None:
    async def all_ready() -> bool:
        for procs in system.procs.values():
            for p in procs:
                if (await http.get(f"{p.url}/readyz")).status_code != 200:
                    return False
        return True

    await eventually(all_ready, timeout=RECOVERY_S, interval=0.5, what="every service ready again")


def _say(what: str) -> None:
    """Progress, on the terminal with `pytest -s` and in the report of a failure."""
    print(f"{time.strftime('%H:%M:%S')} wire faults: {what}", flush=True)


def _more_orders(load: Load, n: int) -> Callable[[], Awaitable[bool]]:
    before = len(load.orders)

    async def placed() -> bool:
        return len(load.orders) >= before + n

    return placed
