"""CPU per request of the HTTP layer alone: service_app's stack (middleware, routing, one auth
dependency, the body) in process, around endpoints that do nothing, with no server, database
or broker. Run it from each source tree to compare (it prints µs per call, as JSON):

    cp tools/bench/http_stack.py /tmp/ && cd /path/to/tree && PYTHONPATH=. .venv/bin/python /tmp/http_stack.py

tools/bench/requests.py measures the whole request in a real process; on a loaded machine its
figures drift by more than this layer's share, which this measures to a few per cent.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.types import Message

from services.orders.schemas import OrderIn
from shared import http
from shared.app import service_app
from shared.http import Metrics, api_router

router = api_router()
CALLS, ROUNDS = 2000, 5


async def caller(request: Request) -> int:
    return 1


if hasattr(http, "read_body"):  # this build

    @router.post("/v1/orders", openapi_extra=http.json_body(OrderIn))
    async def place(request: Request, me: int = Depends(caller)) -> Response:
        await http.read_body(request, OrderIn)
        return Response(b"{}", media_type="application/json")

else:  # a build before read_body: FastAPI's body parameter

    @router.post("/v1/orders")
    async def place(request: Request, body: OrderIn, me: int = Depends(caller)) -> Response:  # type: ignore[misc]
        return Response(b"{}", media_type="application/json")


@router.get("/v1/courier/jobs")
async def jobs(request: Request, me: int = Depends(caller)) -> Response:
    return Response(b"{}", media_type="application/json")


class NoRuntime:
    settings = None

    def lifespan(self) -> None:
        return None

    def ready_checks(self) -> dict[str, Any]:
        return {}

    def register_metrics(self, metrics: Metrics) -> None:
        return None


APP = service_app(
    title="stack", summary="", description="", runtime=NoRuntime(), metrics=Metrics("s"), routers=[router]
)
ORDER = json.dumps(
    {
        "pickup": {"name": "Shop", "phone": "0912345678", "address": "Cẩm Phả", "lat": 21.01, "lng": 107.29},
        "dropoff": {"name": "Khách", "phone": "0912345679", "address": "Cẩm Phả", "lat": 21.02, "lng": 107.3},
        "parcel": {"weight_grams": 900},
        "cod_amount_vnd": 0,
    }
).encode()


async def call(method: str, path: str, body: bytes) -> None:
    headers = [(b"host", b"x"), (b"authorization", b"Bearer x"), (b"accept", b"*/*"), (b"user-agent", b"bench")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    assert sent[0]["status"] == 200, sent


async def measure(calls: int = CALLS, rounds: int = ROUNDS) -> dict[str, float]:
    """µs of CPU per call of each route: the median of `rounds` rounds of `calls` calls."""
    figures = {}
    for name, method, path, body in (
        ("POST /v1/orders", "POST", "/v1/orders", ORDER),
        ("GET /v1/courier/jobs", "GET", "/v1/courier/jobs", b""),
    ):
        for _ in range(calls // 4):
            await call(method, path, body)
        times = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(calls):
                await call(method, path, body)
            times.append((time.process_time() - started) / calls * 1e6)
        figures[name] = round(sorted(times)[rounds // 2], 1)
    return figures


async def main() -> None:
    print(json.dumps(await measure()))


if __name__ == "__main__":
    asyncio.run(main())
