"""Writing pending counts: one transaction that copies the rows into temporary tables and merges
them into the stored ones with one statement per table (no statement per row).

Why this shape (measured in `benchmarks/flush.py`, see docs/performance.md): a binary `COPY` is the
cheapest way to hand PostgreSQL many rows (unlike parameter arrays, which the driver checks element by
element on the event loop), and the upsert that must follow for any keyed, additive store then runs
once per table, inside the server. The temporary tables live in the flush's transaction only
(`ON COMMIT DROP`), so a transaction-pooling proxy (pgbouncer) is no obstacle, and the role needs
`TEMPORARY` on the database (PUBLIC has it by default). The rows are made slice by slice, giving the
event loop a turn between slices (`flush_rows.py`), and sorted by the merging statements, so that
concurrent flushes from many processes take their row locks in the same order (no deadlock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from ..anonymise import KeyEncoder
from ..counters import Pending
from ..delivery import Attempt, FlushId
from . import ledger
from .flush_rows import Numbered, count_records, key_records
from .isolate import ExecuteRows, RowGuard, execute_rows
from .migrations import LOCK_DAY_END, quote_ident
from .salts import load_salts
from .saturating import saturating

__all__ = ["FlushResult", "write_pending"]

logger = logging.getLogger(__name__)

# Both in pg_temp, by name: no table of the app's search path can stand in for them.
_CREATE_TEMP = """
CREATE TEMPORARY TABLE flush_counts (n int, start timestamptz, category text, event text, value bigint)
ON COMMIT DROP;
CREATE TEMPORARY TABLE flush_keys (n int, day date, category text, key bytea) ON COMMIT DROP
"""
_COUNT_COLUMNS = ("n", "start", "category", "event", "value")
_KEY_COLUMNS = ("n", "day", "category", "key")

# Rows $2 < n <= $3 of the copied counts, added to what is stored, saturating at the bounds of bigint
# (a stored sum that overflowed would fail every flush); sorted, for the same lock order everywhere.
_UPSERT_COUNTS = saturating("""
INSERT INTO {s}.counts AS c (level, start, category, event, value)
SELECT $1, k.start, k.category, k.event, k.value FROM pg_temp.flush_counts AS k
WHERE k.n > $2 AND k.n <= $3
ORDER BY k.start, k.category, k.event
ON CONFLICT (level, start, category, event)
DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, {lo}), {hi})
""")

# Rows $1 < n <= $2 of the copied keys, each stored once (a key another process stored is skipped).
_INSERT_KEYS = """
INSERT INTO {s}.seen_keys (day, category, key)
SELECT k.day, k.category, k.key FROM pg_temp.flush_keys AS k
WHERE k.n > $1 AND k.n <= $2
ORDER BY k.day, k.category, k.key
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True)
class FlushResult:
    """What one flush wrote: count rows and distinct keys offered (keys of finished days are logged)."""

    count_rows: int
    keys: int
    already_stored: bool = False


async def write_pending(
    conn: asyncpg.Connection,
    schema: str,
    *,
    level: int,
    pending: Pending,
    encode: KeyEncoder,
    salts: dict[date, bytes] | None,
    flush: FlushId,
    at: datetime,
    attempt: Attempt,
    guard: RowGuard | None = None,
) -> FlushResult:
    """Write `pending` in one transaction.

    Counts are added to what is stored. Distinct keys go in once (duplicates from other processes
    are ignored); keys of a day that day-end maintenance has already processed are dropped and
    logged, never counted twice. `salts` (the `hashed` scheme) caches each day's shared salt, read or
    created in a transaction of its own first (see `salts.py`). With a `guard` (see
    `isolate.write_isolating`), rows that the database refuses are dropped instead of failing the flush.

    The transaction records `flush` in the ledger first; if it is there already (an earlier attempt
    committed), nothing is written and the result says `already_stored`. `attempt` tells the caller
    how far the write got when it fails: once COMMIT is sent the outcome is unknown.
    """
    s = quote_ident(schema)
    execute: ExecuteRows = execute_rows if guard is None else guard
    days = sorted(d for d, seen in pending.seen.items() if any(seen.values()))
    if salts is not None:
        await load_salts(conn, schema, days, salts)
    async with conn.transaction():
        # Shared: flushes run side by side, but never while a day is being closed.
        await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1), $2)", schema, LOCK_DAY_END)
        fresh, done = await ledger.claim(conn, s, flush, at)
        if not fresh:
            attempt.committing = True
            attempt.already_stored = True
            return FlushResult(0, 0, already_stored=True)
        live_days = [d for d in days if done is None or d > done]
        dropped = sum(len(v) for d in days if d not in live_days for v in pending.seen[d].values())
        if dropped:
            logger.warning(
                "usage_stats: dropped %d distinct keys of days already closed by maintenance "
                "(they arrived too late to be counted)",
                dropped,
            )
        await conn.execute(_CREATE_TEMP)
        counted, keyed = Numbered(), Numbered()
        await conn.copy_records_to_table(
            "flush_counts", records=count_records(pending, counted), columns=_COUNT_COLUMNS, schema_name="pg_temp"
        )
        await conn.copy_records_to_table(
            "flush_keys",
            records=key_records(pending, live_days, encode.encode_all, salts, keyed),
            columns=_KEY_COLUMNS,
            schema_name="pg_temp",
        )
        if keyed.rows:
            await execute(conn, _INSERT_KEYS.format(s=s), (), keyed.rows, what="distinct key")
        if counted.rows:
            await execute(conn, _UPSERT_COUNTS.format(s=s), (level,), counted.rows, what="count row")
        attempt.committing = True  # all that is left is COMMIT: a failure from here leaves the outcome unknown
    attempt.committed = True
    return FlushResult(counted.rows, keyed.rows)
