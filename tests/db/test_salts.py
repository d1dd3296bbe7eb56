"""The `hashed` scheme's daily salt is used only once it is committed (issue 9, item 1)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from tests.reliability.wire import WireProxy
from usage_stats import StoreUnavailableError, UsageConfig, UsageStats


async def _distinct_visitors(stats: UsageStats) -> int:
    table = await stats.table("day")
    return sum(int(r.value) for p in table.periods for r in p.rows if r.kind == "distinct" and r.event == "visitor")


@pytest.mark.parametrize("action", ["kill_before", "cut_before"])
async def test_a_failed_flush_leaves_no_private_salt(
    pg_dsn: str, schema: str, clock: FakeClock, db: asyncpg.Connection, action: str
) -> None:
    with WireProxy(pg_dsn) as proxy:
        config = UsageConfig(dsn=proxy.dsn, schema=schema, flush_interval=timedelta(hours=1))
        async with UsageStats(config, clock=clock) as first:
            first.seen_visitor("192.0.2.1")
            first.count("/", "page")
            # The flush dies after the day's salt was made, while it writes the keys: rolled back.
            fault = proxy.arm("seen_keys", action)
            with pytest.raises(StoreUnavailableError):
                await first.flush()
            assert fault.fired
            await first.flush()  # the retry stores the key, hashed with a salt the database has
            async with UsageStats(config, clock=clock) as second:  # another worker, same visitor
                second.seen_visitor("192.0.2.77")
                await second.flush()
                assert await _distinct_visitors(second) == 1
        async with UsageStats(config, clock=clock) as restarted:  # a restart, same visitor again
            restarted.seen_visitor("192.0.2.200")
            await restarted.flush()
            assert await _distinct_visitors(restarted) == 1
    s = f'"{schema}"'
    assert await db.fetchval(f"SELECT count(*) FROM {s}.seen_keys") == 1
    assert await db.fetchval(f"SELECT count(*) FROM {s}.salts") == 1
    assert await db.fetchval(f"SELECT sum(value) FROM {s}.counts WHERE category = 'page'") == 1


async def test_no_salt_is_made_for_a_closed_day(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection
) -> None:
    """A key that arrives after its day was closed makes no salt (nothing would ever delete it)."""
    async with make_stats() as late, make_stats() as other:
        late.seen_visitor("192.0.2.1")  # not flushed before the day is closed by the other process
        clock.advance(days=2)
        assert await other.maintain()
        await late.flush()
        assert await db.fetchval(f'SELECT count(*) FROM "{late.config.schema}".salts') == 0
        assert await db.fetchval(f'SELECT count(*) FROM "{late.config.schema}".seen_keys') == 0
