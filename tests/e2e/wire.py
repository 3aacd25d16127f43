"""Faults on the wire: Toxiproxy (deploy/local/toxiproxy.sh) between the services and their
servers, driven through its HTTP API, and a Kafka broker of the test's own whose clients are
led through the proxy.

Why a broker of its own: a Kafka client connects to the bootstrap address only to ask for
metadata, then to the addresses the broker advertises. A proxy in front of a broker that
advertises its own port would be left after the first request. The broker started here has a
second listener advertised at the proxy's port (GIAO_KAFKA_PROXIED_* in deploy/local/kafka.sh),
so the services' every connection goes through the proxy, while the test reads topics
through the plain listener, unaffected by the faults.

The Python clients of Toxiproxy on PyPI (toxiproxy-python 0.1.1, 2019) are unmaintained; its
API is a few JSON calls, made here with httpx.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests import ROOT
from tests.infra import Kafka, Postgres, free_port


def toxiproxy_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('GIAO_TOXIPROXY_PORT', '8474')}"


def start_toxiproxy() -> str:
    """The API's URL of the project's Toxiproxy, started if it is not running (built once
    from its Go module, which needs the Go toolchain: skipped without it, failed under CI)."""
    if not (shutil.which("go") or Path("/usr/local/go/bin/go").exists()):
        reason = "the Go toolchain is needed to build Toxiproxy (deploy/local/toxiproxy.sh)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    subprocess.run([str(ROOT / "deploy/local/toxiproxy.sh"), "start"], check=True, timeout=900)
    return toxiproxy_url()


@dataclass
class Proxy:
    """One proxy of a Toxiproxy server: `listen` (what clients connect to) -> `upstream`."""

    api: httpx.AsyncClient
    name: str
    listen_port: int
    upstream: str

    async def add(self, kind: str, stream: str = "downstream", **attributes: Any) -> str:
        """Add a toxic (latency, timeout, reset_peer, bandwidth, ...) on one direction; its name."""
        name = f"{kind}_{stream}"
        r = await self.api.post(
            f"/proxies/{self.name}/toxics",
            json={"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes},
        )
        r.raise_for_status()
        return name

    async def add_both_ways(self, kind: str, **attributes: Any) -> None:
        for stream in ("upstream", "downstream"):
            await self.add(kind, stream, **attributes)

    async def clear(self) -> None:
        """Remove every toxic."""
        r = await self.api.get(f"/proxies/{self.name}/toxics")
        r.raise_for_status()
        for toxic in r.json():
            (await self.api.delete(f"/proxies/{self.name}/toxics/{toxic['name']}")).raise_for_status()

    async def reset_connections(self) -> None:
        """Close every connection through the proxy (disabled, then enabled again at once)."""
        for enabled in (False, True):
            (await self.api.post(f"/proxies/{self.name}", json={"enabled": enabled})).raise_for_status()


@contextlib.asynccontextmanager
async def proxies(url: str, tag: str, upstreams: dict[str, str]) -> Any:
    """A proxy per upstream ("kafka": "127.0.0.1:9092", ...) on a free port, removed at the end."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as api:
        made: dict[str, Proxy] = {}
        try:
            for what, upstream in upstreams.items():
                proxy = Proxy(api, f"{tag}_{what}", free_port(), upstream)
                r = await api.post(
                    "/proxies",
                    json={
                        "name": proxy.name,
                        "listen": f"127.0.0.1:{proxy.listen_port}",
                        "upstream": upstream,
                        "enabled": True,
                    },
                )
                r.raise_for_status()
                made[what] = proxy
            yield made
        finally:
            for proxy in made.values():
                await api.delete(f"/proxies/{proxy.name}")


@contextlib.contextmanager
def broker_behind(proxied_port: int, proxy_port: int, tag: str) -> Iterator[Kafka]:
    """A Kafka broker of the test's own (deploy/local/kafka.sh in a var dir of its own) with a
    second listener on `proxied_port` advertised at `proxy_port` (a proxy forwarding there);
    yields its plain listener, for the test."""
    var = ROOT / "var" / "e2e" / f"broker-{tag}"
    port, controller = free_port(), free_port()
    env = {
        **os.environ,
        "GIAO_VAR_DIR": str(var),
        "GIAO_KAFKA_PORT": str(port),
        "GIAO_KAFKA_CONTROLLER_PORT": str(controller),
        "GIAO_KAFKA_PROXIED_PORT": str(proxied_port),
        "GIAO_KAFKA_PROXIED_ADVERTISED_PORT": str(proxy_port),
    }
    script = str(ROOT / "deploy/local/kafka.sh")
    try:
        subprocess.run([script, "start"], env=env, check=True, timeout=180)
        yield Kafka(f"127.0.0.1:{port}")
    finally:
        subprocess.run([script, "stop"], env=env, check=False, timeout=90)
        shutil.rmtree(var, ignore_errors=True)


def through(postgres: Postgres, port: int) -> Postgres:
    """The same server and credentials, reached on 127.0.0.1:`port` (the proxy's)."""
    parts = urlsplit(postgres.admin_dsn)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return Postgres(urlunsplit(parts._replace(netloc=netloc)))


def upstream_of(postgres: Postgres) -> str:
    parts = urlsplit(postgres.admin_dsn)
    return f"{parts.hostname}:{parts.port or 5432}"
