"""The month sums of day rows (tables `day_sums` and `day_sums_months`, migration 0005): a derived
cache that day-end maintenance keeps, so that a month table reads a few thousand sums per month
instead of summing every day row of the months that have some (`query.count_rows`).

A month listed in `day_sums_months` is covered: `day_sums` holds, per category and event, the exact
sum (numeric: never saturated, so adding the other rows and saturating once gives what summing every
row gives) of that month's day rows and how many there are; the row goes with the last day row.
Day rows change only in day-end maintenance when the base period is shorter than a day (flushes,
late ones too, write base rows), and maintenance updates the sums in the same transaction as each
statement that writes or deletes day rows: the roll-up of base rows (by how much each day row
changed), the roll-up of day rows into months (minus what it moves) and retention (whole months).
After its roll-ups it covers every month that has day rows and is not covered yet, summing it once,
and records the day in `state.day_sums_through`: reads use the sums only while that is the last day
maintained (`state.maintained_through`), so days maintained by an older version's process, which
knows nothing of them, make reads sum the day rows until the next maintenance builds them again.
With a base period of one day, flushes write day rows themselves: nothing is cached, nothing read.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import asyncpg

from ..periods import Calendar
from .periodkeys import PERIOD_OF, period_starts
from .saturating import saturating

__all__ = ["begin", "cover", "end", "forget", "kept", "purge", "roll_base", "take_rolled"]

_INSTANT = timedelta(microseconds=1)
Span = tuple[datetime | None, datetime | None]  # the first and last start of some rows

# The base rows older than $1 into their days ($2: the day starts), as maintenance's own roll-up
# does, and each covered month's sums changed by what its day rows gained ($3: the month starts).
# Every sub-statement sees the rows as they were before the statement, so `old` is the day rows'
# values before the upsert and `stored` their values after it (saturated, as they are stored).
_ROLL_BASE = saturating("""
WITH moved AS (
    DELETE FROM {s}.counts WHERE level = 1 AND start < $1
    RETURNING start, category, event, value
),
summed AS (
    SELECT {day} AS start, category, event, least(greatest(sum(value), {lo}), {hi}) AS value
    FROM moved GROUP BY 1, 2, 3
),
old AS (
    SELECT o.start, o.category, o.event, o.value
    FROM {s}.counts AS o JOIN summed AS n
      ON o.level = 2 AND o.start = n.start AND o.category = n.category AND o.event = n.event
),
stored AS (
    INSERT INTO {s}.counts AS c (level, start, category, event, value)
    SELECT 2, start, category, event, value FROM summed
    ON CONFLICT (level, start, category, event)
    DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, {lo}), {hi})
    RETURNING c.start, c.category, c.event, c.value
)
INSERT INTO {s}.day_sums AS m (month, category, event, value, days)
SELECT k.month, n.category, n.event,
       sum(n.value::numeric - coalesce(o.value, 0)), count(*) FILTER (WHERE o.value IS NULL)
FROM stored AS n
LEFT JOIN old AS o ON o.start = n.start AND o.category = n.category AND o.event = n.event
CROSS JOIN LATERAL (SELECT {month} AS month) AS k
WHERE k.month IN (SELECT month FROM {s}.day_sums_months)
GROUP BY 1, 2, 3
ON CONFLICT (month, category, event) DO UPDATE SET value = m.value + excluded.value, days = m.days + excluded.days
""")

# Before the day rows older than $1 move into months: take them out of their covered months' sums
# ($2, $3: the starts and ends of the months they are in). A sum whose last day row goes is deleted.
_TAKE_ROLLED = """
WITH gone AS (
    SELECT b.p AS month, c.category, c.event, sum(c.value::numeric) AS value, count(*) AS days
    FROM unnest($2::timestamptz[], $3::timestamptz[]) AS b(p, stop)
    JOIN {s}.day_sums_months AS m ON m.month = b.p
    JOIN {s}.counts AS c ON c.level = 2 AND c.start >= b.p AND c.start < b.stop AND c.start < $1
    GROUP BY 1, 2, 3
),
emptied AS (
    DELETE FROM {s}.day_sums AS m USING gone AS g
    WHERE m.month = g.month AND m.category = g.category AND m.event = g.event AND m.days = g.days
)
UPDATE {s}.day_sums AS m SET value = m.value - g.value, days = m.days - g.days
FROM gone AS g
WHERE m.month = g.month AND m.category = g.category AND m.event = g.event AND m.days <> g.days
"""

# Covers the months $1 (ends $2) not covered yet: each summed from its day rows, once.
_COVER = """
WITH new AS (
    INSERT INTO {s}.day_sums_months (month) SELECT p FROM unnest($1::timestamptz[]) AS b(p)
    ON CONFLICT DO NOTHING RETURNING month
)
INSERT INTO {s}.day_sums (month, category, event, value, days)
SELECT b.p, c.category, c.event, sum(c.value::numeric), count(*)
FROM unnest($1::timestamptz[], $2::timestamptz[]) AS b(p, stop)
JOIN new ON new.month = b.p
JOIN {s}.counts AS c ON c.level = 2 AND c.start >= b.p AND c.start < b.stop
GROUP BY 1, 2, 3
"""

_DAY_SPAN = "SELECT min(start), max(start) FROM {s}.counts WHERE level = 2"


async def begin(conn: asyncpg.Connection, s: str, day: date) -> None:
    """Before maintenance of `day`: unless the sums were kept by the maintenance of the day before
    (a process of an older version maintained days without them), drop them all, for `cover` to
    build again from the day rows."""
    through = await conn.fetchval(f"SELECT day_sums_through FROM {s}.state")
    if through != day - timedelta(days=1):
        await forget(conn, s)


async def end(conn: asyncpg.Connection, s: str, calendar: Calendar, day: date) -> None:
    """After maintenance of `day`'s roll-ups: cover the months not covered, and record the day."""
    await cover(conn, s, calendar)
    await conn.execute(f"UPDATE {s}.state SET day_sums_through = $1", day)


def kept(calendar: Calendar) -> bool:
    """Whether the sums are kept and read: only where flushes never write day rows."""
    return calendar.base_seconds != 86400


def _months(calendar: Calendar, first: datetime | None, last: datetime | None) -> tuple[list[datetime], list[datetime]]:
    starts = period_starts(calendar, "month", first, last)
    return starts, [calendar.period_ceil("month", p + _INSTANT) for p in starts]


async def roll_base(conn: asyncpg.Connection, s: str, calendar: Calendar, cutoff: datetime, span: Span) -> None:
    """Maintenance's roll-up of the base rows older than `cutoff` (whose starts span `span`) into
    day rows, with the covered months' sums following (`s`: the quoted schema)."""
    days = period_starts(calendar, "day", *span)
    months = period_starts(calendar, "month", *span)
    sql = _ROLL_BASE.format(
        s=s,
        day=PERIOD_OF.format(starts="$2", column="start"),
        month=PERIOD_OF.format(starts="$3", column="n.start"),
    )
    await conn.execute(sql, cutoff, days, months)


async def take_rolled(conn: asyncpg.Connection, s: str, calendar: Calendar, cutoff: datetime, span: Span) -> None:
    """Take the day rows older than `cutoff` (whose starts span `span`), which are about to move
    into month rows, out of the covered months' sums."""
    starts, ends = _months(calendar, *span)
    whole = [p for p, stop in zip(starts, ends, strict=True) if stop <= cutoff]  # every day row goes
    if whole:
        await conn.execute(f"DELETE FROM {s}.day_sums WHERE month = ANY($1::timestamptz[])", whole)
    if len(whole) < len(starts):  # the month holding `cutoff`: some day rows go
        await conn.execute(_TAKE_ROLLED.format(s=s), cutoff, starts[len(whole) :], ends[len(whole) :])


async def cover(conn: asyncpg.Connection, s: str, calendar: Calendar) -> None:
    """Cover every month that has day rows and is not covered yet."""
    first, last = (await conn.fetch(_DAY_SPAN.format(s=s)))[0]
    starts, ends = _months(calendar, first, last)
    if starts:
        await conn.execute(_COVER.format(s=s), starts, ends)


async def purge(conn: asyncpg.Connection, s: str, cutoff: datetime) -> None:
    """Retention: the sums of months before `cutoff` (a month's start), whose rows it deletes."""
    await conn.execute(f"DELETE FROM {s}.day_sums WHERE month < $1", cutoff)
    await conn.execute(f"DELETE FROM {s}.day_sums_months WHERE month < $1", cutoff)


async def forget(conn: asyncpg.Connection, s: str) -> None:
    """Drop every sum and cover (the time zone or the base period changed: months are not the same)."""
    await conn.execute(f"DELETE FROM {s}.day_sums")
    await conn.execute(f"DELETE FROM {s}.day_sums_months")
