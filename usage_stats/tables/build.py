"""Stored rows into a `UsageTable`: kinds, merged levels and monthly averages (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from itertools import repeat

from ..db.levels import Level
from ..db.rows import LiveKeys, PeriodCounts, StoredDistinct
from ..periods import Calendar, PeriodName, add_months, month_of
from .model import ALL, SEEN, Row, UsageTable

__all__ = ["build_table", "live_days"]


def live_days(month: date, go_live: date | None, today: date) -> int:
    """The days of `month` that count for its average: from the go-live day on, up to the month's
    last day, or up to yesterday for the current month (today is incomplete)."""
    if go_live is None:
        return 0
    first = max(month, go_live)
    last = min(add_months(month, 1), today) - timedelta(days=1)
    return max(0, (last - first).days + 1)


def build_table(
    period: PeriodName,
    calendar: Calendar,
    counts: Iterable[PeriodCounts],
    stored_distinct: Iterable[StoredDistinct],
    live_keys: Iterable[LiveKeys],
    *,
    go_live: date | None,
    today: date,
    minimum: float = 0,
    categories: Sequence[str] | None = None,
) -> UsageTable:
    """Merge count rows and distinct rows into a table of `period` ("base", "day" or "month")."""
    periods: dict[float, list[Row]] = {}
    starts: dict[float, datetime] = {}

    def rows_of(start: datetime) -> list[Row]:
        instant = start.timestamp()
        found = periods.get(instant)
        if found is None:
            found = periods[instant] = []
            starts[instant] = start
        return found

    for start, cats, events, totals, values, merged in counts:
        if any(totals):
            rows = [
                Row(c, ALL, v, "total") if t else Row(c, e, v, "count")
                for c, e, t, v in zip(cats, events, totals, values, strict=True)
            ]
        else:  # the common case, built at C speed (tables of many events have 100,000s of rows)
            rows = list(map(Row._make, zip(cats, events, values, repeat("count"))))
        rows_of(start).extend(_summed(rows) if merged else rows)

    show_seen = period != "base" and (categories is None or SEEN in categories)
    if show_seen and period == "day":
        for start, category, level, value in stored_distinct:
            if level == Level.DAY:
                rows_of(start).append(Row(SEEN, category, value, "distinct"))
        for day, category, n in live_keys:
            rows_of(calendar.day_start(day)).append(Row(SEEN, category, n, "distinct"))
    elif show_seen:
        for start, row in _averages(calendar, stored_distinct, live_keys, go_live, today):
            rows_of(start).append(row)
    zone = calendar.zone
    return UsageTable.from_periods(
        period, ((starts[i].astimezone(zone), rows) for i, rows in periods.items()), minimum=minimum
    )


def _summed(rows: list[Row]) -> list[Row]:
    """Rows with one per (category, event, kind): a period's stored rows and its finer rows summed."""
    sums: dict[tuple[str, str, str], Row] = {}
    for row in rows:
        key = (row.category, row.event, row.kind)
        seen = sums.get(key)
        sums[key] = row if seen is None else seen._replace(value=seen.value + row.value)
    return list(sums.values())


def _averages(
    calendar: Calendar,
    stored: Iterable[StoredDistinct],
    live_keys: Iterable[LiveKeys],
    go_live: date | None,
    today: date,
) -> list[tuple[datetime, Row]]:
    sums: dict[tuple[date, str], int] = {}
    for start, category, _level, value in stored:
        month = month_of(calendar.day_of(start.timestamp()))
        sums[(month, category)] = sums.get((month, category), 0) + value
    for day, category, n in live_keys:
        if day < today:  # today is incomplete: left out of sum and divisor
            key = (month_of(day), category)
            sums[key] = sums.get(key, 0) + n
    result = []
    for (month, category), total in sums.items():
        days = live_days(month, go_live, today)
        if days > 0:
            result.append((calendar.day_start(month), Row(SEEN, category, total / days, "average")))
    return result
