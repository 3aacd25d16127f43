"""A lean HTTP/1.1 keep-alive client for the benchmark's load generator.

The load generator shares the two cores with Kafka, PostgreSQL and the services, so every
CPU second it spends is taken from the system it measures. httpx spent most of its time in
its connection pool (with a few hundred connections it scans all of them for every request)
and in its layers of abstraction: about 1 ms of CPU per call. This client speaks just the
HTTP/1.1 the services answer (Content-Length or chunked bodies, keep-alive) over asyncio
streams, with a stack of idle connections per origin: a fraction of that cost per call.

`LeanGiao` is tools.client.Giao with its calls sent through this client (SSE streams stay
on httpx: few, and long-lived).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from tools.client import Giao

_IDLE_MAX_S = 3.0  # uvicorn closes keep-alive connections idle for 5 s


class _Conn:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()


class _Origin:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode()
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(limit)

    def take_idle(self) -> _Conn | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if conn.reader.at_eof() or now - conn.idle_since > _IDLE_MAX_S:
                conn.close()
                continue
            return conn
        return None


class LeanHttp:
    def __init__(self, *, limit_per_origin: int = 200, timeout: float = 10.0) -> None:
        self.limit = limit_per_origin
        self.timeout = timeout
        self._origins: dict[str, _Origin] = {}
        self._paths: dict[str, tuple[_Origin, bytes]] = {}

    def _target(self, url: str) -> tuple[_Origin, bytes]:
        hit = self._paths.get(url)
        if hit is None:
            parts = urlsplit(url)
            key = f"{parts.hostname}:{parts.port or 80}"
            origin = self._origins.get(key)
            if origin is None:
                origin = self._origins[key] = _Origin(parts.hostname or "127.0.0.1", parts.port or 80, self.limit)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            hit = (origin, path.encode())
            if len(self._paths) < 100_000:
                self._paths[url] = hit
        return hit

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        origin, path = self._target(url)
        head = [method.encode(), b" ", path, b" HTTP/1.1\r\nHost: ", origin.host_header, b"\r\n"]
        for k, v in headers.items():
            head += [k.encode(), b": ", v.encode(), b"\r\n"]
        if body is not None:
            head += [b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body]
        else:
            head.append(b"\r\n")
        data = b"".join(head)
        async with origin.slots:
            async with asyncio.timeout(self.timeout):
                conn = origin.take_idle()
                if conn is not None:
                    try:
                        return await self._exchange(origin, conn, data)
                    except (ConnectionError, asyncio.IncompleteReadError) as exc:
                        # The server closed an idle connection just now; nothing was processed
                        # (a response would have arrived): send again on a new one.
                        if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                            raise
                reader, writer = await asyncio.open_connection(origin.host, origin.port)
                return await self._exchange(origin, _Conn(reader, writer), data)

    async def _exchange(self, origin: _Origin, conn: _Conn, data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        try:
            conn.writer.write(data)
            head = await conn.reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
            length = headers.get(b"content-length")
            if length is not None:
                body = await conn.reader.readexactly(int(length)) if length != b"0" else b""
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                chunks = []
                while True:
                    size = int((await conn.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                    if size == 0:
                        await conn.reader.readuntil(b"\r\n")
                        break
                    chunks.append(await conn.reader.readexactly(size))
                    await conn.reader.readexactly(2)
                body = b"".join(chunks)
            else:
                body = await conn.reader.read()
                headers[b"connection"] = b"close"
        except BaseException:
            conn.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            conn.close()
        else:
            conn.idle_since = time.monotonic()
            origin.idle.append(conn)
        return status, headers, body

    async def close(self) -> None:
        for origin in self._origins.values():
            for conn in origin.idle:
                conn.close()
            origin.idle.clear()


class LeanGiao(Giao):
    """Giao whose calls go through LeanHttp (follow() keeps using httpx)."""

    def __init__(self, *args: Any, max_connections: int = 200, **kwargs: Any) -> None:
        super().__init__(*args, max_connections=max_connections, **kwargs)
        self.lean = LeanHttp(limit_per_origin=max_connections)

    async def close(self) -> None:
        await self.lean.close()
        await super().close()

    async def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str, bytes]:
        status, resp_headers, content = await self.lean.request(method, url, headers, body)
        return status, resp_headers.get(b"content-type", b"").decode("latin-1"), content
