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
    """A pooled httpx transport per endpoint URL, all sharing one TLS context: redirects not
    followed (a 3xx is a failure), no proxy from the environment (the address checked is the one
    called), and the whole exchange within the timeout (10 s). A small answer is read to its end,
    so that its connection goes back to the pool (an unread body closes it: a new TCP connection
    per delivery cost more CPU than the rest of the delivery); a larger one is dropped unread,
    with its connection.

    Why the transport (httpx's public transport API) and not an AsyncClient: a delivery needs
    none of what the client adds around it (cookies, auth, redirects, event hooks, merged
    defaults, a timeout per read and write on top of ours), and that machinery cost a fifth of
    a delivery's CPU. The transport is what the client would call underneath, with the same pool.

    Why one per URL: httpcore's pool looks at every connection it holds, and for each idle one
    counts them all again, on every request and every answer. One pool holding the 50
    connections of a round spent 3-5 ms of CPU per delivery in that alone; a URL has at most
    `per_endpoint` deliveries in flight (the claim sees to it), so its pool holds that many.
    A transport unused for IDLE_CLIENT_S is closed (close_unused, every second), and the least
    recently used ones past MAX_CLIENTS at once."""

    ANSWER_READ_BYTES = 16 * 1024
    MAX_CLIENTS = 500
    # Past httpcore's keep-alive (an idle connection expires after 5 s), a transport unused this
    # long holds nothing worth keeping but open sockets.
    IDLE_CLIENT_S = 10.0
    USER_AGENT = b"Giao-Webhooks/1"

    def __init__(self, timeout_s: float, per_endpoint: int) -> None:
        self.timeout_s = timeout_s
        self.limits = httpx.Limits(max_connections=None, max_keepalive_connections=per_endpoint)
        self.tls = httpx.create_ssl_context(trust_env=False)
        # URL -> its transport, the URL parsed once and the headers of every request to it.
        self.clients: OrderedDict[str, tuple[httpx.AsyncHTTPTransport, httpx.URL, list[tuple[bytes, bytes]]]] = (
            OrderedDict()
        )
        self.busy: Counter[str] = Counter()
        self.last_used: dict[str, float] = {}

    def _client(self, url: str) -> tuple[httpx.AsyncHTTPTransport, httpx.URL, list[tuple[bytes, bytes]]]:
        found = self.clients.get(url)
        if found is None:
            transport = httpx.AsyncHTTPTransport(verify=self.tls, trust_env=False, limits=self.limits)
            parsed = httpx.URL(url)
            fixed = [(b"host", parsed.netloc), (b"user-agent", self.USER_AGENT)]
            found = self.clients[url] = (transport, parsed, fixed)
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
        transport, parsed, fixed = self._client(url)
        # Every header given as bytes, Host and Content-Length too: httpx then has nothing to
        # add or encode (a Request built from str headers and `content` cost 4x more).
        raw = [*fixed, (b"content-length", b"%d" % len(body))]
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
        request = httpx.Request("POST", parsed, headers=raw, stream=httpx.ByteStream(body))
        self.busy[url] += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await transport.handle_async_request(request)
                assert isinstance(response.stream, httpx.AsyncByteStream)  # as a transport answers
                try:
                    read = 0
                    async for chunk in response.stream:
                        read += len(chunk)
                        if read > self.ANSWER_READ_BYTES:
                            break
                finally:
                    await response.aclose()
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
