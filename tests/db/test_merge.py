"""Merging a flush's rows: a row that another process stores while the flush inserts it as new is
added to (a count) or kept once (a key), never dropped nor counted twice, and without trying the
whole flush again."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime

import anyio
import asyncpg
import pytest

from usage_stats import UsageConfig
from usage_stats.anonymise import KeyEncoder
from usage_stats.counters import Pending
from usage_stats.db import flush
from usage_stats.db.levels import Level
from usage_stats.db.store import Store
from usage_stats.delivery import Attempt, Batch, FlushId
from usage_stats.kinds import VISITOR

DAY = date(2026, 3, 2)
NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)


async def _blocked_by(db: asyncpg.Connection, pid: int) -> None:
    with anyio.fail_after(30):
        while True:
            if await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid):
                return
            await anyio.sleep(0.01)


@pytest.mark.parametrize("copied", [False, True])
@pytest.mark.parametrize("table", ["counts", "seen_keys"])
async def test_a_row_stored_by_another_process_during_the_flush_is_merged(
    pg_dsn: str,
    schema: str,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    table: str,
    copied: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="usage_stats")
    if copied:  # the way of a large flush: copied, then inserted as new unless stored
        monkeypatch.setattr(flush, "SMALL_FLUSH", 0)
    s = f'"{schema}"'
    store = await Store.create(pg_dsn, schema)
    other = await asyncpg.connect(pg_dsn)
    try:
        await store.migrate(UsageConfig(dsn=pg_dsn, schema=schema, user_ids="database"))
        # The other process has inserted the row the flush brings as new, and not committed yet.
        tx = other.transaction()
        await tx.start()
        if table == "counts":
            await other.execute(f"INSERT INTO {s}.counts VALUES (1, $1, 'page', '/x', 5)", NOON)
        else:
            await other.execute(f"INSERT INTO {s}.seen_keys VALUES ($1, 'visitor', 'v1')", DAY)
        pending = Pending(
            {int(NOON.timestamp()): {("page", "/x"): 3, ("page", "/y"): 1}},
            {DAY: {(VISITOR, "visitor"): {"v1": None, "v2": None}}},
        )
        batch = Batch(FlushId(uuid.uuid4(), 1), pending)
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: store.write_flush(
                    batch, Attempt(), level=Level.BASE, encode=KeyEncoder("database"), salts=None, at=NOON
                )
            )
            await _blocked_by(db, other.get_server_pid())  # the flush waits for the other's row
            await tx.commit()
    finally:
        await other.close()
        await store.close()
    counts = {r["event"]: r["value"] for r in await db.fetch(f"SELECT event, value FROM {s}.counts")}
    assert counts == ({"/x": 8, "/y": 1} if table == "counts" else {"/x": 3, "/y": 1})
    keys = [bytes(r["key"]) for r in await db.fetch(f"SELECT key FROM {s}.seen_keys ORDER BY key")]
    assert keys == [b"v1", b"v2"]
    assert "refused" not in caplog.text  # the race was no data error: the flush was not tried again
