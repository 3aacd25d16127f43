"""The world outside the webhook worker, behind small interfaces (tests can give their own): the
HTTP client that posts deliveries, and the resolver that the address policy asks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpcore
import httpx


class Sender(Protocol):
    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, addresses: Sequence[str] | None = None
    ) -> int:
        """POST and return the status code; raise on a transport error or a timeout. With
        `addresses` (those the address policy checked), connect to one of them and never look
        the URL's host up again: a second lookup could answer another address (DNS rebinding)."""


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to."""


class AsyncioStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream on asyncio's own streams (httpcore's network-backend API).

    Why not httpcore's default (anyio's streams): each read and write there runs in a cancel
    scope of its own with a checkpoint, which cost as much CPU as h11's work on the request.
    Here a write hands the bytes to the transport and waits only if its buffer is full. The
    per-call timeouts are not used: the sender bounds the whole exchange (HttpSender.post)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self.writer.write(buffer)
            await self.writer.drain()

    async def aclose(self) -> None:
        self.writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        await self.writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of an idle connection: the server closed it (or broke it). The transport
            # reads as data comes, so what came is in the reader, not the socket.
            return self.reader.at_eof() or self.reader.exception() is not None
        name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        return self.writer.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects by name, or with `addresses` to those only, in turn (the name stays the
    connection's: TLS sends it and checks the certificate against it)."""

    def __init__(self, addresses: Sequence[str] | None = None) -> None:
        self.addresses = addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local_addr = (local_address, 0) if local_address else None
        if self.addresses is None:
            reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
            return AsyncioStream(reader, writer)
        refused = OSError(f"no address to connect to {host}")
        for address in self.addresses:
            try:
                # AI_NUMERICHOST: an address, never a name to look up.
                reader, writer = await asyncio.open_connection(
                    address, port, local_addr=local_addr, flags=socket.AI_NUMERICHOST
                )
            except OSError as exc:
                refused = exc
                continue
            return AsyncioStream(reader, writer)
        raise refused

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError("webhooks go to http(s) URLs")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class _Target:
    """One webhook URL: parsed once, the fixed headers of every request to it, and its idle
    connections (most recently used last)."""

    url: httpcore.URL
    origin: httpcore.Origin
    headers: list[tuple[bytes, bytes]]
    idle: list[httpcore.AsyncHTTPConnection] = field(default_factory=list)
    busy: int = 0
    last_used: float = 0.0


class HttpSender:
    """Posts deliveries with httpcore (httpx's own HTTP layer), keeping up to `per_endpoint`
    keep-alive connections per URL: redirects not followed (a 3xx is a failure), no proxy from
    the environment (a new connection goes to one of the `addresses` checked, no other), the
    whole exchange within the timeout (10 s), one TLS context for all. A small answer is read to
    its end, so that its connection can serve the next delivery (a new TCP connection per
    delivery cost more CPU than the rest of the delivery); after a larger one the connection is
    closed unread.

    Why httpcore's connections and not httpx's client or a pool of theirs: a delivery needs none
    of what the client adds (cookies, auth, redirects, hooks, merged defaults: a fifth of a
    delivery's CPU), and the pool, on every request and again on every answer, asks each
    connection it holds whether the server closed it, a poll of its socket each: with the 8 a
    URL may hold, that was a quarter of a delivery's CPU. Here a connection is asked once, when
    it is taken for a delivery. The claim keeps at most `per_endpoint` deliveries of one
    endpoint in flight, so that is all the connections a URL needs. A URL unused for
    IDLE_CLIENT_S has its connections closed (close_unused, every second), and so have the
    least recently used URLs past MAX_CLIENTS."""

    ANSWER_READ_BYTES = 16 * 1024
    MAX_CLIENTS = 500
    KEEPALIVE_S = 5.0  # an idle connection older than this is not reused (httpx's default)
    # Past the keep-alive, a URL unused this long holds nothing worth keeping but open sockets.
    IDLE_CLIENT_S = 10.0
    USER_AGENT = b"Giao-Webhooks/1"

    def __init__(self, timeout_s: float, per_endpoint: int) -> None:
        self.timeout_s = timeout_s
        self.per_endpoint = per_endpoint
        self.tls = httpx.create_ssl_context(trust_env=False)
        self.network = AsyncioBackend()
        self.targets: OrderedDict[str, _Target] = OrderedDict()  # least recently used first

    def _target(self, url: str) -> _Target:
        found = self.targets.get(url)
        if found is None:
            parsed = httpcore.URL(url)
            host = httpx.URL(url).netloc  # Host: as httpx writes it (IDNA, the port if not the default)
            found = self.targets[url] = _Target(
                parsed, parsed.origin, [(b"host", host), (b"user-agent", self.USER_AGENT)]
            )
        else:
            self.targets.move_to_end(url)
        return found

    async def close_unused(self) -> None:
        """Close the connections of the URLs with nothing in flight that went unused for
        IDLE_CLIENT_S, and of the least recently used ones past MAX_CLIENTS."""
        unused_since = time.monotonic() - self.IDLE_CLIENT_S
        for url in list(self.targets):  # least recently used first
            target = self.targets[url]
            if target.busy:
                continue
            if len(self.targets) > self.MAX_CLIENTS or target.last_used < unused_since:
                del self.targets[url]
                await _close_all(target.idle)

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, addresses: Sequence[str] | None = None
    ) -> int:
        target = self._target(url)
        # Every header given as bytes, Host and Content-Length too: nothing left to add or encode.
        raw = [*target.headers, (b"content-length", b"%d" % len(body))]
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
        request = httpcore.Request(b"POST", target.url, headers=raw, content=body)
        connection = None
        target.busy += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                connection = await self._take(target, addresses)
                response = await connection.handle_async_request(request)
                try:
                    read = 0
                    async for chunk in response.aiter_stream():
                        read += len(chunk)
                        if read > self.ANSWER_READ_BYTES:
                            break
                finally:
                    await response.aclose()
        except BaseException:
            if connection is not None:
                await _close_all([connection])
            raise
        finally:
            target.busy -= 1
            target.last_used = time.monotonic()
        if connection.is_idle() and len(target.idle) < self.per_endpoint:
            target.idle.append(connection)
        else:
            await _close_all([connection])
        if len(self.targets) > self.MAX_CLIENTS:
            await self.close_unused()
        return response.status

    async def _take(self, target: _Target, addresses: Sequence[str] | None) -> httpcore.AsyncHTTPConnection:
        """An idle connection of the target that the server has not closed (the stale ones taken
        on the way are closed), or a new one, to one of `addresses` if given. (An idle one goes
        to an address that was checked when it was opened: whether an address may be called
        does not change, so it may serve even if the name points elsewhere now.)"""
        while target.idle:
            connection = target.idle.pop()
            if connection.is_available() and not connection.has_expired():
                return connection
            await _close_all([connection])
        network = self.network if addresses is None else AsyncioBackend(addresses)
        return httpcore.AsyncHTTPConnection(
            target.origin, ssl_context=self.tls, keepalive_expiry=self.KEEPALIVE_S, network_backend=network
        )

    async def aclose(self) -> None:
        while self.targets:
            await _close_all(self.targets.popitem()[1].idle)


async def _close_all(connections: list[httpcore.AsyncHTTPConnection]) -> None:
    """Close these connections; one that fails to close is gone all the same."""
    while connections:
        with contextlib.suppress(Exception):
            await connections.pop().aclose()


class DnsResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError):  # unknown, or not a name IDNA can encode
            return []
        return [str(info[4][0]) for info in infos]
