"""What the orders tests share besides fixtures: the example order, and a merchant made
through the admin API."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from shared.settings import DEV_ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}

ORDER = {
    "external_id": "HM-0001",
    "pickup": {
        "name": "Shop Hoa Mai",
        "phone": "0912 345 678",
        "address": "12 Lê Thánh Tông, Hồng Gai, Hạ Long, Quảng Ninh",
        "lat": 20.9511,
        "lng": 107.0735,
    },
    "dropoff": {
        "name": "Nguyễn Văn An",
        "phone": "0987654321",
        "address": "45 Trần Hưng Đạo, Bãi Cháy, Hạ Long, Quảng Ninh",
        "lat": 20.9586,
        "lng": 107.0452,
    },
    "parcel": {"weight_grams": 1200, "description": "Áo dài lụa", "value_vnd": 850000},
    "cod_amount_vnd": 850000,
    "note": "Gọi trước khi giao",
}


def order_body(**changes: Any) -> dict[str, Any]:
    """The example order with top-level fields changed (None removes a field)."""
    body = copy.deepcopy(ORDER)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


async def new_merchant(client: httpx.AsyncClient, name: str = "Shop Hoa Mai") -> dict[str, Any]:
    """A merchant created by the admin, with `headers` that authenticate as it."""
    r = await client.post("/v1/admin/merchants", json={"name": name, "phone": "0912 345 678"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body = r.json()
    return {**body, "headers": {"Authorization": f"Bearer {body['api_key']}"}}
