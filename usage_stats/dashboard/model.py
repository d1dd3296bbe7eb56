"""What a dashboard page shows: the table, its time axis, the chart series and the marks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..periods import Calendar, add_months
from ..tables.model import SEEN, Mark, UsageTable
from .charts import Series

if TYPE_CHECKING:
    from ..stats import UsageStats

__all__ = ["VIEWS", "View", "chart_series", "load_view", "timeline"]

VIEWS = ("day", "month")
# The charts show at most this many of the newest periods; the tables show every period.
CHART_SLOTS = {"day": 62, "month": 36}


@dataclass(frozen=True, slots=True)
class View:
    """Everything one page (or download) of the dashboard needs."""

    period: str
    table: UsageTable
    categories: tuple[str, ...]
    selected: tuple[str, ...]
    minimum: float
    marks: tuple[Mark, ...]
    bounds: tuple[datetime, ...]
    current: datetime
    now: datetime
    zone: str
    flush_interval: timedelta


async def load_table(
    stats: UsageStats, period: str, *, minimum: float, categories: Sequence[str]
) -> tuple[UsageTable, tuple[str, ...]]:
    """The table as filtered, and every category the unfiltered table holds (for the filter's choices)."""
    table = await stats.table(period, minimum=minimum, categories=list(categories) or None)
    if categories:
        everything = await stats.table(period, minimum=minimum)
    else:
        everything = table
    found = {group.category for p in everything.periods for group in p.groups} | set(categories)
    return table, tuple(sorted(found))


async def load_view(stats: UsageStats, period: str, *, minimum: float, categories: Sequence[str]) -> View:
    """Read the table and the marks for one page."""
    table, options = await load_table(stats, period, minimum=minimum, categories=categories)
    marks = tuple(await stats.marks())
    now = stats.now
    current = stats.calendar.period_floor(table.period, now)
    return View(
        period=period,
        table=table,
        categories=options,
        selected=tuple(categories),
        minimum=minimum,
        marks=marks,
        bounds=timeline(stats.calendar, period, table, current),
        current=current,
        now=now,
        zone=stats.config.timezone,
        flush_interval=stats.config.flush_interval,
    )


def next_start(calendar: Calendar, period: str, start: datetime) -> datetime:
    """The start of the day or month after the one that begins at `start` (local, DST-correct)."""
    day = start.astimezone(calendar.zone).date()
    if period == "month":
        return calendar.day_start(add_months(day, 1))
    return calendar.day_start(day + timedelta(days=1))


def timeline(calendar: Calendar, period: str, table: UsageTable, current: datetime) -> tuple[datetime, ...]:
    """Slot boundaries from the oldest shown period up to the end of the current one, without gaps.

    At most `CHART_SLOTS[period]` slots, the newest ones; empty when the table is empty.
    """
    if not table.periods:
        return ()
    last = max(table.periods[0].start, current)
    bounds = [next_start(calendar, period, last)]
    oldest = table.periods[-1].start
    start = last
    while len(bounds) <= CHART_SLOTS[period]:
        bounds.append(start)
        if start <= oldest:
            break
        start = _previous_start(calendar, period, start)
    return tuple(reversed(bounds))


def _previous_start(calendar: Calendar, period: str, start: datetime) -> datetime:
    day = start.astimezone(calendar.zone).date()
    if period == "month":
        return calendar.day_start(add_months(day, -1))
    return calendar.day_start(day - timedelta(days=1))


def chart_series(table: UsageTable) -> list[Series]:
    """One series per seen category (distinct users, visitors...), then one per counted category.

    A category's value in a period is the sum of its rows (event counts and merged totals).
    """
    seen: dict[str, dict[datetime, float]] = {}
    counted: dict[str, dict[datetime, float]] = {}
    for period in table.periods:
        for group in period.groups:
            if group.category == SEEN:
                for event, value in zip(group.events, group.values, strict=True):
                    seen.setdefault(event, {})[period.start] = value
            else:
                values = counted.setdefault(group.category, {})
                values[period.start] = values.get(period.start, 0) + sum(group.values)
    per = "per day" if table.period == "day" else "per month"
    series = [
        Series(
            key=f"{SEEN}:{event}",
            title=f"{event}: distinct per day" if table.period == "day" else f"{event}: average per day",
            unit=f"{event} (distinct)" if table.period == "day" else f"{event} (daily average)",
            values=values,
        )
        for event, values in sorted(seen.items())
    ]
    series.extend(
        Series(key=category, title=f"{category}: events {per}", unit="events", values=values)
        for category, values in sorted(counted.items())
    )
    return series
