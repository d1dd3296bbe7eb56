"""Why the fleet's rate falls as it grows, in plain SQL (part of benchmark 8, `fleet.py`).

N connections of one process run, back to back, a transaction shaped like a flush: a row of its own
(the flush ledger's, which gives the transaction an ID) and then the additive upsert of the same
800 count rows as every other connection. Two ways, side by side on the same server:

- as flushes did before the queue lock: a transaction queued behind another one's rows waits inside its upsert,
  holding its transaction ID and its statement's snapshot, so PostgreSQL cannot prune the dead
  versions that the transactions ahead leave in those rows, and every flush walks them;
- queued first: the transaction starts with `LOCK TABLE counts IN SHARE ROW EXCLUSIVE MODE` (a lock
  that flushes take one at a time and readers ignore), which waits without an ID or a snapshot.

The figures: transactions per second and PostgreSQL CPU per transaction.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from .private_pg import PrivateServer

__all__ = ["VARIANTS", "compare"]

AT = datetime(2026, 3, 10, 12, tzinfo=UTC)
_TABLES = """
CREATE TABLE counts (level smallint, start timestamptz, category text, event text, value bigint,
                     PRIMARY KEY (level, start, category, event)) WITH (fillfactor = 90);
CREATE TABLE ledger (process uuid, seq bigint, PRIMARY KEY (process, seq));
"""
_UPSERT = """
INSERT INTO counts AS c (level, start, category, event, value)
SELECT 1, k.start, k.category, k.event, k.value
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::bigint[]) AS k(start, category, event, value)
ON CONFLICT (level, start, category, event)
DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, -9223372036854775808), 9223372036854775807)
"""
VARIANTS = {
    "as flushes did before the queue lock": (),
    "queued first (LOCK TABLE ... SHARE ROW EXCLUSIVE)": ("LOCK TABLE counts IN SHARE ROW EXCLUSIVE MODE",),
}


def _rows(routes: int, categories: tuple[str, ...]) -> tuple[list[object], ...]:
    keys = sorted((AT, c, f"/r{r}/items/{{item_id}}") for r in range(routes) for c in categories)
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [1] * len(keys)


async def _variant(
    server: PrivateServer, dsn: str, first: tuple[str, ...], n: int, seconds: float, rows: tuple[list[object], ...]
) -> tuple[float, float]:
    conns = [await asyncpg.connect(dsn) for _ in range(n)]
    done = 0

    async def loop(conn: asyncpg.Connection) -> None:
        nonlocal done
        process, seq = uuid.uuid4(), 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seq += 1
            async with conn.transaction():
                for statement in first:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO ledger VALUES ($1, $2)", process, seq)
                await conn.execute(_UPSERT, *rows)
            done += 1

    try:
        ticks, started = server.cpu_ticks(), time.monotonic()
        await asyncio.gather(*(loop(conn) for conn in conns))
        elapsed, used = time.monotonic() - started, server.cpu_ticks() - ticks
    finally:
        for conn in conns:
            await conn.close()
    return done / elapsed, used / os.sysconf("SC_CLK_TCK") * 1e3 / max(1, done)


async def compare(
    server: PrivateServer, dsn: str, *, n: int, seconds: float, routes: int, categories: tuple[str, ...]
) -> dict[str, tuple[float, float]]:
    """{variant: (transactions per second, PostgreSQL CPU ms per transaction)} with `n` connections,
    each variant on fresh tables of the server at `dsn` (dropped afterwards)."""
    rows = _rows(routes, categories)
    results: dict[str, tuple[float, float]] = {}
    for name, first in VARIANTS.items():
        setup = await asyncpg.connect(dsn)
        try:
            await setup.execute("DROP TABLE IF EXISTS counts, ledger")
            await setup.execute(_TABLES)
            await setup.execute(_UPSERT, *rows)
        finally:
            await setup.close()
        results[name] = await _variant(server, dsn, first, n, seconds, rows)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS counts, ledger")
    finally:
        await conn.close()
    return results
