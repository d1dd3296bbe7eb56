"""The reader behind `table()`, the dashboard and the CLI: one consistent snapshot per table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageConfig, UsageReader, UsageStatsError
from usage_stats.db.store import Store
from usage_stats.tables.read import Reader


class ClosesADayMidway:
    """A connection on which another process closes the day between two of the reader's queries."""

    def __init__(self, conn: asyncpg.Connection, close_day: Any) -> None:
        self._conn = conn
        self._close_day = close_day
        self.queries = 0

    def transaction(self, **options: Any) -> Any:
        return self._conn.transaction(**options)

    def is_in_transaction(self) -> bool:
        return self._conn.is_in_transaction()

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        result = await self._conn.fetch(*args, **kwargs)
        self.queries += 1
        if self.queries == 4:  # marks, the levels' spans, counts, stored distinct rows: then the live keys
            await self._close_day()
        return result

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._conn.fetchval(*args, **kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._conn.execute(*args, **kwargs)


async def test_a_day_closed_while_a_table_is_read_is_counted_once(
    make_stats: StatsFactory, clock: FakeClock, pg_dsn: str
) -> None:
    async with make_stats() as stats, make_stats() as other_worker:
        for user in ("ann", "bob", "cid"):
            stats.seen_user(user)
        await stats.flush()
        day = clock.now
        clock.set(stats.calendar.day_start(day.date() + timedelta(days=1)) + stats.grace)  # due, not yet closed
        conn = await asyncpg.connect(pg_dsn)
        try:
            racing = ClosesADayMidway(conn, other_worker.maintain)
            store = Store(None, stats.config.schema, pg_dsn, conn=cast(asyncpg.Connection, racing))
            table = await Reader(store, stats.config).table("day", now=clock.now)
        finally:
            await conn.close()
        assert racing.queries == 5  # the day was closed before the last of them
        assert table.periods[0].get("seen", "user", "distinct") is not None
        assert table.periods[0].get("seen", "user", "distinct").value == 3  # type: ignore[union-attr]
        after = await stats.table("day")  # and after the close, from the stored distinct row
        assert after.periods[0].get("seen", "user", "distinct").value == 3  # type: ignore[union-attr]


async def test_usage_reader_reads_what_usage_stats_reads_and_writes_nothing(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        stats.add("/", "page", 3)
        stats.seen_user("ann")
        await stats.flush()
        await stats.mark("deploy")
        expected = {period: await stats.table(period) for period in ("day", "month", "base")}
        marks = await stats.marks()
        config = stats.config
    before = await db.fetchval(f'SELECT count(*) FROM "{schema}".marks')
    async with UsageReader(config) as reader:
        for period, table in expected.items():
            assert await reader.table(period, now=clock.now) == table
        assert await reader.marks() == marks
        assert (await reader.table("day", now=clock.now, categories="page")).total("page", "/") == 3
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".marks') == before


async def test_usage_reader_refuses_a_schema_without_statistics(pg_dsn: str, schema: str) -> None:
    with pytest.raises(UsageStatsError, match="holds no usage statistics"):
        async with UsageReader(UsageConfig(dsn=pg_dsn, schema=schema)):
            pass
    reader = UsageReader(UsageConfig(dsn=pg_dsn, schema=schema))
    with pytest.raises(UsageStatsError, match="not open"):
        await reader.table("day")


async def test_names_that_hold_the_separator_of_the_fast_read_are_read_whole(make_stats: StatsFactory) -> None:
    # Events travel joined by "\x1f"; a name holding it makes the reader fetch text arrays instead.
    async with make_stats() as stats:
        stats.add("a\x1fb", "page", 2)
        stats.add("\x1f", "page", 5)
        stats.add("/", "page", 1)
        stats.add("c", "api", 3)
        await stats.flush()
        for period in ("day", "month", "base"):
            rows = (await stats.table(period, categories=["page", "api"])).periods[0].rows
            assert [(r.category, r.event, r.value) for r in rows] == [
                ("api", "c", 3),
                ("page", "\x1f", 5),
                ("page", "a\x1fb", 2),
                ("page", "/", 1),
            ]
