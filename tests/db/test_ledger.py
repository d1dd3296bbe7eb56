"""Exactly-once flushes (issue 9, item 2): faults injected at chosen protocol messages of a flush."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import asyncpg
import httpx
import pytest

from tests.apps import shop_app
from tests.conftest import FakeClock
from tests.reliability.wire import WireProxy
from usage_stats import StoreUnavailableError, UsageConfig, UsageMiddleware, UsageStats
from usage_stats.db import flush, ledger

CLIENT = "198.51.100.7"


async def _requests(stats: UsageStats, n: int, offset: int = 0) -> None:
    app = shop_app()
    app.add_middleware(UsageMiddleware, stats=stats)
    transport = httpx.ASGITransport(app=app, client=(CLIENT, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for i in range(offset, offset + n):
            assert (await client.get(f"/items/{i}")).status_code == 200


async def _stored(db: asyncpg.Connection, schema: str) -> dict[tuple[str, str], int]:
    rows = await db.fetch(f'SELECT category, event, sum(value) AS n FROM "{schema}".counts GROUP BY 1, 2')
    return {(r["category"], r["event"]): int(r["n"]) for r in rows}


def _config(dsn: str, schema: str) -> UsageConfig:
    return UsageConfig(dsn=dsn, schema=schema, flush_interval=timedelta(hours=1))


async def _warm_up(stats: UsageStats) -> None:
    """A first flush, so that the day's salt is cached and the only COMMIT of a flush is its own."""
    stats.seen_visitor(CLIENT)
    await stats.flush()


@pytest.mark.parametrize("action", ["cut_after", "kill_after"])
async def test_a_lost_commit_reply_stores_the_flush_once(
    pg_dsn: str, schema: str, clock: FakeClock, db: asyncpg.Connection, action: str
) -> None:
    with WireProxy(pg_dsn) as proxy:
        async with UsageStats(_config(proxy.dsn, schema), clock=clock) as stats:
            await _warm_up(stats)
            await _requests(stats, 100)
            fault = proxy.arm("COMMIT", action, within="xact_lock_shared")  # the server commits, the answer is lost
            with pytest.raises(StoreUnavailableError):
                await stats.flush()
            assert fault.fired
            assert (await _stored(db, schema))[("status", "2xx")] == 100  # committed, although unanswered
            await _requests(stats, 50, offset=100)  # newer counts are not merged with the batch in doubt
            await stats.flush()
            assert (await _stored(db, schema))[("status", "2xx")] == 150
            await stats.flush()
    stored = await _stored(db, schema)
    assert stored[("status", "2xx")] == stored[("page", "/items/{item_id}")] == 150  # was 250
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 1


POINTS = [
    ("pg_advisory_xact_lock_shared", "kill_before"),  # before anything is written
    ("seen_keys", "kill_before"),  # during the writes
    ("counts AS c", "kill_before"),
    ("counts AS c", "cut_before"),
    ("COMMIT", "cut_before"),  # COMMIT never reaches the server
    ("COMMIT", "kill_before"),  # COMMIT sent, the backend killed first: not stored, resent
    ("COMMIT", "kill_after"),  # committed, then the backend killed before it answered: not resent
    ("COMMIT", "cut_after"),
]
COPY_POINTS = [  # a large flush copies its rows into temporary tables first
    ("CREATE TEMPORARY", "kill_before"),
    ('COPY "pg_temp"."flush_counts"', "cut_after"),  # the copy of the counts begun, its answer lost
    ('COPY "pg_temp"."flush_keys"', "kill_before"),  # the counts copied, the keys not yet
]


@pytest.mark.parametrize(
    ("match", "action", "copied"),
    [(*p, False) for p in POINTS] + [(*p, True) for p in POINTS + COPY_POINTS],
)
async def test_a_fault_anywhere_in_a_flush_leaves_exact_counts(
    pg_dsn: str,
    schema: str,
    clock: FakeClock,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    match: str,
    action: str,
    copied: bool,
) -> None:
    if copied:  # every flush takes the way of a large one
        monkeypatch.setattr(flush, "SMALL_FLUSH", 0)
    with WireProxy(pg_dsn) as proxy:
        async with UsageStats(_config(proxy.dsn, schema), clock=clock) as stats:
            await _warm_up(stats)
            await _requests(stats, 100)
            stats.seen_user("u1")
            fault = proxy.arm(match, action, within=None if match.startswith("pg_") else "xact_lock_shared")
            with pytest.raises(StoreUnavailableError):
                await stats.flush()
            assert fault.fired
            await _requests(stats, 20, offset=100)
            stats.seen_user("u2")
            await stats.flush()
            # The connection of a committed flush is killed before the next one starts.
            proxy.arm("pg_advisory_xact_lock_shared", "kill_before")
            await _requests(stats, 5, offset=120)
            with pytest.raises(StoreUnavailableError):
                await stats.flush()
            # Shutdown's final flush saves the rest.
    stored = await _stored(db, schema)
    assert stored[("status", "2xx")] == stored[("page", "/items/{item_id}")] == 125
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 3  # one visitor, two users


async def test_the_final_flush_settles_a_batch_in_doubt(
    pg_dsn: str, schema: str, clock: FakeClock, db: asyncpg.Connection
) -> None:
    with WireProxy(pg_dsn) as proxy:
        async with UsageStats(_config(proxy.dsn, schema), clock=clock) as stats:
            await _warm_up(stats)
            await _requests(stats, 100)
            proxy.arm("COMMIT", "cut_after", within="xact_lock_shared")
            with pytest.raises(StoreUnavailableError):
                await stats.flush()
            await _requests(stats, 10, offset=100)
    assert (await _stored(db, schema))[("status", "2xx")] == 110


async def test_every_flush_is_in_the_ledger_until_a_week_after(
    make_config: Callable[..., UsageConfig], clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with UsageStats(make_config(), clock=clock) as stats:
        for _ in range(3):
            stats.count("x", "test")
            await stats.flush()
        await stats.flush()  # nothing pending: no flush, no row
        rows = await db.fetch(f'SELECT process, seq FROM "{schema}".flush_ledger ORDER BY seq')
        assert [r["seq"] for r in rows] == [1, 2, 3]
        clock.advance(days=ledger.KEEP_DAYS)
        stats.count("x", "test")
        await stats.flush()
        await stats.maintain()
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".flush_ledger') == 4
        clock.advance(days=2)
        await stats.maintain()
        assert [r["seq"] for r in await db.fetch(f'SELECT seq FROM "{schema}".flush_ledger')] == [4]
