"""The plans PostgreSQL picks on a large table: tables over recent periods and roll-ups are index-served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.conftest import StatsFactory
from usage_stats.db import maintenance, query
from usage_stats.db.migrations import quote_ident
from usage_stats.db.periodkeys import PERIOD_OF

NOW = datetime(2026, 3, 10, tzinfo=UTC)
DAYS = [NOW - timedelta(days=d) for d in range(400, -1, -1)]  # period starts, as Python passes them


async def plan(db: asyncpg.Connection, sql: str, *args: object) -> str:
    lines = await db.fetch("EXPLAIN " + sql, *args)
    return "\n".join(r[0] for r in lines)


@pytest.fixture
async def big(make_stats: StatsFactory, db: asyncpg.Connection, schema: str) -> str:
    """120,000 count rows: two years of month rows, 90 days of day rows, 2 days of hourly rows."""
    async with make_stats():
        pass  # creates the schema
    s = quote_ident(schema)
    await db.execute(
        f"""INSERT INTO {s}.counts
            SELECT 3, $1::timestamptz - make_interval(months => m), 'page', 'e' || e, 1
            FROM generate_series(1, 24) m, generate_series(1, 2000) e;
            INSERT INTO {s}.counts
            SELECT 2, $1::timestamptz - make_interval(days => d), 'page', 'e' || e, 1
            FROM generate_series(1, 30) d, generate_series(1, 2000) e;
            INSERT INTO {s}.counts
            SELECT 1, $1::timestamptz - make_interval(hours => h), 'page', 'e' || e, 1
            FROM generate_series(1, 48) h, generate_series(1, 1000) e;
            ANALYZE {s}.counts""".replace("$1::timestamptz", f"'{NOW.isoformat()}'::timestamptz")
    )
    return s


async def test_recent_day_table_uses_the_primary_key(db: asyncpg.Connection, big: str) -> None:
    sql = query._COUNTS_PER_PERIOD.format(s=big, names=query._JOINED)
    # the day before yesterday as stored; yesterday and today with their hourly rows summed in
    lo = NOW - timedelta(days=3)
    text = await plan(db, sql, [2], [1], lo, NOW, None, DAYS[-4:-3], DAYS[-3:-2], DAYS[-3:-1], DAYS[-2:])
    assert "counts_pkey" in text
    assert "Seq Scan" not in text


async def test_month_table_of_a_few_months_uses_the_primary_key(db: asyncpg.Connection, big: str) -> None:
    sql = query._COUNTS_PER_PERIOD.format(s=big, names=query._JOINED)
    months = [datetime(2025, m, 1, tzinfo=UTC) for m in range(1, 5)]
    lo, hi = NOW - timedelta(days=400), NOW - timedelta(days=300)
    text = await plan(db, sql, [3, 4], [1, 2], lo, hi, None, months[:3], months[1:4], months[:1], months[1:2])
    assert "counts_pkey" in text
    assert "Seq Scan" not in text


async def test_rollup_of_old_base_rows_uses_the_primary_key(db: asyncpg.Connection, big: str) -> None:
    sql = maintenance._ROLL_COUNTS.format(s=big, parent=PERIOD_OF.format(starts="$4", column="start"))
    text = await plan(db, sql, 1, NOW - timedelta(hours=46), 2, DAYS[-3:])
    assert "counts_pkey" in text
    assert "Seq Scan on counts" not in text


async def test_a_table_read_goes_one_period_at_a_time_without_sorting(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    # A service's rows with the default retention: 200 events in 5 categories, 8 days of day rows,
    # 48 hours of hourly rows, 3 months of month rows, and category totals of 21 months before. Left
    # to its guesses for one period's slice, the planner sorted the rows (through the collation) to
    # group them; a table read turns sorts off for its own transaction.
    async with make_stats():
        pass  # creates the schema
    s = quote_ident(schema)
    await db.execute(
        f"""INSERT INTO {s}.counts
            SELECT 4, $1::timestamptz - make_interval(months => m), 'c' || c, '<all>', 1
            FROM generate_series(4, 24) m, generate_series(1, 5) c;
            INSERT INTO {s}.counts
            SELECT 3, $1::timestamptz - make_interval(months => m), 'c' || e % 5, 'e' || e, 1
            FROM generate_series(1, 3) m, generate_series(1, 200) e;
            INSERT INTO {s}.counts
            SELECT 2, $1::timestamptz - make_interval(days => d), 'c' || e % 5, 'e' || e, 1
            FROM generate_series(2, 9) d, generate_series(1, 200) e;
            INSERT INTO {s}.counts
            SELECT 1, $1::timestamptz - make_interval(hours => h), 'c' || e % 5, 'e' || e, 1
            FROM generate_series(1, 48) h, generate_series(1, 200) e;
            ANALYZE {s}.counts""".replace("$1::timestamptz", f"'{NOW.isoformat()}'::timestamptz")
    )
    sql = query._COUNTS_PER_PERIOD.format(s=s, names=query._JOINED)
    days, finer = DAYS[-10:-1], DAYS[-3:]  # 8 days as stored; the last two summed from hourly rows
    async with db.transaction():
        await db.execute(query.READ_SETTINGS)
        text = await plan(db, sql, [2], [1], DAYS[-10], NOW, None, days[:-1], days[1:], finer[:-1], finer[1:])
    assert "counts_pkey" in text
    assert "Sort" not in text
    assert "Seq Scan" not in text
