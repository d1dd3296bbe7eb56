"""Property-based: random sequences of counts, flushes and day ends conserve every total."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import FakeClock
from usage_stats import UsageConfig, UsageStats

Step = tuple[str, Any]

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.tuples(
                st.sampled_from(["page", "x'; DROP TABLE t;--"]),
                st.sampled_from(["/a", "<all>"]),
                st.integers(1, 1000),
            ),
        ),
        st.tuples(st.just("wait"), st.sampled_from([1, 15, 61, 180, 600, 1440, 2000])),  # minutes
        st.tuples(st.just("flush"), st.none()),
        st.tuples(st.just("day_end"), st.none()),
    ),
    min_size=1,
    max_size=60,
)


@example(  # two periods of one day rolled into one day row
    steps=[("add", ("page", "/a", 5)), ("wait", 61), ("add", ("page", "/a", 7)), ("day_end", None)],
    zone="UTC",
    base=60,
    start=datetime(2026, 1, 30, 22, tzinfo=UTC),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=steps,
    zone=st.sampled_from(["UTC", "Europe/London", "Asia/Kolkata", "America/New_York"]),
    base=st.sampled_from([1, 15, 60, 360, 1440]),
    start=st.sampled_from(  # month ends, and the nights before DST changes in New York and London
        [
            datetime(2026, 1, 30, 22, tzinfo=UTC),
            datetime(2026, 3, 7, 22, tzinfo=UTC),
            datetime(2026, 10, 24, 20, tzinfo=UTC),
        ]
    ),
)
async def test_counts_are_conserved(pg_dsn: str, steps: list[Step], zone: str, base: int, start: datetime) -> None:
    schema = "p_" + uuid.uuid4().hex[:12]
    clock = FakeClock(start)
    config = UsageConfig(
        dsn=pg_dsn,
        schema=schema,
        timezone=zone,
        base_period=timedelta(minutes=base),
        flush_interval=timedelta(hours=1),
        keep_base_days=0,
        keep_days=1,
        keep_event_months=1,
        keep_months=1000,
    )
    expected: dict[str, int] = {}
    try:
        async with UsageStats(config, clock=clock) as stats:
            for kind, arg in steps:
                if kind == "add":
                    category, event, n = arg
                    stats.add(event, category, n)
                    expected[category] = expected.get(category, 0) + n
                elif kind == "wait":
                    clock.advance(minutes=arg)
                elif kind == "flush":
                    await stats.flush()
                else:  # the next local midnight passes, and the grace period after it
                    await stats.flush()
                    tomorrow = stats.calendar.day_of(clock.now.timestamp()) + timedelta(days=1)
                    clock.set(stats.calendar.day_start(tomorrow) + stats.grace)
                    await stats.maintain()
            await stats.flush()
            month = await stats.table("month")
            day = await stats.table("day")
            base_table = await stats.table("base")
        got = {c: sum(r.value for p in month.periods for r in p.rows if r.category == c) for c in expected}
        assert got == expected
        conn = await asyncpg.connect(pg_dsn)
        try:
            stored = await conn.fetch(f'SELECT category, sum(value) FROM "{schema}".counts GROUP BY 1')
            assert {r[0]: r[1] for r in stored} == expected
        finally:
            await conn.close()
        # The day and base tables never show more than was recorded.
        for table in (day, base_table):
            for category, total in expected.items():
                assert sum(r.value for p in table.periods for r in p.rows if r.category == category) <= total
    finally:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
