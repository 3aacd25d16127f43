"""Bad input to the merchant API is a 4xx problem answer, never a 5xx, and stores nothing."""

from __future__ import annotations

import base64
import json

from tests.orders.support import order_body

ORDER_ID = "6f1c2d3e-8a9b-4c5d-9e0f-1a2b3c4d5e6f"


def problem(r) -> dict:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return r.json()


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_a_hand_made_cursor_is_422(client, merchant):
    cursors = [
        cursor_of(f"0001-01-01T00:00:00+14:00|{ORDER_ID}"),
        cursor_of(f"9999-12-31T23:59:59-14:00|{ORDER_ID}"),
        cursor_of(f"2025-01-01T00:00:00|{ORDER_ID}"),
        cursor_of("2025-01-01T00:00:00+00:00|nope"),
        "%%%",
        "x" * 500,
    ]
    for cursor in cursors:
        r = await client.get("/v1/orders", headers=merchant["headers"], params={"cursor": cursor})
        assert r.status_code == 422, (cursor, r.text)
        assert problem(r)["errors"][0]["loc"] == ["query", "cursor"]


async def test_text_with_a_nul_a_lone_surrogate_or_a_control_character_is_422(client, merchant, app):
    for text in ["Nguyễn\x00An", "Nguyễn \ud800 An", "Nguyễn \u202eAn", "Nguyễn \u2066An", "Nguyễn\x07An"]:
        dropoff = {**order_body()["dropoff"], "address": text}
        body = json.dumps(order_body(dropoff=dropoff, note=text))  # escapes a lone surrogate as \ud800
        r = await client.post(
            "/v1/orders", headers={**merchant["headers"], "content-type": "application/json"}, content=body
        )
        assert r.status_code == 422, (text, r.text)
        assert {tuple(e["loc"][1:]) for e in problem(r)["errors"]} == {("dropoff", "address"), ("note",)}
    assert await app.state.runtime.pool.fetchval("SELECT count(*) FROM orders") == 0
