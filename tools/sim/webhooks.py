"""The demo's webhook receiver: one simulated shop registers an endpoint on 127.0.0.1, and every
delivery is checked as a merchant would check it, with the `standardwebhooks` package.

It counts what arrived, what verified, repeats (the same `webhook-id` again: a retry whose answer
was lost) and each order's sequence going backwards, so the demo's summary can say whether the
merchant heard everything, signed and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tools.client import Giao

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Inbox:
    secrets: dict[str, str] = field(default_factory=dict)  # the receiver's path -> its endpoint's secret
    received: int = 0
    verified: int = 0
    bad_signatures: int = 0
    repeats: int = 0
    out_of_order: int = 0
    seen_ids: set[str] = field(default_factory=set)
    last_sequence: dict[str, int] = field(default_factory=dict)  # order id -> highest sequence seen

    def take(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.received += 1
        try:
            event = Webhook(self.secrets.get(path, "whsec_" + "A" * 32)).verify(body, headers)
        except WebhookVerificationError:
            self.bad_signatures += 1
            return
        self.verified += 1
        delivery_id = headers.get("webhook-id", "")
        if delivery_id in self.seen_ids:
            self.repeats += 1
            return
        self.seen_ids.add(delivery_id)
        data = event.get("data") or {}
        order_id, sequence = data.get("order_id"), data.get("sequence")
        if order_id and isinstance(sequence, int):
            if sequence < self.last_sequence.get(order_id, 0):
                self.out_of_order += 1
            self.last_sequence[order_id] = max(sequence, self.last_sequence.get(order_id, 0))


class Receiver:
    """An ASGI app that answers 204 to every POST and hands its body to the inbox."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["method"] == "POST":
            self.inbox.take(scope["path"], body, headers)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def receiving(client: Giao, api_keys: list[str], event_types: list[str]) -> AsyncIterator[Inbox]:
    """Run the receiver on a free port of 127.0.0.1 and register an endpoint of its own (a path
    each) for every shop of `api_keys` (orders must allow private targets: deploy/local runs it in
    development with them allowed)."""
    inbox = Inbox()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(Receiver(inbox), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for i, api_key in enumerate(api_keys):
            path = f"/giao/{i}"
            endpoint = await client.call(
                "webhook_register",
                "POST",
                f"{client.endpoints.orders}/v1/webhook-endpoints",
                token=api_key,
                json={"url": f"http://127.0.0.1:{port}{path}", "event_types": event_types},
            )
            inbox.secrets[path] = endpoint["secret"]
        yield inbox
    finally:
        server.should_exit = True
        await task
        sock.close()


async def drained(client: Giao, api_key: str, *, timeout_s: float = 15.0) -> bool:
    """Wait until the shop's endpoint has no delivery left pending (True), or the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    endpoints = await client.call(
        "webhook_list", "GET", f"{client.endpoints.orders}/v1/webhook-endpoints", token=api_key
    )
    items = endpoints["items"] if isinstance(endpoints, dict) else endpoints
    while True:
        pending = 0
        for endpoint in items:
            url = f"{client.endpoints.orders}/v1/webhook-endpoints/{endpoint['id']}/deliveries?limit=100"
            cursor: str | None = ""
            while cursor is not None:
                page = await client.call(
                    "webhook_deliveries", "GET", url + (f"&cursor={cursor}" if cursor else ""), token=api_key
                )
                pending += sum(1 for d in page["items"] if d["state"] == "pending")
                cursor = page["next_cursor"]
        if pending == 0:
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.5)
