"""What the benchmark measures besides the load itself: process CPU and memory, how long the
disk takes to make a write durable, and raw baselines of Kafka (aiokafka alone) and PostgreSQL
(single-row commits)."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.kafka_clients import connection
from shared.settings import CommonSettings
from tests.support import drop_topics

TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _cpu_s(pid: int, with_reaped_children: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime of exited children
    return ticks / TICKS


def threads_cpu_s(pid: int) -> float:
    """The process's CPU time: the nanoseconds on CPU of its threads (/proc/<pid>/task/*/schedstat),
    where /proc/<pid>/stat counts 10 ms ticks, too coarse for a few hundred calls of a few
    hundred µs. A thread that ended takes its time with it: a service's threads live as long
    as the process does."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread just ended
    return total / 1e9


def process_cpu_s(pid: int, with_children: bool = False) -> float:
    """A process's CPU seconds (clock ticks), with its children's if asked: theirs while they run
    and, once they ended, what the kernel gave the parent (PostgreSQL's backends)."""
    if not with_children:
        return _cpu_s(pid)
    total = _cpu_s(pid, True)
    for c in _children(pid):
        try:
            total += _cpu_s(c)
        except OSError:
            pass  # ended just now: its time is in the parent's cutime
    return total


def postgres_cpu_s_by_database(postmaster: int) -> dict[str, float]:
    """PostgreSQL's CPU seconds by the database its backends serve (read from each backend's
    process title, "postgres: user database host(port) state", in ns from its schedstat), and
    under "" the rest: the postmaster, its background processes and the backends that ended
    (what the kernel gave the postmaster, in clock ticks)."""
    out = {"": _cpu_s(postmaster, True)}
    for pid in _children(postmaster):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
            cpu = threads_cpu_s(pid)
        except OSError:
            continue  # ended just now: its time is in the postmaster's cutime
        backend = len(title) >= 4 and title[0] == "postgres:" and ("(" in title[3] or title[3] == "[local]")
        key = title[2] if backend else ""
        out[key] = out.get(key, 0.0) + cpu
    return out


def read_pids(root: Path) -> dict[str, int]:
    """The running processes `make up` started in this tree (a service's instances apart:
    dispatch, dispatch-2; the servers: kafka, postgres)."""
    pids = {}
    for f in sorted((root / "var" / "run").glob("*.pid")):
        pid = f.read_text().strip()
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            pids[f.stem] = int(pid)
    return pids


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class ProcessWatch:
    """CPU seconds and peak memory (PSS) of named processes, the PostgreSQL one with its backends."""

    pids: dict[str, int]
    with_children: set[str] = field(default_factory=lambda: {"postgres"})
    start_cpu: dict[str, float] = field(default_factory=dict)
    peak_mib: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def _cpu(self, name: str) -> float:
        return process_cpu_s(self.pids[name], name in self.with_children)

    def _mem_mib(self, name: str, children: list[int]) -> float:
        return (_pss_kib(self.pids[name]) + sum(_pss_kib(c) for c in children)) / 1024

    def _postgres_by_database(self) -> dict[str, float]:
        return postgres_cpu_s_by_database(self.pids["postgres"]) if "postgres" in self.pids else {}

    async def __aenter__(self) -> ProcessWatch:
        self.start_cpu = {n: self._cpu(n) for n in self.pids}
        self.start_postgres = self._postgres_by_database()
        self.start_self = resource.getrusage(resource.RUSAGE_SELF)
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        # The load generator's CPU counts against the system it measures, and reading
        # smaps_rollup walks a process's page tables in the kernel (charged to us): PostgreSQL,
        # a parent and dozens of backends sharing its buffers, is sampled every 10 s (its
        # footprint moves slowly), the other processes every 2 s.
        rounds = 0
        while True:
            for n in self.pids:
                if n in self.with_children and rounds % 5:
                    continue
                try:
                    children = _children(self.pids[n]) if n in self.with_children else []
                    self.peak_mib[n] = max(self.peak_mib.get(n, 0.0), self._mem_mib(n, children))
                except OSError:
                    pass
            rounds += 1
            await asyncio.sleep(2.0)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.cpu_s: dict[str, float | None] = {}
        for n in self.pids:
            try:
                self.cpu_s[n] = round(self._cpu(n) - self.start_cpu[n], 1)
            except OSError:  # the process ended meanwhile (restarted): no figure for it
                self.cpu_s[n] = None
        # PostgreSQL's by the database its backends serve ("" the rest: the postmaster, its
        # background processes, the backends that ended); a backend that began meanwhile from 0.
        self.postgres_cpu_s_by_database = {
            db or "other": round(cpu - self.start_postgres.get(db, 0.0), 1)
            for db, cpu in sorted(self._postgres_by_database().items(), key=lambda item: (item[0] == "", item[0]))
        }
        now = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_s["load generator"] = round(
            now.ru_utime + now.ru_stime - self.start_self.ru_utime - self.start_self.ru_stime, 1
        )
        self.peak_mib["load generator"] = now.ru_maxrss / 1024


class DiskFlushes:
    """How long the disk takes to make a write durable, all through a run: a 4 KiB write and
    `fdatasync` every 50 ms to a file in `directory` (beside PostgreSQL's and Kafka's data), in a
    thread of its own so that a slow flush blocks only it.

    Every commit waits for such a flush. The disk of the machine Giao is developed on sometimes
    takes 0.2-1.7 s over one, idle or loaded, in most minutes at some hours (docs/performance.md);
    while it does, every order being placed, offered or delivered waits with it, and a step of
    the knee's ladder (30 s, of which p99 is the slowest 0.3 s) may miss p99 < 500 ms at any rate.
    Its twenty flushes a second go beside PostgreSQL's hundreds (what they cost the system was
    not measured apart; this thread's CPU is the load generator's)."""

    def __init__(self, directory: Path, interval_s: float = 0.05) -> None:
        self.path = directory / "disk-flush-probe"
        self.interval_s = interval_s
        self.flushes: list[tuple[float, float]] = []  # (wall clock at its start, seconds it took)
        self._in_flight_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-flushes", daemon=True)

    def __enter__(self) -> DiskFlushes:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        block = os.urandom(4096)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while not self._stop.is_set():
                started = time.time()
                self._in_flight_since = started
                os.pwrite(fd, block, 0)
                os.fdatasync(fd)
                self.flushes.append((started, time.time() - started))
                self._in_flight_since = None
                self._stop.wait(self.interval_s)
        finally:
            os.close(fd)

    def longest_s(self, since: float, until: float) -> float | None:
        """The longest flush under way at some time between the two wall-clock times (one still
        under way counted until now); None if none was."""
        spans = [(at, took) for at, took in self.flushes if at < until and at + took > since]
        in_flight = self._in_flight_since
        if in_flight is not None and in_flight < until:
            spans.append((in_flight, time.time() - in_flight))
        return max((took for _, took in spans), default=None)


_PROBE = "s = 0\nfor i in range(10**7):\n    s += i\n"


def machine_probe() -> float:
    """Seconds a fresh Python process takes to count to 10**7 (the "probe" of docs/performance.md's
    figures): how fast the machine is right now. A shared machine's speed drifts (the one Giao
    is developed on: by a factor of two within an hour), and every figure of a run moves with
    it: compare runs at similar probes."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _PROBE], check=True)
    return round(time.perf_counter() - started, 2)


async def kafka_baseline(bootstrap: str, messages: int, size: int = 700) -> float:
    """Messages per second to produce (acks=all, idempotent) and consume the same count, on a
    topic of its own that it deletes afterwards (left behind, each run's would stay on the
    broker: six idle partitions and its messages, run after run)."""
    topic = f"bench.baseline.{uuid.uuid4().hex[:8]}"
    payload = b"x" * size
    # As GIAO_KAFKA_USERNAME (the Makefile gives the admin principal of deploy/local's broker).
    kafka = connection(CommonSettings(kafka_bootstrap_servers=bootstrap))
    producer = AIOKafkaProducer(**kafka, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    consumer = AIOKafkaConsumer(
        topic,
        **kafka,
        auto_offset_reset="earliest",
        group_id=f"baseline-{uuid.uuid4().hex[:6]}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    try:
        await producer.send_and_wait(topic, b"warm", key=b"0")
        await consumer.start()
        started = time.perf_counter()
        futures = [await producer.send(topic, payload, key=str(i % 1000).encode()) for i in range(messages)]
        await asyncio.gather(*futures)
        seen = 0
        while seen < messages + 1:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            seen += sum(len(v) for v in batch.values())
        return round(messages / (time.perf_counter() - started))
    finally:
        await producer.stop()
        await consumer.stop()
        await drop_topics(bootstrap, topic)


async def postgres_baseline(dsn: str, seconds: float = 5.0, connections: int = 16) -> float:
    """Single-row INSERT commits per second (each its own transaction), several connections at once."""
    table = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, payload text NOT NULL)")
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as c:
            while time.perf_counter() < deadline:
                await c.execute(f"INSERT INTO {table} (payload) VALUES ($1)", "x" * 200)
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    async with pool.acquire() as c:
        await c.execute(f"DROP TABLE {table}")
    await pool.close()
    return round(done / elapsed)
