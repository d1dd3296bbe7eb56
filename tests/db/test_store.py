"""`Store`: the operations the rest of the package uses, on a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from usage_stats import StoreUnavailableError, UsageConfig
from usage_stats.anonymise import KeyEncoder
from usage_stats.counters import Pending
from usage_stats.db import maintenance
from usage_stats.db.levels import Level
from usage_stats.db.migrations import MIGRATIONS
from usage_stats.db.store import Store
from usage_stats.delivery import Attempt, Batch, FlushId
from usage_stats.periods import Calendar

DAY = date(2026, 3, 2)
NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)


async def test_a_store_migrates_writes_a_flush_once_maintains_and_reads_one_snapshot(
    pg_dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    config = UsageConfig(dsn=pg_dsn, schema=schema, base_period=timedelta(days=1), user_ids="database")
    calendar = Calendar(ZoneInfo("UTC"), config.base_period)
    store = await Store.create(pg_dsn, schema)
    try:
        assert await store.schema_version() is None
        done = await store.migrate(config)
        assert (done.applied, done.version) == (len(MIGRATIONS), MIGRATIONS[-1][0])
        assert done.settings == await store.settings()
        assert (await store.migrate(config)).applied == 0
        assert await store.prepare(config, NOON) == NOON  # go-live

        start = calendar.day_start_ts(DAY)
        pending = Pending({start: {("page", "/"): 3}}, {DAY: {("u", "user"): {"ann": None, "bob": None}}})
        batch = Batch(FlushId(uuid.uuid4(), 1), pending)
        encode = KeyEncoder("database")
        first, again = Attempt(), Attempt()
        assert (await store.write_flush(batch, first, level=Level.DAY, encode=encode, salts=None, at=NOON)).keys == 2
        assert first.committed
        again_result = await store.write_flush(batch, again, level=Level.DAY, encode=encode, salts=None, at=NOON)
        assert again_result.already_stored  # the ledger has its id
        assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts') == 3

        lo, hi = calendar.day_start(DAY), calendar.day_start(date(2026, 3, 3))
        rows = await store.snapshot(calendar, "day", levels=[Level.DAY], finer_levels=[], lo=lo, hi=hi, categories=None)
        assert rows.go_live == NOON
        assert [tuple(c) for c in rows.counts] == [(lo, "page", False, ["/"], [3])]
        assert [(k.day, k.category, k.keys) for k in rows.live_keys] == [(DAY, "user", 2)]

        plan = maintenance.plan(config, calendar, datetime(2026, 3, 4, 1, tzinfo=UTC).timestamp())
        assert await store.maintain(calendar, plan, first_day=DAY) == [DAY, date(2026, 3, 3)]
        assert await store.maintain(calendar, plan, first_day=DAY) == []
        await store.add_mark("deploy", "timeline", NOON)
        assert [(m.name, m.at) for m in await store.marks()] == [("go-live", NOON), ("deploy", NOON)]
    finally:
        await store.close()


async def test_a_read_only_store_cannot_write(pg_dsn: str, schema: str, db: asyncpg.Connection) -> None:
    config = UsageConfig(dsn=pg_dsn, schema=schema)
    async with Store.connect(pg_dsn, schema) as store:
        await store.migrate(config)
    async with Store.connect(pg_dsn, schema, read_only=True) as store:
        assert await store.schema_version() is not None
        with pytest.raises(StoreUnavailableError, match="read-only"):
            await store.add_mark("deploy", "timeline", NOON)
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".marks') == 0
