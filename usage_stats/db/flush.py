"""Writing pending counts: one transaction of bulk, additive upserts (no statement per row)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from ..bounds import BIGINT_MAX, BIGINT_MIN, saturate
from ..counters import Pending
from ..delivery import Attempt, FlushId
from ..kinds import SeenKind
from ..periods import utc
from ..sanitise import clean_name
from . import ledger
from .isolate import ExecuteRows, RowGuard, execute_rows
from .migrations import LOCK_DAY_END, quote_ident
from .salts import load_salts
from .saturating import saturating

__all__ = ["FlushResult", "KeyEncoder", "write_pending"]

logger = logging.getLogger(__name__)

# (day, kind, value, salt or None) -> the bytes stored as the distinct key
KeyEncoder = Callable[[date, SeenKind, str, bytes | None], bytes]

KEY_CHUNK = 10_000  # distinct keys per INSERT statement

# Additive, saturating at the bounds of bigint (a stored sum that overflowed would fail every flush).
_UPSERT_COUNTS = saturating("""
INSERT INTO {s}.counts AS c (level, start, category, event, value)
SELECT $1, k.start, k.category, k.event, k.value
FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::bigint[]) AS k(start, category, event, value)
ON CONFLICT (level, start, category, event)
DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, {lo}), {hi})
""")

_INSERT_KEYS = """
INSERT INTO {s}.seen_keys (day, category, key)
SELECT * FROM unnest($1::date[], $2::text[], $3::bytea[])
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
    counts = _count_arrays(pending)
    days = [d for d, seen in pending.seen.items() if any(seen.values())]
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
        keys = 0
        for chunk in _key_chunks(pending, live_days, encode, salts):
            await execute(conn, _INSERT_KEYS.format(s=s), (), chunk, what="distinct key")
            keys += len(chunk[0])
        if counts[0]:
            await execute(conn, _UPSERT_COUNTS.format(s=s), (level,), counts, what="count row")
        attempt.committing = True  # all that is left is COMMIT: a failure from here leaves the outcome unknown
    attempt.committed = True
    return FlushResult(len(counts[0]), keys)


def _count_arrays(pending: Pending) -> tuple[list[object], list[str], list[str], list[int]]:
    merged: dict[tuple[int, str, str], int] = {}
    for start, counts in pending.counts.items():
        for (category, event), n in counts.items():
            if n:
                key = (start, clean_name(category), clean_name(event))
                merged[key] = merged.get(key, 0) + n
    # Sorted, so that concurrent flushes from several processes lock rows in the same order.
    ordered = sorted(merged.items())
    values = [n for _, n in ordered]
    if values and (min(values) < BIGINT_MIN or max(values) > BIGINT_MAX):
        logger.warning(
            "usage_stats: %d count(s) summed beyond the 64-bit range in memory; stored at the range's bound",
            sum(1 for n in values if saturate(n) != n),
        )
        values = [saturate(n) for n in values]
    return (
        [utc(k[0]) for k, _ in ordered],
        [k[1] for k, _ in ordered],
        [k[2] for k, _ in ordered],
        values,
    )


def _key_chunks(
    pending: Pending, days: list[date], encode: KeyEncoder, salts: dict[date, bytes] | None
) -> Iterator[tuple[list[date], list[str], list[bytes]]]:
    """The distinct keys to insert, encoded chunk by chunk (a day with a million visitors is neither
    copied whole nor hashed in one go on the event loop), in the same order in every process (day,
    category, value before encoding) so that concurrent flushes lock index entries alike."""
    for day in sorted(days):
        salt = None if salts is None else salts[day]
        groups = sorted(pending.seen[day].items(), key=lambda item: (clean_name(item[0][1]), item[0][0]))
        for (kind, category), values in groups:
            name = clean_name(category)
            ordered = sorted(values)
            for i in range(0, len(ordered), KEY_CHUNK):
                part = ordered[i : i + KEY_CHUNK]
                yield [day] * len(part), [name] * len(part), [encode(day, kind, value, salt) for value in part]
