"""The day or month that each stored row belongs to: period starts computed in Python, looked up in SQL.

PostgreSQL is never asked to interpret the time zone: where local midnight happens twice when DST
ends (Atlantic/Azores, America/Havana), `date_trunc('day', ts, zone)` picks the later midnight while
`periods.Calendar` starts the day at the earliest instant of its date; and PostgreSQL reads some zone
names (`CET`, `EET`, `MET`, `WET`) as fixed-offset abbreviations, without DST. So a statement that
groups rows into days or months gets the sorted starts of every period its rows can fall in
(`period_starts`, from `Calendar`) as one array, and finds each row's period by binary search
(`PERIOD_OF`: `width_bucket` gives the last start at or before the row's start). A row before the
first start gets NULL, which a NOT NULL column refuses: the statement fails rather than misfile it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..periods import Calendar, PeriodName, add_months, month_of

__all__ = ["PERIOD_OF", "period_starts"]

# SQL for the start of the period holding `column`, given the array parameter `starts` (e.g. "$4").
PERIOD_OF = "({starts}::timestamptz[])[width_bucket({column}, {starts}::timestamptz[])]"


def period_starts(
    calendar: Calendar, period: PeriodName, first: datetime | None, last: datetime | None
) -> list[datetime]:
    """The starts of every `period` ("day" or "month") from the one holding `first` to the one
    holding `last`, oldest first; empty when there are no rows (`first` is None)."""
    if first is None or last is None:
        return []
    day, last_day = calendar.day_of(first.timestamp()), calendar.day_of(last.timestamp())
    if period == "month":
        day, last_day = month_of(day), month_of(last_day)
    dates = []
    while day <= last_day:
        dates.append(day)
        day = add_months(day, 1) if period == "month" else day + timedelta(days=1)
    return [calendar.day_start(d) for d in dates]
