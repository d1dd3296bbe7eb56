from __future__ import annotations

import asyncpg

from tests.conftest import FakeClock, StatsFactory


async def test_counts_reach_the_database_and_the_table(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        stats.count("/items/{item_id}", "page")
        stats.count("/items/{item_id}", "page")
        stats.seen_user(42)
        stats.seen_visitor("192.0.2.7")
        stats.seen_visitor("192.0.2.99")
        await stats.flush()
        table = await stats.table("day")
    rows = await db.fetch(f'SELECT category, event, value FROM "{schema}".counts')
    assert [tuple(r) for r in rows] == [("page", "/items/{item_id}", 2)]
    assert table.periods[0].get("page", "/items/{item_id}").value == 2  # type: ignore[union-attr]
    assert table.periods[0].get("seen", "visitor", "distinct").value == 1  # type: ignore[union-attr]
    assert table.periods[0].get("seen", "user", "distinct").value == 1  # type: ignore[union-attr]
