"""Reading: the rows of a table (rolled-up and not-yet-rolled-up rows merged) and the marks.

Every statement runs inside an explicit transaction (the caller's or its own), so that behind a
transaction-pooling proxy (pgbouncer) its parse and execute steps reach the same server connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from ..periods import Calendar, PeriodName
from . import day_sums
from .levels import Level
from .migrations import quote_ident
from .periodkeys import period_starts
from .rows import LiveKeys, MarkRow, PeriodCounts, StoredDistinct
from .saturating import saturating

__all__ = [
    "add_mark",
    "count_rows",
    "distinct_rows",
    "go_live",
    "marks",
]


def _transaction(conn: asyncpg.Connection) -> AbstractAsyncContextManager[Any]:
    """A transaction of its own, unless the caller has one already (no savepoint round trips then)."""
    return nullcontext() if conn.is_in_transaction() else conn.transaction()


# For the statements of one table read (`SET LOCAL`: this transaction only). Its statements are
# short, and compiling them (JIT, which the planner's cost estimate of a large table's grouping
# turns on) costs more than it saves. And the planner's row counts for one period's slice of the
# primary key are generic guesses, on which it sorts thousands of rows (through the collation) to
# group them where a hash over a few hundred groups, or the primary key's own order, is what the
# data needs: without sorts it takes those (`tests/test_indexes.py`).
READ_SETTINGS = "SET LOCAL jit = off; SET LOCAL enable_sort = off"

# One row per period, category and kind (count or total), with its events and values as columns:
# a few wide rows instead of one per figure (the driver makes no record per figure). The events
# travel as one text joined with `SEPARATOR`, which the client splits at C speed; a name that holds
# the separator itself (a count that does not match) makes the reader ask again for text arrays
# (`{names}` below). Python gives the periods, from `Calendar` (see `periodkeys`): those of the
# rows stored at the table's granularity ($6, ending at $7), read as they are, and those that rows
# not rolled up yet fall in ($8, ending at $9), whose rows are summed per event (saturating at the
# bounds of bigint, as roll-ups do) and sent apart: the reader adds the two (see `tables.build`).
# Either way PostgreSQL reads one period at a time along the primary key: a small group per
# period, never a sort or a hash of the whole range (which the planner picks on a guess, and
# spills to disk). The base table, a day or two of base periods, is one range grouped by start.
_OWN_ROWS = """
SELECT g.* FROM unnest($1::smallint[]) AS l(level), unnest($6::timestamptz[], $7::timestamptz[]) AS b(p, stop),
LATERAL (
    SELECT start, category, l.level = 4, {names}, array_agg(value)
    FROM {s}.counts
    WHERE level = l.level AND start >= b.p AND start < b.stop AND start >= $3 AND start < $4
      AND ($5::text[] IS NULL OR category = ANY($5::text[]))
    GROUP BY start, category
) AS g
"""
_FINER_ROWS = """
SELECT b.p, f.category, false, {names}, array_agg(f.value)
FROM unnest($8::timestamptz[], $9::timestamptz[]) AS b(p, stop), LATERAL (
    SELECT category, event, least(greatest(sum(value), {lo}), {hi})::bigint AS value
    FROM {s}.counts
    WHERE level = ANY($2::smallint[]) AND start >= b.p AND start < b.stop AND start >= $3 AND start < $4
      AND ($5::text[] IS NULL OR category = ANY($5::text[]))
    GROUP BY 1, 2
) AS f
GROUP BY 1, 2
"""
_COUNTS_PER_PERIOD = saturating(_OWN_ROWS + "UNION ALL" + _FINER_ROWS)

# A month table where maintenance keeps the month sums of day rows (`day_sums`): the finer rows of
# a month it covers (and that [$3, $4) holds whole) are its base rows, summed, plus those sums, in
# place of its day rows ($10: the finer levels but the day), unless days were maintained without
# keeping the sums (`day_sums`). Other months are summed as above.
_CACHED_MONTHS = """
SELECT b.p, f.category, false, {names}, array_agg(f.value)
FROM unnest($8::timestamptz[], $9::timestamptz[]) AS b(p, stop)
CROSS JOIN LATERAL (
    SELECT b.p >= $3 AND b.stop <= $4 AND EXISTS (SELECT FROM {s}.day_sums_months WHERE month = b.p)
       AND (SELECT day_sums_through IS NOT DISTINCT FROM maintained_through FROM {s}.state) AS cached
) AS k,
LATERAL (
    SELECT category, event, least(greatest(sum(value), {lo}), {hi})::bigint AS value
    FROM (
        SELECT category, event, sum(value) AS value
        FROM {s}.counts
        WHERE level = ANY(CASE WHEN k.cached THEN $10::smallint[] ELSE $2::smallint[] END)
          AND start >= b.p AND start < b.stop AND start >= $3 AND start < $4
          AND ($5::text[] IS NULL OR category = ANY($5::text[]))
        GROUP BY 1, 2
        UNION ALL
        SELECT category, event, value FROM {s}.day_sums
        WHERE k.cached AND month = b.p AND ($5::text[] IS NULL OR category = ANY($5::text[]))
    ) AS u
    GROUP BY 1, 2
) AS f
GROUP BY 1, 2
"""
_COUNTS_CACHED = saturating(_OWN_ROWS + "UNION ALL" + _CACHED_MONTHS)

# The first and last start of the rows of each level in [lo, hi): two probes of the primary key
# (`min()` and `max()` of a range in a lateral subquery read the whole range); and whether the
# schema has the month sums of day rows (a schema older than migration 0005 has not).
_SPANS = """
SELECT l.level,
       (SELECT start FROM {s}.counts WHERE level = l.level AND start >= $2 AND start < $3 ORDER BY start LIMIT 1),
       (SELECT start FROM {s}.counts WHERE level = l.level AND start >= $2 AND start < $3 ORDER BY start DESC LIMIT 1),
       to_regclass($4) IS NOT NULL
FROM unnest($1::smallint[]) AS l(level)
"""

_INSTANT = timedelta(microseconds=1)
SEPARATOR = "\x1f"  # ASCII's unit separator: not in a route or a name anyone chooses, and checked
_JOINED = "string_agg(event, E'\\x1f')"


async def count_rows(
    conn: asyncpg.Connection,
    schema: str,
    *,
    period: PeriodName,
    calendar: Calendar,
    levels: Sequence[Level],
    finer_levels: Sequence[Level],
    lo: datetime,
    hi: datetime,
    categories: Sequence[str] | None,
) -> list[PeriodCounts]:
    """The counts of every period of `period` starting in [lo, hi): rows of `levels` as stored, and
    rows of `finer_levels` summed per period and event (call it inside one snapshot: it reads
    twice). A period's event may thus come twice, as stored and as summed from finer rows."""
    s = quote_ident(schema)
    cats = list(categories) if categories is not None else None
    own, finer = [int(level) for level in levels], [int(level) for level in finer_levels]
    spans = await conn.fetch(_SPANS.format(s=s), own + finer, lo, hi, f"{s}.day_sums_months")
    if period == "base":  # base periods are not days or months: one range, grouped by start
        stored, ends, finer_starts, finer_ends = [lo], [hi], [], []
    else:
        stored = period_starts(calendar, period, *_span(spans, own))
        ends = [calendar.period_ceil(period, p + _INSTANT) for p in stored]
        finer_starts = period_starts(calendar, period, *_span(spans, finer))
        finer_ends = [calendar.period_ceil(period, p + _INSTANT) for p in finer_starts]
    args: tuple[Any, ...] = (own, finer, lo, hi, cats, stored, ends, finer_starts, finer_ends)
    sql = _COUNTS_PER_PERIOD
    if period == "month" and Level.DAY in finer and day_sums.kept(calendar) and spans and spans[0][3]:
        sql = _COUNTS_CACHED
        args = (*args, [level for level in finer if level != Level.DAY])
    records = await conn.fetch(sql.format(s=s, names=_JOINED), *args)
    counts = [PeriodCounts(r[0], r[1], r[2], r[3].split(SEPARATOR), r[4]) for r in records]
    if any(len(c.events) != len(c.values) for c in counts):  # a name holds the separator
        records = await conn.fetch(sql.format(s=s, names="array_agg(event)"), *args)
        counts = [PeriodCounts(r[0], r[1], r[2], r[3], r[4]) for r in records]
    return counts


def _span(spans: Sequence[Any], levels: Sequence[int]) -> tuple[datetime | None, datetime | None]:
    """The first and last start over `levels` in the rows of `_SPANS`."""
    firsts = [r[1] for r in spans if r[0] in levels and r[1] is not None]
    lasts = [r[2] for r in spans if r[0] in levels and r[2] is not None]
    return (min(firsts), max(lasts)) if firsts else (None, None)


async def distinct_rows(
    conn: asyncpg.Connection, schema: str, *, lo: datetime, hi: datetime, lo_day: date, hi_day: date
) -> tuple[list[StoredDistinct], list[LiveKeys]]:
    """Stored distinct counts (start, category, level, value) in [lo, hi), and the live key counts
    (day, category, n) of days in [lo_day, hi_day) that maintenance has not closed yet."""
    s = quote_ident(schema)
    stored = await conn.fetch(
        f"SELECT start, category, level, value FROM {s}.distinct_counts WHERE start >= $1 AND start < $2", lo, hi
    )
    live = await conn.fetch(
        f"""SELECT day, category, count(*) FROM {s}.seen_keys
            WHERE day >= $1 AND day < $2
              AND day > coalesce((SELECT maintained_through FROM {s}.state), '-infinity'::date)
            GROUP BY 1, 2""",
        lo_day,
        hi_day,
    )
    return [StoredDistinct(r[0], r[1], r[2], r[3]) for r in stored], [LiveKeys(r[0], r[1], r[2]) for r in live]


async def go_live(conn: asyncpg.Connection, schema: str, at: datetime) -> datetime:
    """Record the `go-live` mark unless one exists (once ever, also with concurrent starts); return it."""
    s = quote_ident(schema)
    async with _transaction(conn):
        await conn.execute(
            f"""INSERT INTO {s}.marks (name, category, at) VALUES ('go-live', 'timeline', $1)
                ON CONFLICT (name) WHERE name = 'go-live' DO NOTHING""",
            at,
        )
        stored: datetime = await conn.fetchval(f"SELECT at FROM {s}.marks WHERE name = 'go-live'")
    return stored


async def add_mark(conn: asyncpg.Connection, schema: str, name: str, category: str, at: datetime) -> None:
    """Record a mark."""
    s = quote_ident(schema)
    async with _transaction(conn):
        await conn.execute(f"INSERT INTO {s}.marks (name, category, at) VALUES ($1, $2, $3)", name, category, at)


async def marks(conn: asyncpg.Connection, schema: str) -> list[MarkRow]:
    """Every mark, oldest first."""
    s = quote_ident(schema)
    async with _transaction(conn):
        records = await conn.fetch(f"SELECT name, category, at FROM {s}.marks ORDER BY at, id")
    return [MarkRow(r[0], r[1], r[2]) for r in records]
