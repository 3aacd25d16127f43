"""CPU per request of the services' hot routes: µs of the serving process's CPU per call.

    python -m tools.bench.requests -n 300 --pairs 3 /work/wt/base .

For each round and each source tree given (interleaved: A B A B ...), starts the three
services from that tree as processes (`python -m services.<name>`, one dispatch instance)
against the shared test Kafka and PostgreSQL (GIAO_TEST_KAFKA_BOOTSTRAP, GIAO_TEST_PG_DSN),
with databases and a topic prefix of their own; sets up a merchant, couriers online and N
orders offered to them; then sends N calls of each hot route (8 at a time, a pooled httpx
client) and reads the CPU time of the process that serves the route from /proc/<pid>/stat
before the batch and half a second after it (its outbox and events finish by then). The
process's idle CPU rate (its pollers), measured once, is taken off. Wall time means nothing on
a shared machine; CPU time per request does. Prints the median per route and tree.

All three services run because a courier's jobs come from orders' events; each figure is the
CPU of one process only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from tests.infra import free_port
from tests.support import create_databases, drop_databases, drop_topics
from tools.bench.load import ORIGIN
from tools.bench.measure import _cpu_s
from tools.client import Endpoints, Giao

SERVICES = ("orders", "dispatch", "tracking")
ADMIN_TOKEN = "bench-admin-token"
CONCURRENCY = 8
SETTLE_S = 0.5
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

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    async def start(self) -> None:
        await create_databases(self.pg_admin, list(self.databases.values()))
        base = self.pg_admin.rpartition("/")[0]
        log_dir = Path("var/log/bench-requests")
        log_dir.mkdir(parents=True, exist_ok=True)
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
            }
            with (log_dir / f"{self.prefix}{service}.log").open("ab") as out:
                self.procs[service] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{service}"],
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
                        raise RuntimeError(f"{service} of {self.root} exited; see {log_dir}")
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
        return _cpu_s(self.procs[service].pid)


async def batch(calls: list[Callable[[], Awaitable[object]]]) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with sem:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def measure_round(root: Path, n: int, kafka: str, pg_admin: str) -> dict[str, float]:
    """µs of CPU per call, by route, for the services of `root`."""
    system = System(root, kafka, pg_admin)
    await system.start()
    try:
        async with Giao(system.endpoints(), max_connections=CONCURRENCY * 2) as client:
            return await _measure(system, client, n)
    finally:
        await system.stop()


async def _measure(system: System, client: Giao, n: int) -> dict[str, float]:
    lat, lng = ORIGIN
    key = (await client.create_merchant("Shop bench", "0912345678"))["api_key"]
    tokens = []
    for i in range(-(-n // 3)):  # motorbikes take 3 jobs at once
        tokens.append((await client.create_courier(f"Lê Văn Bench{i}", "0987654321", "motorbike"))["token"])
    await batch([lambda t=t: client.set_status(t, True, lat, lng) for t in tokens])
    await asyncio.sleep(2)
    idle = {}
    before = {s: system.cpu_s(s) for s in SERVICES}
    await asyncio.sleep(4)
    for s in SERVICES:
        idle[s] = (system.cpu_s(s) - before[s]) / 4

    result: dict[str, float] = {}

    async def timed(route: str, calls: list[Callable[[], Awaitable[object]]]) -> list[object]:
        service = ROUTES[route]
        out: list[object] = []

        async def keep(call: Callable[[], Awaitable[object]]) -> None:
            out.append(await call())

        started, cpu = time.monotonic(), system.cpu_s(service)
        await batch([lambda c=c: keep(c) for c in calls])
        await asyncio.sleep(SETTLE_S)
        spent = system.cpu_s(service) - cpu - idle[service] * (time.monotonic() - started)
        result[route] = spent / len(calls) * 1e6
        return out

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

    placed = await timed("POST /v1/orders", [lambda i=i: client.place_order(key, order_body(i)) for i in range(n)])
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
    jobs = list(owner.items())
    await timed("GET /v1/courier/jobs", [lambda t=tokens[i % len(tokens)]: client.jobs(t) for i in range(n)])
    await timed("POST …/accept", [lambda o=o, t=t: client.job_action(t, o, "accept") for o, t in jobs])
    await timed("POST …/pickup", [lambda o=o, t=t: client.job_action(t, o, "pickup") for o, t in jobs])
    at = datetime.now(UTC).isoformat()
    await timed(
        "POST /v1/courier/locations",
        [
            lambda t=tokens[i % len(tokens)]: client.send_locations(t, [{"lat": lat, "lng": lng, "at": at}])
            for i in range(n)
        ],
    )
    await timed(
        "POST …/deliver",
        [
            lambda o=o, t=t: client.job_action(t, o, "deliver", {"delivery_code": codes[o], "cod_collected_vnd": 0})
            for o, t in jobs
        ],
    )
    await timed(
        "PUT /v1/courier/status", [lambda t=tokens[i % len(tokens)]: client.set_status(t, True, lat, lng) for i in range(n)]
    )
    await timed("GET /v1/tracking/{code}", [lambda c=c: client.track(c) for c in tracking])
    return result


async def main(args: argparse.Namespace) -> None:
    kafka = os.environ.get("GIAO_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    pg_admin = os.environ.get("GIAO_TEST_PG_DSN", "postgresql://giao:giao@127.0.0.1:5432/postgres")
    roots = [Path(r).resolve() for r in args.roots]
    runs: dict[Path, list[dict[str, float]]] = {r: [] for r in roots}
    for round_no in range(args.pairs):
        for root in roots:
            figures = await measure_round(root, args.n, kafka, pg_admin)
            runs[root].append(figures)
            print(f"round {round_no + 1} {root}: " + ", ".join(f"{k} {v:.0f}" for k, v in figures.items()), flush=True)
    print("\nmedian µs of the serving process's CPU per call")
    print("| route | " + " | ".join(str(r) for r in roots) + " |")
    print("| --- |" + " --- |" * len(roots))
    for route in ROUTES:
        cells = [statistics.median(f[route] for f in runs[r]) for r in roots]
        change = f" ({(cells[-1] / cells[0] - 1) * 100:+.0f}%)" if len(cells) > 1 and cells[0] > 0 else ""
        print(f"| {route} | " + " | ".join(f"{c:.0f}" for c in cells) + change + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", help="source trees to compare (each runs its own services)")
    parser.add_argument("-n", type=int, default=300, help="calls per route (and orders) per round")
    parser.add_argument("--pairs", type=int, default=3, help="rounds; each runs every tree once, in turn")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
