"""A webhook receiver on 127.0.0.1 (a free port), as a merchant would run one: it verifies every
delivery with the `standardwebhooks` package and keeps what it received."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
def receiver(answer: Callable[[int], int] = lambda _: 200) -> Iterator[Receiver]:
    state = Receiver(url="", answer=answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with state.lock:
                n = len(state.received)
                state.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
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
        server.shutdown()
        server.server_close()
