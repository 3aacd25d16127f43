"""The services as real processes (`python -m services.<name>`), on free ports, with databases
and a topic prefix of their own, and TWO dispatch instances in one consumer group, sharing a
port as `make up` runs them (each also has a port of its own). Every process has an ops port of
its own too (/metrics, /healthz, /readyz).

Every test works at a spot of the map of its own (far from the others), so couriers of one
test are never candidates for another's orders.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests import ROOT
from tests.infra import Infra, free_port
from tests.support import create_databases, drop_databases, drop_topics
from tools.client import Endpoints

SERVICES = ("orders", "dispatch", "tracking")
LOGS = ROOT / "var" / "log" / "e2e"
# Short timings so that expiries happen within a test.
FAST = {
    "GIAO_DISPATCH_OFFER_TIMEOUT_S": "2",
    "GIAO_DISPATCH_WINDOW_S": "12",
    "GIAO_DISPATCH_POLL_S": "0.2",
    "GIAO_DISPATCH_MATCH_RETRY_BASE_S": "0.2",
    "GIAO_DISPATCH_MATCH_RETRY_MAX_S": "0.5",
    "GIAO_TRACKING_HEARTBEAT_S": "1",
    "GIAO_SHUTDOWN_GRACE_S": "5",
    # The test client stands in for many customers from one address (the limits per merchant
    # and per courier still apply).
    "GIAO_TRACKING_RATE_LIMIT_EXEMPT": "127.0.0.1,::1",
    "GIAO_ORDERS_RATE_LIMIT_EXEMPT": "127.0.0.1,::1",
    "GIAO_DISPATCH_RATE_LIMIT_EXEMPT": "127.0.0.1,::1",
    # Every test has a spot of its own around the world (System.spot): the whole globe is served.
    "GIAO_SERVICE_AREA": '{"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90]]]}',
}


@dataclass
class Proc:
    """One service process: started, awaited until ready, ended by SIGTERM (or killed)."""

    service: str
    port: int
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        """This process's ops port: its /metrics, /healthz and /readyz."""
        return f"http://127.0.0.1:{self.env['GIAO_OPS_PORT']}"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service}"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.service} exited with {self.popen.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.ops_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.service} not ready after {timeout}s; see {self.log}")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait: the exit code (0 for a graceful shutdown)."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else 0
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return -9

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@dataclass
class System:
    """The processes of one system, their databases and topic prefix."""

    infra: Infra
    prefix: str
    databases: dict[str, str]
    procs: dict[str, list[Proc]] = field(default_factory=dict)
    admin_token: str = "e2e-admin-token"
    shared_ports: dict[str, int] = field(default_factory=dict)  # service -> the port its instances share
    # How the services reach Kafka and PostgreSQL when not as the test does: through a proxy
    # that injects faults (tests/e2e/test_wire_faults.py). The test itself uses `infra`.
    reach: Infra | None = None
    _spots: itertools.count = field(default_factory=lambda: itertools.count())

    def endpoints(self, dispatch_instance: int | None = None) -> Endpoints:
        """Dispatch through the port its instances share, or one instance's own port."""
        dispatch = (
            self.url_of("dispatch") if dispatch_instance is None else self.procs["dispatch"][dispatch_instance].url
        )
        return Endpoints(self.url_of("orders"), dispatch, self.url_of("tracking"), self.admin_token)

    def url_of(self, service: str) -> str:
        """The service's URL: its instances' shared port, or its one instance's."""
        if service in self.shared_ports:
            return f"http://127.0.0.1:{self.shared_ports[service]}"
        return self.procs[service][0].url

    def spot(self) -> tuple[float, float]:
        """A place on the map no other test of this system uses (~100 km apart)."""
        n = next(self._spots)
        return -40.0 + (n // 30) * 1.0, -150.0 + (n % 30) * 10.0

    def _database_url(self, service: str) -> str:
        if self.reach is None:
            return self.databases[service]
        return self.reach.dsn_for(self.databases[service].rsplit("/", 1)[1])

    def add(self, service: str, extra_env: dict[str, str] | None = None) -> Proc:
        env = {
            **os.environ,
            **FAST,
            "GIAO_KAFKA_BOOTSTRAP_SERVERS": (self.reach or self.infra).kafka_bootstrap,
            "GIAO_TOPIC_PREFIX": self.prefix,
            "GIAO_ADMIN_TOKEN": self.admin_token,
            f"GIAO_{service.upper()}_DATABASE_URL": self._database_url(service),
            **(extra_env or {}),
        }
        port = free_port()  # the instance's own
        env["GIAO_OPS_PORT"] = str(free_port())
        if service in self.shared_ports:
            env[f"GIAO_{service.upper()}_PORT"] = str(self.shared_ports[service])
            env["GIAO_INSTANCE_PORT"] = str(port)
        else:
            env[f"GIAO_{service.upper()}_PORT"] = str(port)
        n = len(self.procs.setdefault(service, []))
        proc = Proc(service, port, env, LOGS / f"{self.prefix}{service}-{n}.log")
        self.procs[service].append(proc)
        proc.start()
        return proc


def start_system(
    infra: Infra, dispatch_instances: int = 2, extra_env: dict[str, str] | None = None, reach: Infra | None = None
) -> System:
    """`reach`: how the services reach the servers, if not as the test does (System.reach)."""
    tag = uuid.uuid4().hex[:8]
    names = {s: f"e2e_{tag}_{s}" for s in SERVICES}
    asyncio.run(create_databases(infra.pg_admin_dsn, list(names.values())))
    system = System(infra, f"e2e{tag}.", {s: infra.dsn_for(n) for s, n in names.items()}, reach=reach)
    if dispatch_instances > 1:
        system.shared_ports["dispatch"] = free_port()
    for service in SERVICES:
        for _ in range(dispatch_instances if service == "dispatch" else 1):
            instances = {"GIAO_DISPATCH_INSTANCES": str(dispatch_instances)} if service == "dispatch" else {}
            system.add(service, {**instances, **(extra_env or {})})
    for procs in system.procs.values():
        for p in procs:
            p.wait_ready()
    return system


def stop_cleanly(system: System) -> None:
    """Stop the system at the end of a test module, and check every service shut down cleanly."""
    codes = stop_system(system)
    assert all(c == 0 for cs in codes.values() for c in cs), f"a service did not shut down cleanly: {codes}"


def stop_system(system: System) -> dict[str, list[int]]:
    codes = {s: [p.terminate() for p in procs] for s, procs in system.procs.items()}
    asyncio.run(drop_databases(system.infra.pg_admin_dsn, [dsn.rsplit("/", 1)[1] for dsn in system.databases.values()]))
    asyncio.run(drop_topics(system.infra.kafka_bootstrap, system.prefix))
    return codes
