"""Day-end maintenance: distinct keys into daily counts, roll-ups and retention, in set-based SQL.

Each ended day is processed in its own transaction under an exclusive advisory lock, in order,
and recorded in `state.maintained_through`, so concurrent or repeated runs are no-ops and a
catch-up after downtime gives the same rows as daily runs (every roll-up conserves sums and only
depends on the cut-offs of the last day processed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from ..config import UsageConfig
from ..periods import Calendar, PeriodName, add_months, month_of
from . import day_sums, ledger
from .calendar_table import fill_calendar
from .levels import Level
from .migrations import LOCK_DAY_END, quote_ident
from .periodkeys import PERIOD_OF, period_starts
from .saturating import saturating

__all__ = ["Plan", "Retention", "grace", "maintain", "plan"]

logger = logging.getLogger(__name__)

_CLOSE_DAY = """
INSERT INTO {s}.distinct_counts AS d (level, start, category, value)
SELECT 2, $2, category, count(*) FROM {s}.seen_keys WHERE day = $1 GROUP BY category
ON CONFLICT (level, start, category) DO UPDATE SET value = d.value + excluded.value
"""

# Moves rows of one level older than a cut-off into the next level, summed per parent period; sums
# saturate at the bounds of bigint, since a day whose roll-up failed would block every later day. The
# parent's start is looked up in starts computed by Python (`periodkeys`).
_ROLL_COUNTS = saturating("""
WITH moved AS (
    DELETE FROM {s}.counts WHERE level = $1 AND start < $2
    RETURNING start, category, event, value
)
INSERT INTO {s}.counts AS c (level, start, category, event, value)
SELECT $3, {parent}, category, event, least(greatest(sum(value), {lo}), {hi})
FROM moved GROUP BY 2, 3, 4
ON CONFLICT (level, start, category, event)
DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, {lo}), {hi})
""")

_ROLL_DISTINCT = """
WITH moved AS (
    DELETE FROM {s}.distinct_counts WHERE level = 2 AND start < $1 RETURNING start, category, value
)
INSERT INTO {s}.distinct_counts AS d (level, start, category, value)
SELECT 3, {parent}, category, sum(value) FROM moved GROUP BY 2, 3
ON CONFLICT (level, start, category) DO UPDATE SET value = d.value + excluded.value
"""

# The first and last start of the rows that a roll-up will move (two probes of the primary key).
_ROLLED_SPAN = "SELECT min(start), max(start) FROM {s}.{table} WHERE level = $1 AND start < $2"

_MERGE_EVENTS = saturating("""
WITH moved AS (
    DELETE FROM {s}.counts WHERE level = 3 AND start < $1 RETURNING start, category, value
)
INSERT INTO {s}.counts AS c (level, start, category, event, value)
SELECT 4, start, category, '<all>', least(greatest(sum(value), {lo}), {hi}) FROM moved GROUP BY 2, 3
ON CONFLICT (level, start, category, event)
DO UPDATE SET value = least(greatest(c.value::numeric + excluded.value, {lo}), {hi})
""")


@dataclass(frozen=True)
class Retention:
    """How long each level of detail is kept (from `UsageConfig`)."""

    keep_base_days: int
    keep_days: int
    keep_event_months: int
    keep_months: int

    @classmethod
    def of(cls, config: UsageConfig) -> Retention:
        return cls(config.keep_base_days, config.keep_days, config.keep_event_months, config.keep_months)


@dataclass(frozen=True)
class Plan:
    """What a maintenance run at a given time does: close every day up to `last_ended`, keeping `retention`."""

    last_ended: date
    retention: Retention


def grace(config: UsageConfig) -> timedelta:
    """How long after a day ends its maintenance waits for every worker's last flush."""
    return max(2 * config.flush_interval, timedelta(minutes=10))


def plan(config: UsageConfig, calendar: Calendar, now: float) -> Plan:
    """The maintenance due at `now` (a POSIX time): the service's and the CLI's one rule.

    A day is processed once it ended `grace` ago (every worker's last flush of it is in).
    """
    last_ended = calendar.day_of(now - grace(config).total_seconds()) - timedelta(days=1)
    return Plan(last_ended, Retention.of(config))


async def maintain(
    conn: asyncpg.Connection,
    schema: str,
    calendar: Calendar,
    retention: Retention,
    *,
    last_ended: date,
    first_day: date,
) -> list[date]:
    """Process every day up to `last_ended` not processed yet; returns the days processed.

    `first_day` is where processing starts on a database never maintained (the go-live day).
    """
    s = quote_ident(schema)
    await fill_calendar(conn, schema, calendar, last_ended + timedelta(days=1))  # the SQL views' periods
    processed: list[date] = []
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), $2)", schema, LOCK_DAY_END)
            done = await conn.fetchval(f"SELECT maintained_through FROM {s}.state")
            if done is None:
                oldest = await conn.fetchval(f"SELECT min(day) FROM {s}.seen_keys")
                done = min(first_day, oldest or first_day) - timedelta(days=1)
            if done >= last_ended:
                return processed
            day = done + timedelta(days=1)
            await _close_day(conn, s, calendar, retention, day)
            await conn.execute(f"UPDATE {s}.state SET maintained_through = $1", day)
        processed.append(day)
        logger.debug("usage_stats: closed day %s in schema %s", day, schema)


async def _close_day(conn: asyncpg.Connection, s: str, calendar: Calendar, keep: Retention, day: date) -> None:
    await conn.execute(_CLOSE_DAY.format(s=s), day, calendar.day_start(day))
    await conn.execute(f"DELETE FROM {s}.seen_keys WHERE day <= $1", day)
    await conn.execute(f"DELETE FROM {s}.salts WHERE day <= $1", day)
    await ledger.prune(conn, s, calendar.day_start(day - timedelta(days=ledger.KEEP_DAYS)))

    today = day + timedelta(days=1)  # the day on which this processing is due
    month = month_of(today)
    cut = _cutoffs(calendar, keep, today, month)
    cached = day_sums.kept(calendar)  # the month sums of day rows follow every change of day rows
    if cached:
        await day_sums.begin(conn, s, day)
    # A cut-off before the first day a datetime can hold (keep_months=100000, say) has no older row.
    if cut["base"] is not None:
        if cached:
            span = await _span(conn, s, "counts", Level.BASE, cut["base"])
            await day_sums.roll_base(conn, s, calendar, cut["base"], span)
        else:
            await _roll_counts(conn, s, calendar, Level.BASE, "day", cut["base"])
    if cut["day"] is not None:
        if cached:
            span = await _span(conn, s, "counts", Level.DAY, cut["day"])
            await day_sums.take_rolled(conn, s, calendar, cut["day"], span)
        await _roll_counts(conn, s, calendar, Level.DAY, "month", cut["day"])
        starts = await _parents(conn, s, calendar, "distinct_counts", Level.DAY, "month", cut["day"])
        roll = _ROLL_DISTINCT.format(s=s, parent=PERIOD_OF.format(starts="$2", column="start"))
        await conn.execute(roll, cut["day"], starts)
    if cut["event"] is not None:
        await conn.execute(_MERGE_EVENTS.format(s=s), cut["event"])
    if cut["purge"] is not None:
        await conn.execute(f"DELETE FROM {s}.counts WHERE start < $1", cut["purge"])
        await conn.execute(f"DELETE FROM {s}.distinct_counts WHERE start < $1", cut["purge"])
        if cached:
            await day_sums.purge(conn, s, cut["purge"])
    if cached:
        await day_sums.end(conn, s, calendar, day)


async def _roll_counts(
    conn: asyncpg.Connection, s: str, calendar: Calendar, level: Level, period: PeriodName, cutoff: datetime
) -> None:
    starts = await _parents(conn, s, calendar, "counts", level, period, cutoff)
    roll = _ROLL_COUNTS.format(s=s, parent=PERIOD_OF.format(starts="$4", column="start"))
    await conn.execute(roll, int(level), cutoff, int(level) + 1, starts)


async def _parents(
    conn: asyncpg.Connection, s: str, calendar: Calendar, table: str, level: Level, period: PeriodName, cutoff: datetime
) -> list[datetime]:
    """The starts of the days or months that the rows of `level` older than `cutoff` roll into."""
    return period_starts(calendar, period, *await _span(conn, s, table, level, cutoff))


async def _span(
    conn: asyncpg.Connection, s: str, table: str, level: Level, cutoff: datetime
) -> tuple[datetime | None, datetime | None]:
    """The first and last start of the rows of `level` older than `cutoff`."""
    first, last = (await conn.fetch(_ROLLED_SPAN.format(s=s, table=table), int(level), cutoff))[0]
    return first, last


def _cutoffs(calendar: Calendar, keep: Retention, today: date, month: date) -> dict[str, datetime | None]:
    return {
        "base": _start_of(calendar, lambda: today - timedelta(days=keep.keep_base_days)),
        "day": _start_of(calendar, lambda: today - timedelta(days=keep.keep_days)),
        "event": _start_of(calendar, lambda: add_months(month, -keep.keep_event_months)),
        "purge": _start_of(calendar, lambda: add_months(month, -keep.keep_months)),
    }


def _start_of(calendar: Calendar, day: Callable[[], date]) -> datetime | None:
    """The start of `day()`, or None when it lies before what a datetime can hold (no row is older)."""
    try:
        return calendar.day_start(day())
    except (OverflowError, ValueError):  # "year 0 is out of range", "date value out of range"
        return None
