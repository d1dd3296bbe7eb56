"""The flush ledger: one row per committed flush, so that a flush is never stored twice.

A flush claims its id in its own transaction (`claim`); an id already there means that an earlier
attempt of the same batch committed although its answer was lost. Rows are kept `KEEP_DAYS` days
(pruned by day-end maintenance): a batch whose outcome stays unknown for longer would be sent again.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from ..delivery import FlushId

__all__ = ["CLAIM", "KEEP_DAYS", "claim", "prune"]

KEEP_DAYS = 7

CLAIM = "INSERT INTO {s}.flush_ledger (process, seq, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"


async def claim(conn: asyncpg.Connection, s: str, flush: FlushId, at: datetime) -> bool:
    """Record `flush` in the current transaction; False when it is recorded already (committed before).

    `s` is the quoted schema name. Waits for a concurrent attempt of the same id to end.
    """
    status = await conn.execute(CLAIM.format(s=s), flush.process, flush.seq, at)
    return bool(status != "INSERT 0 0")


async def prune(conn: asyncpg.Connection, s: str, before: datetime) -> None:
    """Forget the flushes recorded before `before`."""
    await conn.execute(f"DELETE FROM {s}.flush_ledger WHERE at < $1", before)
