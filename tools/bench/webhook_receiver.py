"""The receiver of tools.bench.webhook_worker, in a process of its own (its CPU is not the worker's):
a bare HTTP/1.1 keep-alive server on 127.0.0.1 that answers 200 at once and checks every
`verify_every`-th delivery with the `standardwebhooks` package, as a merchant would.

Paths under /slow/ are never answered (a blackholed endpoint: the sender's timeout ends it).

Writes `port <n>` once it listens; then reads one JSON line on stdin, {"secrets": {path: secret},
"expect": n, "verify_every": k}, and writes `done <json>` once `expect` distinct deliveries
outside /slow/ arrived; it stops when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


@dataclass
class Tally:
    secrets: dict[str, str]
    expect: int
    verify_every: int
    received: int = 0
    slow: int = 0
    verified: int = 0
    bad: int = 0
    ids: set[str] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.received += 1
        self.ids.add(headers.get("webhook-id", ""))
        if self.received % self.verify_every == 0:
            try:
                Webhook(self.secrets[path]).verify(body, headers)
                self.verified += 1
            except (KeyError, WebhookVerificationError):
                self.bad += 1
        if self.expect and len(self.ids) >= self.expect:
            self.done.set()


class Connection(asyncio.Protocol):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            path = lines[0].split(" ")[1]
            if path.startswith("/slow/"):
                self.tally.slow += 1
                continue  # never answered
            self.tally.take(path, headers, body)
            assert self.transport is not None
            self.transport.write(ANSWER)


async def main() -> None:
    tally = Tally({}, 0, 25)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(tally), "127.0.0.1", 0, backlog=1024)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    config = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    tally.secrets, tally.expect, tally.verify_every = config["secrets"], config["expect"], config["verify_every"]
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await tally.done.wait()
    stats = {k: getattr(tally, k) for k in ("received", "slow", "verified", "bad")}
    print("done", json.dumps({**stats, "unique": len(tally.ids)}), flush=True)
    await stdin_closed
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
