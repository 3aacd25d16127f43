"""The world outside the webhook worker, behind small interfaces (tests can give their own): the
HTTP client that posts deliveries, and the resolver that the address policy asks."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter, OrderedDict
from typing import Protocol

import httpx


class Sender(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST and return the status code; raise on a transport error or a timeout."""


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to."""


class HttpxSender:
    """A pooled client per endpoint URL, all sharing one TLS context: redirects not followed (a
    3xx is a failure), no proxy from the environment (the address checked is the one called), and
    the whole exchange within the timeout (10 s). A small answer is read to its end, so that its
    connection goes back to the pool (an unread body closes it: a new TCP connection per delivery
    cost more CPU than the rest of the delivery); a larger one is dropped unread, with its
    connection.

    Why a client per URL: httpcore's pool looks at every connection it holds, and for each idle
    one counts them all again, on every request and every answer. One client holding the 50
    connections of a round spent 3-5 ms of CPU per delivery in that alone; a URL has at most
    `per_endpoint` deliveries in flight (the claim sees to it), so its client holds that many.
    A client unused for IDLE_CLIENT_S is closed (close_unused, every second), and the least
    recently used ones past MAX_CLIENTS at once."""

    ANSWER_READ_BYTES = 16 * 1024
    MAX_CLIENTS = 500
    # Past httpcore's keep-alive (an idle connection expires after 5 s), a client unused this long
    # holds nothing worth keeping but open sockets.
    IDLE_CLIENT_S = 10.0

    def __init__(self, timeout_s: float, per_endpoint: int) -> None:
        self.timeout_s = timeout_s
        self.limits = httpx.Limits(max_connections=None, max_keepalive_connections=per_endpoint)
        self.tls = httpx.create_ssl_context(trust_env=False)
        # URL -> its client and the URL parsed once (httpx parses a string on every request).
        self.clients: OrderedDict[str, tuple[httpx.AsyncClient, httpx.URL]] = OrderedDict()
        self.busy: Counter[str] = Counter()
        self.last_used: dict[str, float] = {}

    def _client(self, url: str) -> tuple[httpx.AsyncClient, httpx.URL]:
        found = self.clients.get(url)
        if found is None:
            client = httpx.AsyncClient(
                verify=self.tls,
                timeout=self.timeout_s,
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": "Giao-Webhooks/1"},
                limits=self.limits,
            )
            found = self.clients[url] = (client, httpx.URL(url))
        else:
            self.clients.move_to_end(url)
        return found

    async def close_unused(self) -> None:
        """Close the clients with nothing in flight that went unused for IDLE_CLIENT_S, and the
        least recently used ones past MAX_CLIENTS."""
        unused_since = time.monotonic() - self.IDLE_CLIENT_S
        for url in list(self.clients):  # least recently used first
            found = self.clients.get(url)
            if found is None or self.busy[url]:
                continue
            if len(self.clients) > self.MAX_CLIENTS or self.last_used.get(url, 0.0) < unused_since:
                del self.clients[url], self.busy[url]
                self.last_used.pop(url, None)
                await found[0].aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        client, parsed = self._client(url)
        self.busy[url] += 1
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                client.stream("POST", parsed, content=body, headers=headers) as response,
            ):
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read > self.ANSWER_READ_BYTES:
                        break
                return response.status_code
        finally:
            self.busy[url] -= 1
            self.last_used[url] = time.monotonic()
            if len(self.clients) > self.MAX_CLIENTS:
                await self.close_unused()

    async def aclose(self) -> None:
        while self.clients:
            await self.clients.popitem()[1][0].aclose()


class DnsResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):  # unknown, or not a name IDNA can encode
            return []
        return [str(info[4][0]) for info in infos]
