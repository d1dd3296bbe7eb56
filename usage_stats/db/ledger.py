"""The flush ledger: one row per committed flush, so that a flush is never stored twice.

A flush claims its id in its own transaction (`claim`); an id already there means that an earlier
attempt of the same batch committed although its answer was lost. Rows are kept `KEEP_DAYS` days
(pruned by day-end maintenance): a batch whose outcome stays unknown for longer would be sent again.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg

from ..delivery import FlushId

__all__ = ["KEEP_DAYS", "claim", "prune"]

KEEP_DAYS = 7

# With the state a flush reads anyway, so that the ledger costs a flush no round trip.
_CLAIM = """
WITH claimed AS (
    INSERT INTO {s}.flush_ledger (process, seq, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT FROM claimed) AS fresh, (SELECT maintained_through FROM {s}.state) AS done
"""


async def claim(conn: asyncpg.Connection, s: str, flush: FlushId, at: datetime) -> tuple[bool, date | None]:
    """Record `flush` in the current transaction, and read the last day that maintenance closed.

    Returns (False, ...) when `flush` is recorded already: an earlier attempt committed. `s` is the
    quoted schema name. Waits for a concurrent attempt of the same id to end.
    """
    row = await conn.fetchrow(_CLAIM.format(s=s), flush.process, flush.seq, at)
    assert row is not None
    return bool(row["fresh"]), row["done"]


async def prune(conn: asyncpg.Connection, s: str, before: datetime) -> None:
    """Forget the flushes recorded before `before`."""
    await conn.execute(f"DELETE FROM {s}.flush_ledger WHERE at < $1", before)
