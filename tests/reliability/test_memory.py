"""Issue 4.7: the in-memory state for a day with 1,000,000 distinct visitors stays bounded (the
counters ask for an early flush after `key_pressure` new keys), and is released once flushed."""

from __future__ import annotations

import gc
import time
import tracemalloc
from datetime import timedelta

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory

VISITORS = 1_000_000
BOUND_MB = 64  # the README's figure: at most this much for any number of visitors while the database is up
PER_MILLION_MB = 120  # the README's figure: held per million visitors while the database cannot be reached


def _network(i: int) -> str:
    """The i-th distinct /24 network, as the middleware passes it on after cutting the address."""
    return f"{1 + i // 65536}.{(i >> 8) & 255}.{i & 255}.0"


@pytest.mark.slow
async def test_a_million_visitors_a_day_stay_bounded_and_are_released(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:  # flush interval 1 h: only the early flushes run
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            largest = 0.0
            started = time.monotonic()
            seen = stats.recorder.counters.seen  # what UsageMiddleware calls for a visitor, after cutting the address
            for i in range(VISITORS):
                seen("v", "visitor", _network(i))
                if i % 250 == 249:
                    # A server yields between requests (one new key at most each); the flush takes its turns
                    # of the loop beside them (1,000 rows a turn), so recording 1,000 keys a turn would
                    # outrun any flush that shares the loop fairly.
                    await anyio.lowlevel.checkpoint()
                if i % 50_000 == 49_999:
                    largest = max(largest, stats.pending.total_keys)
            elapsed = time.monotonic() - started
            peak = (tracemalloc.get_traced_memory()[1] - base) / 1e6
            await stats.flush()
            gc.collect()
            released = (tracemalloc.get_traced_memory()[0] - base) / 1e6
        finally:
            tracemalloc.stop()
        print(
            f"\n{VISITORS:,} visitors in {elapsed:.1f} s (traced): peak {peak:.1f} MB, at most {largest:,.0f} "
            f"keys pending, {released:.2f} MB left after the flush"
        )
        assert peak < BOUND_MB
        assert largest <= 2 * stats.recorder.counters.key_pressure
        assert released < 2.0

        day = clock.now.date()
        clock.set(clock.now.replace(hour=0, minute=0) + timedelta(days=1) + stats.grace + timedelta(minutes=1))
        assert await stats.maintain() == [day]
        distinct = await db.fetchval(f'SELECT value FROM "{schema}".distinct_counts WHERE category = $1', "visitor")
        assert distinct == VISITORS
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".salts') == 0


async def test_visitors_held_while_the_database_is_down_cost_about_100_bytes_each(make_stats: StatsFactory) -> None:
    stats = make_stats()  # never started: nothing can be flushed, as during an outage
    n = 200_000
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        seen = stats.recorder.counters.seen
        for i in range(n):
            seen("v", "visitor", _network(i))
        held = (tracemalloc.get_traced_memory()[0] - base) / 1e6
        stats.recorder.counters.take()
        gc.collect()
        released = (tracemalloc.get_traced_memory()[0] - base) / 1e6
    finally:
        tracemalloc.stop()
    per_million = held * 1_000_000 / n
    print(f"\n{n:,} visitors held: {held:.1f} MB ({per_million:.0f} MB per million), {released:.2f} MB after taking")
    assert stats.pending.total_keys == 0
    assert per_million < PER_MILLION_MB
    assert released < 1.0
