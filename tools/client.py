"""A client of Giao's public HTTP APIs, as a shop system, a courier's phone or a customer's
browser would call them. The simulator, the benchmark and the end-to-end tests use it; it
knows only the contract, nothing of the services' insides.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson


class ApiError(Exception):
    def __init__(self, method: str, url: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {url} -> {status}: {body}")
        self.status = status
        self.body = body


def _local(service: str, port: int) -> str:
    """The local service's URL, on the port `make up` gave it (GIAO_<SERVICE>_PORT)."""
    return f"http://127.0.0.1:{os.environ.get(f'GIAO_{service.upper()}_PORT', port)}"


@dataclass
class Endpoints:
    orders: str = field(default_factory=lambda: _local("orders", 8001))
    dispatch: str = field(default_factory=lambda: _local("dispatch", 8002))
    tracking: str = field(default_factory=lambda: _local("tracking", 8003))
    admin_token: str = field(default_factory=lambda: os.environ.get("GIAO_ADMIN_TOKEN", "dev-admin-token"))


@dataclass
class CallStats:
    """Latency of every call by name, and the calls that failed."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def record(self, name: str, ms: float) -> None:
        self.latencies_ms.setdefault(name, []).append(ms)


class Giao:
    """One HTTP connection pool for everything; each call names who makes it (a bearer token)."""

    def __init__(
        self,
        endpoints: Endpoints | None = None,
        *,
        stats: CallStats | None = None,
        timeout: float = 10.0,
        max_connections: int = 200,
    ) -> None:
        self.endpoints = endpoints or Endpoints()
        self.stats = stats or CallStats()
        self.http = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Giao:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self,
        name: str,
        method: str,
        url: str,
        *,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200, 201, 202),
    ) -> Any:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        body = None
        if json is not None:
            hdrs["Content-Type"] = "application/json"
            body = orjson.dumps(json)
        started = time.perf_counter()
        try:
            status, content_type, content = await self._send(method, url, hdrs, body)
        except Exception as exc:
            self.stats.errors.append(f"{name}: {exc!r}")
            raise
        self.stats.record(name, (time.perf_counter() - started) * 1000)
        result = orjson.loads(content) if content and "json" in content_type else content.decode("utf-8", "replace")
        if status not in expect:
            raise ApiError(method, url, status, result)
        return result

    async def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str, bytes]:
        """The transport: (status, content type, body bytes). The benchmark swaps in a leaner one."""
        response = await self.http.request(method, url, headers=headers, content=body)
        return response.status_code, response.headers.get("content-type", ""), response.content

    # --- admin -------------------------------------------------------------------------
    async def create_merchant(self, name: str, phone: str) -> dict:
        return await self.call(
            "create_merchant",
            "POST",
            f"{self.endpoints.orders}/v1/admin/merchants",
            token=self.endpoints.admin_token,
            json={"name": name, "phone": phone},
        )

    async def create_courier(self, name: str, phone: str, vehicle: str) -> dict:
        return await self.call(
            "create_courier",
            "POST",
            f"{self.endpoints.dispatch}/v1/admin/couriers",
            token=self.endpoints.admin_token,
            json={"name": name, "phone": phone, "vehicle": vehicle},
        )

    async def admin_job(self, order_id: str) -> dict:
        return await self.call(
            "admin_job", "GET", f"{self.endpoints.dispatch}/v1/admin/jobs/{order_id}", token=self.endpoints.admin_token
        )

    async def courier_cash(self, courier_id: str) -> dict:
        return await self.call(
            "courier_cash",
            "GET",
            f"{self.endpoints.dispatch}/v1/admin/couriers/{courier_id}/cash",
            token=self.endpoints.admin_token,
        )

    async def receive_cash(self, courier_id: str, amount_vnd: int) -> dict:
        return await self.call(
            "receive_cash",
            "POST",
            f"{self.endpoints.dispatch}/v1/admin/couriers/{courier_id}/cash-handins",
            token=self.endpoints.admin_token,
            json={"amount_vnd": amount_vnd},
            expect=(201,),
        )

    # --- merchant ----------------------------------------------------------------------
    async def quote(self, api_key: str, body: dict) -> dict:
        return await self.call("quote", "POST", f"{self.endpoints.orders}/v1/quotes", token=api_key, json=body)

    async def place_order(self, api_key: str, body: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.call(
            "place_order",
            "POST",
            f"{self.endpoints.orders}/v1/orders",
            token=api_key,
            json=body,
            headers=headers,
            expect=(201,),
        )

    async def get_order(self, api_key: str, order_id: str) -> dict:
        return await self.call("get_order", "GET", f"{self.endpoints.orders}/v1/orders/{order_id}", token=api_key)

    async def list_orders(self, api_key: str, **params: Any) -> dict:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return await self.call("list_orders", "GET", f"{self.endpoints.orders}/v1/orders?{query}", token=api_key)

    async def all_orders(self, api_key: str) -> list[dict]:
        """Every order of the merchant, newest first: a request for each hundred (one GET per
        order soon runs past the merchant's rate limit)."""
        found: list[dict] = []
        cursor = None
        while True:
            page = await self.list_orders(api_key, limit=100, cursor=cursor)
            found += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    async def statement(self, api_key: str, first: str, last: str) -> dict:
        query = urlencode({"from": first, "to": last})
        return await self.call("statement", "GET", f"{self.endpoints.orders}/v1/statement?{query}", token=api_key)

    async def cancel_order(
        self, api_key: str, order_id: str, reason: str | None = None, expect: tuple[int, ...] = (202,)
    ) -> dict:
        return await self.call(
            "cancel_order",
            "POST",
            f"{self.endpoints.orders}/v1/orders/{order_id}/cancel",
            token=api_key,
            json={"reason": reason} if reason else {},
            expect=expect,
        )

    # --- courier -----------------------------------------------------------------------
    async def set_status(self, token: str, online: bool, lat: float, lng: float) -> Any:
        return await self.call(
            "courier_status",
            "PUT",
            f"{self.endpoints.dispatch}/v1/courier/status",
            token=token,
            json={"online": online, "lat": lat, "lng": lng},
        )

    async def send_locations(self, token: str, points: list[dict]) -> Any:
        return await self.call(
            "courier_locations",
            "POST",
            f"{self.endpoints.dispatch}/v1/courier/locations",
            token=token,
            json={"points": points},
        )

    async def jobs(self, token: str) -> list[dict]:
        body = await self.call("courier_jobs", "GET", f"{self.endpoints.dispatch}/v1/courier/jobs", token=token)
        return body["items"]

    async def job_action(
        self, token: str, order_id: str, action: str, body: dict | None = None, expect: tuple[int, ...] = (200,)
    ) -> Any:
        return await self.call(
            f"job_{action}",
            "POST",
            f"{self.endpoints.dispatch}/v1/courier/jobs/{order_id}/{action}",
            token=token,
            json=body if body is not None else {},
            expect=expect,
        )

    # --- customer ----------------------------------------------------------------------
    async def track(self, code: str, expect: tuple[int, ...] = (200,)) -> dict:
        return await self.call("track", "GET", f"{self.endpoints.tracking}/v1/tracking/{code}", expect=expect)

    async def parcel(self, code: str) -> dict:
        """The parcel as tracking shows it, or {} while tracking does not know the code (it
        learns of an order from Kafka, a moment after the order was placed)."""
        answer = await self.track(code, expect=(200, 404))
        return answer if answer.get("tracking_code") == code else {}

    async def follow(self, code: str) -> AsyncIterator[tuple[str, dict]]:
        """Server-Sent Events of one parcel: (event name, data) until the server ends the stream."""
        async for event in self._events(f"{self.endpoints.tracking}/v1/tracking/{code}/events"):
            yield event

    async def job_lists(self, token: str) -> AsyncIterator[list[dict]]:
        """A courier's offers and jobs as dispatch pushes them: the list now, then each new one,
        until the server ends the stream."""
        async for event, data in self._events(f"{self.endpoints.dispatch}/v1/courier/jobs/events", token=token):
            if event == "jobs":
                yield data["items"]

    async def _events(self, url: str, token: str | None = None) -> AsyncIterator[tuple[str, dict]]:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        timeout = httpx.Timeout(10.0, read=None)
        async with self.http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                raise ApiError("GET", url, response.status_code, await response.aread())
            event, data = "message", list[str]()
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        yield event, orjson.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
