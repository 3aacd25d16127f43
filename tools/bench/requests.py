"""CPU per request of the services' hot routes: µs of the serving process's CPU per call.

    python -m tools.bench.requests -n 300 --pairs 3 /work/wt/base .

For each round and each source tree given (interleaved: A B A B ...), starts the three
services from that tree as processes (`python -m services.<name>`, one dispatch instance)
against Kafka and PostgreSQL found as the tests find them (tests.infra: GIAO_TEST_KAFKA_BOOTSTRAP
and GIAO_TEST_PG_DSN, else the project's local servers, started if need be, as the broker's admin
user), with databases and a topic prefix of their own; sets up a merchant, couriers online and N
orders offered to them; then sends N calls of each hot route (8 at a time, a pooled httpx
client) and reads the CPU time of the process that serves the route (/proc/<pid>/task/*/schedstat)
before the batch and after it, each time once the process is quiet again (back to its idle
rate: the events and outbox work of earlier batches, then of this one, are done). The
process's idle CPU rate (its pollers), measured once, is taken off. Wall time means nothing on
a shared machine; CPU time per request does. Prints the median per route and tree.

All three services run because a courier's jobs come from orders' events. Each route gets two
figures: the CPU of the process that serves it, and the machine's: every process's (the three
services, PostgreSQL's backends, the broker) from /proc/stat, less this tool's own and the
machine's idle rate, after the machine too is quiet again. The second is what a call costs in
all, the events it sets off included (a placement's offer, a step's way into orders and
tracking); it counts whatever else runs on the machine, so run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx

from tests.infra import free_port, kafka_server, postgres_server
from tests.support import create_databases, drop_databases, drop_topics
from tools.bench.load import ORIGIN
from tools.bench.measure import TICKS, postgres_cpu_s_by_database, process_cpu_s, read_pids, threads_cpu_s
from tools.client import Endpoints, Giao

SERVICES = ("orders", "dispatch", "tracking")
SERVERS = ("postgres", "kafka")  # when they are this tree's own (deploy/local): their CPU apart
ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "bench-admin-token"
CONCURRENCY = 8
MS = timedelta(milliseconds=1)
# Quiet: a window of QUIET_WINDOW_S in which the process spent at most its idle rate plus
# QUIET_SLACK (CPU seconds per second).
QUIET_WINDOW_S = 0.5
QUIET_SLACK = 0.02
QUIET_MAX_S = 60
# The machine's busy time counts clock ticks: its quiet allows a tick a window more.
MACHINE_QUIET_SLACK = QUIET_SLACK + 1 / TICKS / QUIET_WINDOW_S
LOGS = Path("var/log/bench-requests")  # the services' output
# route -> the process that serves it
ROUTES = {
    "POST /v1/orders": "orders",
    "GET /v1/courier/jobs": "dispatch",
    "POST …/accept": "dispatch",
    "POST …/pickup": "dispatch",
    "POST /v1/courier/locations": "dispatch",
    "POST …/deliver": "dispatch",
    "PUT /v1/courier/status": "dispatch",
    "GET /v1/tracking/{code}": "tracking",
}


def machine_busy_s() -> float:
    """CPU seconds the machine's processors spent busy since boot (/proc/stat: user, nice,
    system, irq, softirq; not idle, I/O wait or the hypervisor's steal). In clock ticks."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / TICKS


def own_cpu_s() -> float:
    """This tool's CPU (its HTTP client is the load), taken off the machine's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Figures:
    """µs of CPU per call, by route: the serving process's, and the machine's in all."""

    process: dict[str, float] = field(default_factory=dict)
    machine: dict[str, float] = field(default_factory=dict)
    # route -> where the machine's went: each service, each server when known, and the rest.
    parts: dict[str, dict[str, float]] = field(default_factory=dict)


class System:
    """The three services of one source tree, on free ports, with databases of their own."""

    def __init__(self, root: Path, kafka: str, pg_admin: str) -> None:
        self.root = root
        self.kafka = kafka
        self.pg_admin = pg_admin
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"rq{tag}."
        self.databases = {s: f"rq_{tag}_{s}" for s in SERVICES}
        self.ports = {s: free_port() for s in SERVICES}
        self.procs: dict[str, subprocess.Popen] = {}

    def python(self) -> str:
        """The tree's own interpreter (its .venv: another build may need other packages), else ours."""
        own = self.root / ".venv" / "bin" / "python"
        return str(own) if own.exists() else sys.executable

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    async def start(self) -> None:
        await create_databases(self.pg_admin, list(self.databases.values()))
        base = self.pg_admin.rpartition("/")[0]
        for service in SERVICES:
            env = {
                **os.environ,
                "GIAO_KAFKA_BOOTSTRAP_SERVERS": self.kafka,
                "GIAO_TOPIC_PREFIX": self.prefix,
                "GIAO_ADMIN_TOKEN": ADMIN_TOKEN,
                f"GIAO_{service.upper()}_DATABASE_URL": f"{base}/{self.databases[service]}",
                f"GIAO_{service.upper()}_PORT": str(self.ports[service]),
                "GIAO_DISPATCH_OFFER_TIMEOUT_S": "900",
                "GIAO_TRACKING_RATE_LIMIT_EXEMPT": "127.0.0.1,::1",
                # One merchant and a few couriers make every call here, faster than any one
                # of them may (the limiters still run on every request, as in production).
                "GIAO_ORDERS_API_KEY_RATE_PER_S": "100000",
                "GIAO_ORDERS_API_KEY_RATE_BURST": "100000",
                "GIAO_DISPATCH_COURIER_RATE_PER_S": "100000",
                "GIAO_DISPATCH_COURIER_RATE_BURST": "100000",
            }
            with (LOGS / f"{self.prefix}{service}.log").open("ab") as out:
                self.procs[service] = subprocess.Popen(  # noqa: ASYNC220 - a setup step, before any measuring
                    [self.python(), "-m", f"services.{service}"],
                    cwd=self.root,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
        async with Giao(self.endpoints()) as client:
            for service in SERVICES:
                deadline = time.monotonic() + 90
                while True:
                    if self.procs[service].poll() is not None:
                        raise RuntimeError(f"{service} of {self.root} exited; see {LOGS}")
                    try:
                        if (await client.http.get(f"{self.url(service)}/readyz")).status_code == 200:
                            break
                    except Exception:  # noqa: BLE001 - not up yet
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{service} of {self.root} not ready")
                    await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await drop_databases(self.pg_admin, list(self.databases.values()))
        await drop_topics(self.kafka, self.prefix)

    def endpoints(self) -> Endpoints:
        return Endpoints(self.url("orders"), self.url("dispatch"), self.url("tracking"), ADMIN_TOKEN)

    def cpu_s(self, service: str) -> float:
        return threads_cpu_s(self.procs[service].pid)


async def batch(calls: list[Callable[[], Awaitable[object]]]) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with sem:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def measure_round(
    root: Path, n: int, kafka: str, pg_admin: str, servers: dict[str, int] | None = None
) -> Figures:
    """µs of CPU per call, by route, for the services of `root`; `servers`: the pids of
    PostgreSQL's postmaster and the broker, if their CPU is to be told apart."""
    system = System(root, kafka, pg_admin)
    await system.start()
    try:
        async with Giao(system.endpoints()) as client:
            # uvicorn closes a connection idle for 5 s, httpx's default expiry: a pooled
            # connection could be reused just as the server closes it.
            await client.http.aclose()
            limits = httpx.Limits(max_connections=CONCURRENCY * 2, keepalive_expiry=2.0)
            client.http = httpx.AsyncClient(timeout=30, limits=limits)
            return await _measure(system, client, n, servers or {})
    finally:
        await system.stop()


Calls = list[Callable[[], Awaitable[object]]]
WARM_UP_ORDERS = 24


async def _measure(system: System, client: Giao, n: int, servers: dict[str, int]) -> Figures:
    """One order's life through every hot route: first WARM_UP_ORDERS orders unmeasured with
    couriers of their own (each process's and database's caches, the broker's compiled code, the
    consumers' first fetches), then `n` orders measured route by route."""
    key = (await client.create_merchant("Shop bench", "0912345678"))["api_key"]

    async def run(calls: Calls) -> list[object]:
        out: list[object] = []

        async def keep(call: Callable[[], Awaitable[object]]) -> None:
            out.append(await call())

        await batch([partial(keep, c) for c in calls])
        return out

    warm_couriers = await _couriers(client, WARM_UP_ORDERS, "Warm")
    await _lifecycle(client, key, warm_couriers, WARM_UP_ORDERS, lambda _route, calls: run(calls))
    lat, lng = ORIGIN
    await batch([partial(client.set_status, t, False, lat, lng) for t in warm_couriers])
    couriers = await _couriers(client, n, "Bench")

    # CPU seconds so far: each service's, PostgreSQL's by the service whose database its
    # backends serve, the broker's, and the machine's less this tool's.
    service_of = {db: service for service, db in system.databases.items()}

    def server_readings() -> dict[str, float]:
        out: dict[str, float] = {}
        if "postgres" in servers:
            by_database = postgres_cpu_s_by_database(servers["postgres"])
            for service in [*SERVICES, ""]:
                out[f"postgres {service or 'other'}"] = 0.0
            for db, cpu in by_database.items():
                key = f"postgres {service_of.get(db, 'other')}"
                out[key] += cpu
        if "kafka" in servers:
            # In clock ticks, not schedstat's ns: the broker's threads come and go, and only
            # /proc/<pid>/stat keeps the time of those that ended.
            out["kafka"] = process_cpu_s(servers["kafka"])
        return out

    def readings() -> dict[str, float]:
        return {
            **{s: system.cpu_s(s) for s in SERVICES},
            **server_readings(),
            "machine": machine_busy_s() - own_cpu_s(),
        }

    # Each one's idle rate (pollers, heartbeats, the broker's own threads): the least of a few
    # windows.
    idle = {k: float("inf") for k in readings()}
    for _ in range(6):
        before = readings()
        await asyncio.sleep(1)
        idle = {k: min(idle[k], v - before[k]) for k, v in readings().items()}

    result = Figures()

    async def quiet(service: str) -> None:
        """Until the process and the machine spend no more than their idle rates (within a
        clock tick or two)."""
        deadline = time.monotonic() + QUIET_MAX_S
        while time.monotonic() < deadline:
            before = readings()
            await asyncio.sleep(QUIET_WINDOW_S)
            rate = {k: (v - before[k]) / QUIET_WINDOW_S for k, v in readings().items()}
            if (
                rate[service] <= idle[service] + QUIET_SLACK
                and rate["machine"] <= idle["machine"] + MACHINE_QUIET_SLACK
            ):
                return

    async def timed(route: str, calls: Calls) -> list[object]:
        service = ROUTES[route]
        await quiet(service)  # the work earlier batches left (events consumed, outbox) is done
        started, before = time.monotonic(), readings()
        out = await run(calls)
        await quiet(service)  # and this batch's own
        elapsed, after = time.monotonic() - started, readings()

        def per_call(key: str) -> float:
            return (after[key] - before[key] - idle[key] * elapsed) / len(calls) * 1e6

        result.process[route] = per_call(service)
        result.machine[route] = per_call("machine")
        result.parts[route] = {k: per_call(k) for k in before if k != "machine"}
        result.parts[route]["other"] = result.machine[route] - sum(result.parts[route].values())
        return out

    await _lifecycle(client, key, couriers, n, timed)
    return result


async def _couriers(client: Giao, orders: int, name: str) -> list[str]:
    """Enough couriers online for `orders` (motorbikes take 3 jobs at once): their tokens."""
    lat, lng = ORIGIN
    tokens = []
    for i in range(-(-orders // 3)):
        tokens.append((await client.create_courier(f"Lê Văn {name}{i}", "0987654321", "motorbike"))["token"])
    await batch([partial(client.set_status, t, True, lat, lng) for t in tokens])
    return tokens


async def _lifecycle(
    client: Giao, key: str, tokens: list[str], n: int, timed: Callable[[str, Calls], Awaitable[list[object]]]
) -> None:
    """`n` orders placed, offered to these couriers and taken through every step, each route's
    calls handed to `timed` as one batch."""
    lat, lng = ORIGIN

    def order_body(i: int) -> dict:
        return {
            "pickup": {"name": "Shop", "phone": "0912345678", "address": "Cẩm Phả", "lat": lat, "lng": lng},
            "dropoff": {
                "name": "Khách",
                "phone": f"09{i:08d}",
                "address": "Cẩm Phả",
                "lat": lat + 0.01,
                "lng": lng + 0.01,
            },
            "parcel": {"weight_grams": 900},
            "cod_amount_vnd": 0,
        }

    placed = await timed("POST /v1/orders", [partial(client.place_order, key, order_body(i)) for i in range(n)])
    codes = {o["id"]: o["delivery_code"] for o in placed}  # type: ignore[index]
    tracking = [o["tracking_code"] for o in placed]  # type: ignore[index]

    # Every order offered to a courier (not measured), then each step of the job.
    owner: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while len(owner) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(owner)} of {n} orders were offered")
        await asyncio.sleep(1)
        lists = await asyncio.gather(*(client.jobs(t) for t in tokens))
        for token, jobs in zip(tokens, lists, strict=True):
            owner.update({j["order_id"]: token for j in jobs if j["order_id"] in codes})
    offered = list(owner.items())
    turns = [tokens[i % len(tokens)] for i in range(n)]  # each courier in turn, n calls
    await timed("GET /v1/courier/jobs", [partial(client.jobs, t) for t in turns])
    await timed("POST …/accept", [partial(client.job_action, t, o, "accept") for o, t in offered])
    await timed("POST …/pickup", [partial(client.job_action, t, o, "pickup") for o, t in offered])
    # Each point newer than the courier's last, as a moving phone's are (a point as old as the
    # position held is not kept, and costs another statement to say so).
    start = datetime.now(UTC) - timedelta(seconds=2)
    await timed(
        "POST /v1/courier/locations",
        [
            partial(client.send_locations, t, [{"lat": lat, "lng": lng, "at": (start + i * MS).isoformat()}])
            for i, t in enumerate(turns)
        ],
    )
    await timed(
        "POST …/deliver",
        [
            partial(client.job_action, t, o, "deliver", {"delivery_code": codes[o], "cod_collected_vnd": 0})
            for o, t in offered
        ],
    )
    await timed(
        "PUT /v1/courier/status",
        [partial(client.set_status, t, True, lat, lng) for t in turns],
    )
    await timed("GET /v1/tracking/{code}", [partial(client.track, c) for c in tracking])


async def main(args: argparse.Namespace) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any measuring
    with postgres_server() as postgres, kafka_server() as broker:
        pids = read_pids(ROOT) if postgres.local and broker.local else {}
        servers = {name: pids[name] for name in SERVERS if name in pids}
        await compare(args, broker.bootstrap, postgres.admin_dsn, servers)


async def compare(args: argparse.Namespace, kafka: str, pg_admin: str, servers: dict[str, int]) -> None:
    roots: list[Path] = args.roots
    runs: dict[Path, list[Figures]] = {r: [] for r in roots}
    for round_no in range(args.pairs):
        for root in roots:
            figures = await measure_round(root, args.n, kafka, pg_admin, servers)
            runs[root].append(figures)
            names = [*next(iter(figures.parts.values()), {})]
            print(f"round {round_no + 1} {root}: µs per call, the machine's = " + " + ".join(names), flush=True)
            for route, machine in figures.machine.items():
                parts = " + ".join(f"{v:.0f}" for v in figures.parts[route].values())
                print(f"  {route}: {machine:.0f} = {parts}", flush=True)
    for title, of in (
        ("the serving process's CPU", lambda f: f.process),
        ("the machine's CPU (every process but this tool)", lambda f: f.machine),
    ):
        print(f"\nmedian µs of {title} per call")
        print("| route | " + " | ".join(str(r) for r in roots) + " |")
        print("| --- |" + " --- |" * len(roots))
        for route in ROUTES:
            cells = [statistics.median(of(f)[route] for f in runs[r]) for r in roots]
            change = f" ({(cells[-1] / cells[0] - 1) * 100:+.0f}%)" if len(cells) > 1 and cells[0] > 0 else ""
            print(f"| {route} | " + " | ".join(f"{c:.0f}" for c in cells) + change + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "roots",
        nargs="+",
        type=lambda r: Path(r).resolve(),
        help="source trees to compare (each runs its own services)",
    )
    parser.add_argument("-n", type=int, default=300, help="calls per route (and orders) per round")
    parser.add_argument("--pairs", type=int, default=3, help="rounds; each runs every tree once, in turn")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
