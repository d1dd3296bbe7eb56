"""Writing pending counts: one transaction, with the flush's id in the ledger, and its rows stored by
a statement or two per table, never a statement per row (see `merge.py`).

Why this shape (measured in `benchmarks/flush.py`, see docs/performance.md): up to `SMALL_FLUSH` rows
go as parameter arrays, in one statement per table. More rows are copied (binary `COPY`) into
temporary tables and merged from there: the driver checks arrays element by element on the event
loop, a `COPY` does not. The temporary tables live in the flush's transaction only (`ON COMMIT
DROP`), so a transaction-pooling proxy (pgbouncer) is no obstacle, and the role needs `TEMPORARY` on
the database (PUBLIC has it by default). The rows are made slice by slice, giving the event loop a
turn between slices (`flush_rows.py`).
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
from .isolate import RowGuard
from .merge import write_arrays, write_copied
from .migrations import LOCK_DAY_END, quote_ident
from .salts import load_salts

__all__ = ["SMALL_FLUSH", "FlushResult", "write_pending"]

logger = logging.getLogger(__name__)

SMALL_FLUSH = 2_000  # rows (counts and keys) at most that a flush sends as parameter arrays; more are copied


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
    days = sorted(d for d, seen in pending.seen.items() if any(seen.values()))
    if salts is not None:
        await load_salts(conn, schema, days, salts)
    async with conn.transaction():
        # Shared: flushes run side by side, but never while a day is being closed.
        await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1), $2)", schema, LOCK_DAY_END)
        # Then one flush at a time (readers are not held up): a flush queued here holds no transaction
        # id and has run no statement that needs a snapshot, whereas one that waited for another's rows
        # inside its upsert held both, and kept the dead row versions of every flush ahead of it from
        # being pruned (docs/scaling.md). After the lock above, which day-end maintenance takes before
        # the tables.
        await conn.execute(f"LOCK TABLE {s}.counts IN SHARE ROW EXCLUSIVE MODE")
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
        counted, keyed = Numbered(), Numbered()
        counts = count_records(pending, counted)
        keys = key_records(pending, live_days, encode.encode_all, salts, keyed)
        rows = sum(map(len, pending.counts.values())) + sum(len(v) for d in live_days for v in pending.seen[d].values())
        write = write_arrays if rows <= SMALL_FLUSH else write_copied
        await write(conn, s, level, counts, keys, (counted, keyed), guard)
        attempt.committing = True  # all that is left is COMMIT: a failure from here leaves the outcome unknown
    attempt.committed = True
    return FlushResult(counted.rows, keyed.rows)
