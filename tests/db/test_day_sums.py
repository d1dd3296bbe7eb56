"""The month sums of day rows that maintenance keeps (`usage_stats/db/day_sums.py`): always equal to
the day rows they stand for, and a month table read with them equals one summed without them, over
random flushes (late ones into closed days too), maintenance runs (some days missed, some by a
process that knows nothing of the sums) and retention; a covered month's day rows are not read."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageStats
from usage_stats.bounds import BIGINT_MAX
from usage_stats.db import day_sums, query
from usage_stats.db.levels import Level
from usage_stats.db.settings import Settings, change_settings
from usage_stats.periods import Calendar

# For each covered month: its sums as stored, and as summed from its day rows now (bucketed by the
# calendar table, which maintenance fills).
_STORED = 'SELECT month, category, event, value, days FROM "{s}".day_sums ORDER BY 1, 2, 3'
_SUMMED = """
SELECT m.start, c.category, c.event, sum(c.value::numeric), count(*)
FROM "{s}".calendar AS m JOIN "{s}".day_sums_months AS d ON d.month = m.start
JOIN "{s}".counts AS c ON c.level = 2 AND c.start >= m.start AND c.start < m.stop
WHERE m.period = 'month' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def _figures(table: object) -> list[tuple[object, ...]]:
    return [(p.start, r.category, r.event, r.kind, r.value) for p in table.periods for r in p.rows]  # type: ignore[attr-defined]


async def _month_without_sums(stats: UsageStats, monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    with monkeypatch.context() as patch:
        patch.setattr(day_sums, "kept", lambda calendar: False)
        return _figures(await stats.table("month"))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_month_table_with_the_sums_equals_it_summed_without(
    make_stats: StatsFactory,
    clock: FakeClock,
    db: asyncpg.Connection,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
) -> None:
    rnd = random.Random(seed)
    clock.set(datetime(2026, 1, 27, 15, tzinfo=UTC))
    events = [("page", "/a"), ("page", "/b"), ("api", "/x"), ("file", "/f")]
    used = 0
    keep_days = {1: 3, 2: 20, 3: 70}[seed]  # 70: day rows older than `keep_months` are deleted, not rolled
    config = {"keep_base_days": 1, "keep_days": keep_days, "keep_event_months": 1, "keep_months": 1}
    # Havana: months start at local midnight, and DST ends at midnight (two midnights in a day)
    async with make_stats(timezone="America/Havana", **config) as stats:
        for _ in range(45):
            for _ in range(rnd.randint(0, 4)):
                category, event = rnd.choice(events)
                stats.add(event, category, rnd.choice([1, 2, 7, BIGINT_MAX // 3]))
            if rnd.random() < 0.3:  # a late flush, into a day maintenance closed already
                late = clock.now - timedelta(days=rnd.randint(1, 6), hours=rnd.randint(0, 23))
                stats.recorder.counters.add("page", "/late", rnd.randint(1, 5), late.timestamp())
            await stats.flush()
            clock.set(clock.now + timedelta(days=rnd.choice([1, 1, 1, 3, 9]), hours=rnd.randint(0, 5)))
            if rnd.random() < 0.15:  # a process of a version before the sums maintains
                with monkeypatch.context() as patch:
                    patch.setattr(day_sums, "kept", lambda calendar: False)
                    await stats.maintain()
            else:
                await stats.maintain()
            state = await db.fetchrow(f'SELECT day_sums_through, maintained_through FROM "{schema}".state')
            assert state is not None
            if state[0] == state[1]:  # else the sums are stale, and not read
                stored = [tuple(r) for r in await db.fetch(_STORED.format(s=schema))]
                assert stored == [tuple(r) for r in await db.fetch(_SUMMED.format(s=schema))]
                used = max(used, len(stored))
            assert _figures(await stats.table("month")) == await _month_without_sums(stats, monkeypatch)
    assert used > 0  # the sums were there to read


async def test_a_covered_month_is_read_without_its_day_rows(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_stats():
        pass  # the schema
    s = f'"{schema}"'
    await db.execute(
        f"""INSERT INTO {s}.counts (level, start, category, event, value)
            SELECT 2, '2026-02-01T00:00Z'::timestamptz + d * interval '1 day', 'page', '/e' || e, d + e
            FROM generate_series(0, 27) d, generate_series(1, 50) e"""
    )
    await db.execute(f"INSERT INTO {s}.counts VALUES (1, '2026-02-03T05:00Z', 'page', '/e1', 1000)")
    calendar = Calendar(ZoneInfo("UTC"), timedelta(hours=1))
    async with db.transaction():
        await day_sums.cover(db, s, calendar)

    # rows read from `counts` by this backend, by sequential scans and from its indexes (counters
    # not yet sent to the statistics, so read just before and after)
    counter = f"""SELECT pg_stat_get_xact_tuples_returned('{s}.counts'::regclass)
                         + (SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index
                            WHERE indrelid = '{s}.counts'::regclass)"""

    async def month() -> tuple[int, list[tuple[object, ...]]]:
        async with db.transaction():
            before = await db.fetchval(counter)
            rows = await query.count_rows(
                db,
                schema,
                period="month",
                calendar=calendar,
                levels=[Level.MONTH, Level.MONTH_TOTAL],
                finer_levels=[Level.BASE, Level.DAY],
                lo=datetime(2026, 1, 1, tzinfo=UTC),
                hi=datetime(2026, 4, 1, tzinfo=UTC),
                categories=None,
            )
            rows_read = await db.fetchval(counter) - before
        return rows_read, sorted(
            (r.start, r.category, e, v) for r in rows for e, v in zip(r.events, r.values, strict=True)
        )

    read, summed = await month()
    with monkeypatch.context() as patch:
        patch.setattr(day_sums, "kept", lambda calendar: False)
        read_all, summed_all = await month()
    assert read_all >= 28 * 50  # without the sums, every day row
    assert read < 50  # with them: the month's base row and the probes of its spans
    assert summed == summed_all
    await db.execute(f"DROP TABLE {s}.day_sums, {s}.day_sums_months")  # a schema before migration 0005
    assert (await month())[1] == summed_all
    assert ("/e1", 28 * 1 + sum(range(28)) + 1000) in [(e, v) for _, _, e, v in summed]


async def test_a_new_time_zone_or_base_period_forgets_the_sums(
    db: asyncpg.Connection, schema: str, make_stats: StatsFactory
) -> None:
    async with make_stats():
        pass
    s = f'"{schema}"'
    await db.execute(f"INSERT INTO {s}.day_sums_months VALUES ('2026-02-01T00:00Z')")
    await db.execute(f"INSERT INTO {s}.day_sums VALUES ('2026-02-01T00:00Z', 'page', '/a', 0, 1)")
    await change_settings(db, schema, Settings("UTC", timedelta(hours=1), "database"))  # not the months
    assert await db.fetchval(f"SELECT count(*) FROM {s}.day_sums") == 1
    await change_settings(db, schema, Settings("Europe/Paris", timedelta(hours=1), "database"))
    assert await db.fetchval(f"SELECT count(*) FROM {s}.day_sums") == 0
    assert await db.fetchval(f"SELECT count(*) FROM {s}.day_sums_months") == 0
