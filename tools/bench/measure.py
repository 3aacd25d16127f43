"""What the benchmark measures besides the load itself: process CPU and memory, and raw
baselines of Kafka (aiokafka alone) and PostgreSQL (single-row commits)."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.kafka_clients import connection
from shared.settings import CommonSettings

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
        pid = self.pids[name]
        if name in self.with_children:
            total = _cpu_s(pid, True)
            for c in _children(pid):
                try:
                    total += _cpu_s(c)
                except OSError:
                    pass  # ended just now: its time is in the parent's cutime
            return total
        return _cpu_s(pid)

    def _mem_mib(self, name: str, children: list[int]) -> float:
        return (_pss_kib(self.pids[name]) + sum(_pss_kib(c) for c in children)) / 1024

    async def __aenter__(self) -> ProcessWatch:
        self.start_cpu = {n: self._cpu(n) for n in self.pids}
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
        now = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_s["load generator"] = round(
            now.ru_utime + now.ru_stime - self.start_self.ru_utime - self.start_self.ru_stime, 1
        )
        self.peak_mib["load generator"] = now.ru_maxrss / 1024


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
    """Messages per second to produce (acks=all, idempotent) and consume the same count."""
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
