"""The example app in-process, through its lifespan: pages, sign-in, a business event, /stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from example_app.app import create_app
from usage_stats import UsageConfig


async def test_example_app_counts_what_it_serves(make_config: Callable[..., UsageConfig]) -> None:
    app = create_app(make_config())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.14", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert "Example shop" in (await client.get("/")).text
            assert (await client.get("/items/1")).json() == {"id": 1, "name": "teapot"}
            assert (await client.get("/items/2")).status_code == 200
            assert (await client.get("/items/99")).status_code == 404
            assert (await client.post("/items/3/buy")).json() == {"bought": "cup"}
            assert (await client.get("/account")).status_code == 401
            assert (await client.get("/health")).json() == {"status": "ok"}  # excluded
            assert (await client.get("/no-such-page")).status_code == 404
            signed_in = await client.get("/login", params={"name": "alice"})
            assert signed_in.status_code == 303
            assert (await client.get("/account")).json() == {"user": "alice"}
            assert (await client.get("/account")).json() == {"user": "alice"}
            response = await client.get("/stats")
            assert response.status_code == 200
            data: dict[str, Any] = response.json()
            monthly = (await client.get("/stats", params={"period": "month"})).json()
            assert (await client.get("/stats", params={"period": "week"})).status_code == 400

    assert data["period"] == "day"
    totals: dict[tuple[str, str, str], float] = {}
    for row in data["rows"]:
        key = (row["category"], row["event"], row["kind"])
        totals[key] = totals.get(key, 0) + row["value"]
    assert totals == {
        ("page", "/", "count"): 1,
        ("page", "/items/{item_id}", "count"): 3,
        ("page", "/items/{item_id}/buy", "count"): 1,
        ("page", "/account", "count"): 3,
        ("page", "/login", "count"): 1,
        ("bad-req", "not-found", "count"): 1,
        ("business", "purchase", "count"): 1,
        ("status", "2xx", "count"): 6,
        ("status", "3xx", "count"): 1,
        ("status", "4xx", "count"): 3,
        ("seen", "user", "distinct"): 1,
        ("seen", "visitor", "distinct"): 1,
    }
    assert monthly["period"] == "month"
    assert {(r["category"], r["event"]) for r in monthly["rows"]} >= {("business", "purchase")}
