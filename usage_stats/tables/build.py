"""Stored rows into a `UsageTable`: kinds, merged levels and monthly averages (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from itertools import chain, repeat
from operator import add
from typing import Any

from ..db.levels import Level
from ..db.rows import LiveKeys, PeriodCounts, StoredDistinct
from ..periods import Calendar, PeriodName, add_months, month_of
from .model import ALL, SEEN, Group, Kind, Period, Row, UsageTable, sorted_group

__all__ = ["build_table", "live_days"]

Part = tuple[list[str], list[Any], Kind]  # events, values, and the kind of them all


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
    """Merge count rows and distinct rows into a table of `period` ("base", "day" or "month").

    The figures stay in columns, one `Group` per period and category: a table of 450,000 figures
    makes no `Row` until its rows are read (see `Period`).
    """
    # instant -> category -> (events, values, kind); a category's columns may come in several parts
    periods: dict[float, dict[str, list[Part]]] = {}
    starts: dict[float, datetime] = {}

    def parts_of(start: datetime, category: str) -> list[Part]:
        instant = start.timestamp()
        found = periods.get(instant)
        if found is None:
            found = periods[instant] = {}
            starts[instant] = start
        return found.setdefault(category, [])

    for start, category, total, events, values in counts:
        kind: Kind = "total" if total else "count"
        parts_of(start, category).append(([ALL] * len(values) if total else events, values, kind))

    show_seen = period != "base" and (categories is None or SEEN in categories)
    seen: list[tuple[datetime, Row]] = []
    if show_seen and period == "day":
        seen += [
            (start, Row(SEEN, c, value, "distinct")) for start, c, level, value in stored_distinct if level == Level.DAY
        ]
        seen += [(calendar.day_start(day), Row(SEEN, c, n, "distinct")) for day, c, n in live_keys]
    elif show_seen:
        seen += _averages(calendar, stored_distinct, live_keys, go_live, today)
    for start, row in seen:
        parts_of(start, SEEN).append(([row.event], [row.value], row.kind))

    zone = calendar.zone
    built = []
    for instant, by_category in periods.items():
        groups = [_group(category, by_category[category], minimum) for category in sorted(by_category)]
        groups = [g for g in groups if g.events]
        if groups:
            built.append(Period.from_groups(starts[instant].astimezone(zone), groups))
    built.sort(key=lambda p: p.start.timestamp(), reverse=True)
    return UsageTable(period, tuple(built))


def _group(category: str, parts: list[Part], minimum: float) -> Group:
    if len(parts) == 1:
        events, values, kind = parts[0]
        return sorted_group(category, events, values, kind, minimum=minimum)
    # Stored rows and the sums of finer rows of one period (an event in both is summed), a category's
    # total beside its counts, or distinct rows: per kind, an event's values summed at C speed.
    by_kind: dict[Kind, dict[str, Any]] = {}
    for more_events, more_values, kind in parts:
        merged = by_kind.setdefault(kind, {})
        merged.update(zip(more_events, map(add, map(merged.get, more_events, repeat(0)), more_values), strict=True))
    events = list(chain.from_iterable(by_kind.values()))
    values = list(chain.from_iterable(merged.values() for merged in by_kind.values()))
    kinds: list[Kind] = list(chain.from_iterable(repeat(kind, len(merged)) for kind, merged in by_kind.items()))
    return sorted_group(category, events, values, kinds, minimum=minimum)


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
