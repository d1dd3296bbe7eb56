"""Writing pending counts: one transaction that copies the rows into temporary tables and merges
them into the stored ones with a statement or two per table (no statement per row, see `merge.py`).

Why this shape (measured in `benchmarks/flush.py`, see docs/performance.md): a binary `COPY` is the
cheapest way to hand PostgreSQL many rows (unlike parameter arrays, which the driver checks element by
element on the event loop), and the upsert that must follow for any keyed, additive store then runs
once per table, inside the server. The temporary tables live in the flush's transaction only
(`ON COMMIT DROP`), so a transaction-pooling proxy (pgbouncer) is no obstacle, and the role needs
`TEMPORARY` on the database (PUBLIC has it by default). The rows are made slice by slice, giving the
event loop a turn between slices (`flush_rows.py`).
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
from .merge import COPY_COUNTS, COPY_KEYS, CREATE_TEMP, INSERT_KEYS, UPSERT_COUNTS, merge_counts, merge_keys
from .migrations import LOCK_DAY_END, quote_ident
from .salts import load_salts

__all__ = ["FlushResult", "write_pending"]

logger = logging.getLogger(__name__)


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
        await conn.execute(CREATE_TEMP)
        counted, keyed = Numbered(), Numbered()
        for (table, columns), records in (
            (COPY_COUNTS, count_records(pending, counted)),
            (COPY_KEYS, key_records(pending, live_days, encode.encode_all, salts, keyed)),
        ):
            await conn.copy_records_to_table(table, records=records, columns=columns, schema_name="pg_temp")
        if guard is not None:  # the slow, sure way: each statement's rows halved until the refused ones are found
            await guard(conn, INSERT_KEYS.format(s=s), (), keyed.rows, what="distinct key")
            await guard(conn, UPSERT_COUNTS.format(s=s), (level,), counted.rows, what="count row")
        else:
            if keyed.rows:
                await merge_keys(conn, s, keyed.rows)
            if counted.rows:
                await merge_counts(conn, s, level, counted.rows)
        attempt.committing = True  # all that is left is COMMIT: a failure from here leaves the outcome unknown
    attempt.committed = True
    return FlushResult(counted.rows, keyed.rows)
