"""Writing a flush (issue 12, items 2-3): the event loop gets a turn between slices of a large flush,
the temporary tables live in the flush's transaction only, and concurrent flushes of the same keys
in any order never deadlock; and (item 5, `benchmarks/fleet.py`) what a flush holds while it waits
for another flush's rows."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import anyio
import asyncpg
import pytest
from anyio.lowlevel import checkpoint

from tests.conftest import StatsFactory
from usage_stats import UsageConfig
from usage_stats.anonymise import KeyEncoder
from usage_stats.counters import CountKey, KeySet, Pending, SeenKey
from usage_stats.db import flush
from usage_stats.db.flush_rows import SLICE
from usage_stats.db.levels import Level
from usage_stats.db.store import Store
from usage_stats.delivery import Attempt, Batch, FlushId
from usage_stats.kinds import VISITOR

DAY = date(2026, 3, 2)
NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)
START = int(NOON.timestamp())


class Taken:
    """How many counts and keys the flush has read so far (it reads each once)."""

    def __init__(self) -> None:
        self.n = 0


class CountingDict(dict[CountKey, int]):
    def __init__(self, taken: Taken, *args: Any) -> None:
        super().__init__(*args)
        self.taken = taken

    def items(self) -> Iterator[tuple[CountKey, int]]:  # type: ignore[override]
        for item in super().items():
            self.taken.n += 1
            yield item


class CountingKeys(dict[str, None]):
    def __init__(self, taken: Taken, keys: Iterable[str]) -> None:
        super().__init__(dict.fromkeys(keys))
        self.taken = taken

    def __iter__(self) -> Iterator[str]:
        for value in super().__iter__():
            self.taken.n += 1
            yield value


async def _store(dsn: str, schema: str, **settings: Any) -> Store:
    store = await Store.create(dsn, schema)
    await store.migrate(UsageConfig(dsn=dsn, schema=schema, **settings))
    return store


async def test_a_large_flush_gives_the_event_loop_a_turn_between_slices(
    pg_dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    """Before: a flush of 20,000 counts and 20,000 keys read them all in one step of the event loop
    (every request in flight on the worker waited, 388 ms for 100,000 + 100,000 keys)."""
    n = 20_000
    taken = Taken()
    pending = Pending(
        {START: CountingDict(taken, {("page", f"/e{i}"): 1 + i % 3 for i in range(n)})},
        {DAY: {(VISITOR, "visitor"): CountingKeys(taken, (f"10.{i // 256}.{i % 256}.0" for i in range(n)))}},
    )
    store = await _store(pg_dsn, schema)
    steps: list[int] = []  # how many counts and keys the flush had read each time the loop came round
    try:
        async with anyio.create_task_group() as tg:

            async def ticker() -> None:
                while True:
                    steps.append(taken.n)
                    await checkpoint()

            tg.start_soon(ticker)
            await checkpoint()
            result = await store.write_flush(
                Batch(FlushId(uuid.uuid4(), 1), pending),
                Attempt(),
                level=Level.BASE,
                encode=KeyEncoder("hashed"),
                salts={},
                at=NOON,
            )
            steps.append(taken.n)
            tg.cancel_scope.cancel()
    finally:
        await store.close()
    assert (result.count_rows, result.keys) == (n, n)
    assert taken.n >= 2 * n  # everything was read
    longest = max(b - a for a, b in itertools.pairwise(steps))
    assert longest <= SLICE, longest  # one slice (500 rows); was 20,000: the whole batch in one go
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts') == sum(1 + i % 3 for i in range(n))
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == n


async def test_the_temporary_tables_live_in_the_flush_transaction_only(
    pg_dsn: str, schema: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a transaction-pooling proxy the next transaction may run on another server connection:
    nothing of a flush is left on its connection, and flush after flush reuses it."""
    monkeypatch.setattr(flush, "SMALL_FLUSH", 0)  # copied, as a large flush is
    config = UsageConfig(dsn=pg_dsn, schema=schema, user_ids="database")
    async with Store.connect(pg_dsn, schema) as store:
        await store.migrate(config)
        for seq in (1, 2, 3):
            pending = Pending({START: {("page", "/"): seq}}, {DAY: {(VISITOR, "visitor"): {f"v{seq}": None}}})
            batch = Batch(FlushId(uuid.uuid4(), seq), pending)
            await store.write_flush(
                batch, Attempt(), level=Level.BASE, encode=KeyEncoder("database"), salts=None, at=NOON
            )
            async with store.connection() as conn:
                assert not conn.is_in_transaction()
                assert await conn.fetchval("SELECT to_regclass('pg_temp.flush_counts')") is None
                assert await conn.fetchval("SELECT to_regclass('pg_temp.flush_keys')") is None
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts') == 6
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 3


async def test_concurrent_flushes_of_the_same_keys_in_any_order_never_deadlock(
    pg_dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    """Four processes flush the same new count rows and keys at once, each in its own order: flushes
    queue for the counts table one at a time, and the statements that store the rows sort them (with
    neither, this deadlocks)."""
    rounds, writers, n = 3, 4, 2_000
    stores = [await _store(pg_dsn, schema, user_ids="database") for _ in range(writers)]
    rng = random.Random(12)
    try:
        for r in range(rounds):

            async def write(store: Store, seq: int, r: int = r) -> None:
                keys = [(f"c{i % 7}", f"/e{i}") for i in range(n)]
                values = [f"user-{i}" for i in range(n)]
                rng.shuffle(keys)
                rng.shuffle(values)
                seen: dict[date, dict[SeenKey, KeySet]] = {DAY: {(VISITOR, "visitor"): dict.fromkeys(values)}}
                pending = Pending({START + r * 3600: dict.fromkeys(keys, 1)}, seen)
                await store.write_flush(
                    Batch(FlushId(uuid.uuid4(), seq), pending),
                    Attempt(),
                    level=Level.BASE,
                    encode=KeyEncoder("database"),
                    salts=None,
                    at=NOON + timedelta(hours=r),
                )

            async with anyio.create_task_group() as tg:
                for i, store in enumerate(stores):
                    tg.start_soon(write, store, i + 1)
    finally:
        for store in stores:
            await store.close()
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".counts') == rounds * n
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts') == rounds * n * writers
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == n


# The backend of this test's UsageStats that waits on a lock, with what it holds meanwhile (its statement
# names the test's schema: other tests' flushes may be waiting in the same database at the same time).
_WAITING = """
SELECT pid, wait_event, backend_xid, backend_xmin FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'usage_stats' AND wait_event_type = 'Lock'
AND strpos(query, $1) > 0
"""


async def _waiting_backend(db: asyncpg.Connection, schema: str) -> asyncpg.Record:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = await db.fetchrow(_WAITING, f'"{schema}"')
        if row is not None:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError("the flush never waited for the rows another transaction holds")


async def test_a_flush_waiting_for_the_same_rows_queues_on_the_table_without_a_transaction_id(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, pg_dsn: str
) -> None:
    """Every worker flushes the same routes, so flushes wait for each other's rows. The code before
    waited inside its upsert, for the row (`transactionid`), holding a transaction id and its
    statement's snapshot, which kept the dead row versions of every flush ahead from being pruned:
    with N flushes queued each flush walked N versions (benchmarks/fleet.py measured PostgreSQL's CPU
    per flush at 3.5 ms alone and 71 ms with 128 writers). A flush now queues on the table lock
    (`relation`) first, before it has a transaction id or runs a statement that needs a snapshot.
    (Its `backend_xmin` may still be set while it waits: PostgreSQL keeps the catalog snapshot of a
    lookup made while taking the lock, seen in about one run in four here; a catalog snapshot, not
    the statement's.)"""
    async with make_stats() as stats:
        stats.add("/items/{item_id}", "page", 1)
        await stats.flush()
        # Another flush in progress: it has updated the row and not committed yet.
        other = await asyncpg.connect(pg_dsn)
        try:
            held = other.transaction()
            await held.start()
            await other.execute(f'UPDATE "{schema}".counts SET value = value + 1 WHERE event = $1', "/items/{item_id}")
            stats.add("/items/{item_id}", "page", 2)
            flush = asyncio.create_task(stats.flush())
            try:
                waiting = await _waiting_backend(db, schema)
                holds = {"waits for": waiting["wait_event"], "transaction id": waiting["backend_xid"]}
            finally:
                await held.rollback()  # the other flush fails; this one goes on
                await flush
        finally:
            await other.close()
        assert await db.fetchval(f'SELECT value FROM "{schema}".counts WHERE event = $1', "/items/{item_id}") == 3
        assert holds == {"waits for": "relation", "transaction id": None}
