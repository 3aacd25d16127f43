"""Webhook receivers on 127.0.0.1 (a free port): `receiver`, as a merchant would run one, verifies
every delivery with the `standardwebhooks` package and keeps what it received (it can hold its
answers until told, to keep deliveries in flight);
`keep_alive_receiver` keeps its connections open and counts what each served, for the sender's
own tests."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> Any:
        """The payload, if `secret` signed it (WebhookVerificationError if not)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    url: str
    # The status to answer the n-th request (0-based); 200 by default.
    answer: Callable[[int], int] = lambda _: 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def unique(self, secret: str) -> list[Any]:
        """Each delivery once (by webhook-id, as a receiver drops duplicates), verified, in sequence order
        per order."""
        seen: dict[str, Any] = {}
        for r in self.all():
            seen.setdefault(r.id, r.verified(secret))
        return sorted(seen.values(), key=lambda p: (p["data"].get("order_id", ""), p["data"].get("sequence", 0)))


@contextmanager
def receiver(
    answer: Callable[[int], int] = lambda _: 200, *, hold: threading.Event | None = None
) -> Iterator[Receiver]:
    """With `hold`, a request is kept (in `received` already) and answered once `hold` is set."""
    state = Receiver(url="", answer=answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with state.lock:
                n = len(state.received)
                state.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            if hold is not None:
                hold.wait()
            status = state.answer(n)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if hold is not None:
            hold.set()  # a request still held is answered: its thread ends
        server.shutdown()
        server.server_close()


@asynccontextmanager
async def keep_alive_receiver(
    answer_body: bytes = b"ok", *, status: int = 200, hang_up: bool = False, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP/1.1 keep-alive receiver on 127.0.0.1: its URL, and the requests each connection
    served (one entry per connection, made negative once the receiver closed it), for tests of
    the sender's connection reuse. With `hang_up`, it closes each connection after one answer
    without saying so (as a server whose keep-alive ran out does); with `tls`, it speaks HTTPS."""
    status_line = b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())
    served: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(0)
        me = len(served) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                served[me] += 1
                writer.write(status_line + b"content-length: %d\r\n\r\n%s" % (len(answer_body), answer_body))
                await writer.drain()
                if hang_up:
                    break
        except (asyncio.IncompleteReadError, OSError):
            pass  # the sender closed its connection (or broke it off)
        finally:
            writer.close()
            served[me] = -served[me]

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", served
    finally:
        server.close()
