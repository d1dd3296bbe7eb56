"""Issue 4.6: a scanner with a million distinct paths or event names: memory and rows stay bounded by
`max_keys_per_period` (the overflow counted in `<other>`), and real events keep being counted exactly."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageMiddleware
from usage_stats.counters import OTHER

MAX_KEYS = 1000


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _get(app: Any, path: str) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("192.0.2.7", 4000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return status


async def _rows_per_period(db: asyncpg.Connection, schema: str) -> dict[tuple[object, str], int]:
    rows = await db.fetch(f'SELECT start, category, count(*) FROM "{schema}".counts GROUP BY 1, 2')
    return {(r[0], r[1]): r[2] for r in rows}


async def test_a_scanner_of_unknown_paths_makes_one_key(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(max_keys_per_period=MAX_KEYS) as stats:
        app = UsageMiddleware(Starlette(routes=[Route("/items/{item_id:int}", _page)]), stats=stats)
        for i in range(20_000):
            assert await _get(app, f"/wp-admin/{i}/.env") == 404
            if i % 100 == 0:
                assert await _get(app, f"/items/{i}") == 200
        await stats.flush()
    counts = {(r[0], r[1]): r[2] for r in await db.fetch(f'SELECT category, event, value FROM "{schema}".counts')}
    assert counts == {
        ("bad-req", "not-found"): 20_000,
        ("page", "/items/{item_id}"): 200,
        ("status", "4xx"): 20_000,
        ("status", "2xx"): 200,
    }


@pytest.mark.slow
async def test_a_million_distinct_event_names_stay_bounded(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats(max_keys_per_period=MAX_KEYS) as stats:
        most = 0
        for i in range(1_000_000):
            if i % 100 == 0:  # real traffic, interleaved with the attack
                stats.count("checkout", "business")
                stats.count("/items/{item_id}", "page")
            stats.count(f"'; DROP TABLE counts; -- {i}", "business")
            if i % 100_000 == 99_999:  # the flush loop runs many times in a base period
                most = max(most, max(len(c) for c in stats.pending.counts.values()))
                await stats.flush()
                if i == 499_999:
                    clock.advance(hours=1)  # a new base period in the middle of the attack
        await stats.flush()
    rows = await db.fetch(f'SELECT category, event, sum(value) FROM "{schema}".counts GROUP BY 1, 2')
    counts = {(r[0], r[1]): r[2] for r in rows}
    assert counts[("business", "checkout")] == 10_000  # real events exact
    assert counts[("page", "/items/{item_id}")] == 10_000
    assert sum(n for (category, _), n in counts.items() if category == "business") == 1_010_000
    assert counts[("business", OTHER)] > 990_000
    assert most <= MAX_KEYS + 1  # memory: at most max_keys count keys per period between flushes
    per_period = await _rows_per_period(db, schema)
    assert len(per_period) == 4  # two periods, two categories
    assert all(n <= MAX_KEYS + 1 for n in per_period.values()), per_period  # rows: bounded per period
