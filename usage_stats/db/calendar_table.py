"""The `calendar` table that the SQL views (`day_table`, `month_table`) group rows by.

The views must file rows into the same days and months as `UsageStats.table()`, whose period starts
come from `periods.Calendar` (PostgreSQL's own zone arithmetic disagrees for doubled midnights and
for zone names such as `CET`; see `periodkeys`). So Python writes the start, end, local date and
local wall-clock start of every day and month from a month before the oldest stored row (or the
go-live mark) to `AHEAD` months after today, and the views look rows up in it. `fill_calendar` runs
at start-up and at every day-end maintenance; when the table covers that span already it only reads.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import asyncpg

from ..periods import Calendar, add_months, month_of
from .migrations import quote_ident

__all__ = ["AHEAD", "calendar_rows", "fill_calendar"]

logger = logging.getLogger(__name__)

AHEAD = 3
"""Months after the current one that the calendar covers (rows of a process whose maintenance
stops running keep their periods for at least two months)."""

# The oldest and newest instant or day that any stored row or the go-live mark refers to (probes of
# the primary keys, per level for counts).
_SPAN = """
WITH c AS (
    SELECT min(m.first) AS first, max(m.last) AS last FROM unnest('{{1,2,3,4}}'::smallint[]) AS l(level),
    LATERAL (SELECT min(start) AS first, max(start) AS last FROM {s}.counts WHERE level = l.level) AS m
)
SELECT least(c.first, d.first, g.at), greatest(c.last, d.last, g.at), k.first, k.last
FROM c,
     (SELECT min(start) AS first, max(start) AS last FROM {s}.distinct_counts) AS d,
     (SELECT min(at) AS at FROM {s}.marks WHERE name = 'go-live') AS g,
     (SELECT min(day) AS first, max(day) AS last FROM {s}.seen_keys) AS k
"""

_COVERED = """
SELECT min(local_date), max(local_date), count(*), coalesce(bool_and(zone = $1), true)
FROM {s}.calendar WHERE period = 'day'
"""

_INSERT = """
INSERT INTO {s}.calendar (period, start, stop, local_date, local_start, zone)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::date[], $5::timestamp[], $6::text[])
ON CONFLICT DO NOTHING
"""

Row = tuple[str, datetime, datetime, date, datetime, str]


def calendar_rows(calendar: Calendar, first: date, stop: date) -> list[Row]:
    """The calendar rows of every day in [first, stop) and of every month starting in it
    (`first` and `stop` are first days of months)."""
    zone = calendar.zone.key
    rows: list[Row] = []
    day = first
    while day < stop:
        start = calendar.day_start(day)
        rows.append(("day", start, calendar.day_start(day + timedelta(days=1)), day, start.replace(tzinfo=None), zone))
        if day.day == 1:
            end = calendar.day_start(add_months(day, 1))
            rows.append(("month", start, end, day, start.replace(tzinfo=None), zone))
        day += timedelta(days=1)
    return rows


async def fill_calendar(conn: asyncpg.Connection, schema: str, calendar: Calendar, today: date) -> int:
    """Make the calendar cover a month before the oldest stored row (or go-live) to `AHEAD` months
    after `today`'s; returns the rows written (0 when it covered the span, after reading only).

    Needs the schema migrated. A role without the right to write the calendar is logged once per
    call and left alone: the views then show rows outside the calendar with start NULL.
    """
    try:
        return await _fill(conn, schema, calendar, today)
    except asyncpg.InsufficientPrivilegeError as exc:
        logger.warning("usage_stats: cannot extend the calendar of the SQL views in schema %s: %s", schema, exc)
        return 0


async def _fill(conn: asyncpg.Connection, schema: str, calendar: Calendar, today: date) -> int:
    s = quote_ident(schema)
    zone = calendar.zone.key
    async with conn.transaction():
        oldest, newest, oldest_day, newest_day = (await conn.fetch(_SPAN.format(s=s)))[0]
        low, high, count, same_zone = (await conn.fetch(_COVERED.format(s=s), zone))[0]
    days = [today]
    days += [calendar.day_of(t.timestamp()) for t in (oldest, newest) if t is not None]
    days += [d for d in (oldest_day, newest_day) if d is not None]
    first = add_months(month_of(min(days)), -1)
    stop = add_months(month_of(max(days)), AHEAD + 1)
    whole = low is not None and count == (high - low).days + 1  # no day missing in between
    if same_zone and whole and low <= first and high >= stop - timedelta(days=1):
        return 0
    rows = calendar_rows(calendar, first, stop)
    async with conn.transaction():
        await conn.execute(f"DELETE FROM {s}.calendar WHERE zone <> $1", zone)
        status = await conn.execute(_INSERT.format(s=s), *(list(column) for column in zip(*rows, strict=True)))
    written = int(status.rsplit(" ", 1)[-1])
    if written:
        logger.info("usage_stats: wrote %d calendar rows (%s to %s) in schema %s", written, first, stop, schema)
    return written
