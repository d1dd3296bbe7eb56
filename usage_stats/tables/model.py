"""`UsageTable` and its parts: the aggregated figures that `UsageStats.table()` returns (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, NamedTuple

from ..periods import PeriodName
from . import formats

__all__ = ["ALL", "SEEN", "Kind", "Mark", "Period", "Row", "UsageTable", "sort_rows"]

Kind = Literal["count", "total", "distinct", "average"]

SEEN = "seen"
ALL = "<all>"


class Row(NamedTuple):
    """One figure: `value` of `event` in `category`, of the given `kind`.

    `kind` is "count" (an event's count), "total" (all events of a category after they were merged;
    event `<all>`), "distinct" (distinct keys seen that day; category `seen`) or "average" (monthly
    average of daily distinct counts; category `seen`, a float).
    """

    category: str
    event: str
    value: int | float
    kind: Kind = "count"


_BY_EVENT = attrgetter("event")
_BY_VALUE = attrgetter("value")
_BY_CATEGORY = attrgetter("category")


def sort_rows(rows: list[Row]) -> tuple[Row, ...]:
    """Rows in display order: category, then value descending, then event.

    Three stable sorts on attributes run at C speed, several times faster than one sort with a
    Python key function on the large tables a month of many events makes.
    """
    rows.sort(key=_BY_EVENT)
    rows.sort(key=_BY_VALUE, reverse=True)
    rows.sort(key=_BY_CATEGORY)
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class Period:
    """The rows of one period; `start` is aware, in the configured time zone."""

    start: datetime
    rows: tuple[Row, ...] = field(default_factory=tuple)

    def get(self, category: str, event: str, kind: Kind | None = None) -> Row | None:
        """The row for (category, event), optionally of one kind, or None."""
        for row in self.rows:
            if row.category == category and row.event == event and (kind is None or row.kind == kind):
                return row
        return None


@dataclass(frozen=True, slots=True)
class Mark:
    """A named point in the service's life, such as `go-live` or a deploy."""

    name: str
    category: str
    at: datetime


@dataclass(frozen=True, slots=True)
class UsageTable:
    """Aggregated usage: `periods` newest first, each with its rows in display order.

    `period` is "base", "day" or "month". Export with `to_csv()`, `to_json()` or `as_dicts()`
    (see `formats` for these and the terminal's text).
    """

    period: PeriodName
    periods: tuple[Period, ...]

    @classmethod
    def from_periods(
        cls, period: PeriodName, periods: Iterable[tuple[datetime, list[Row]]], *, minimum: float = 0
    ) -> UsageTable:
        """A table from (start, rows) of each period, in any order, dropping rows below `minimum`
        and periods left empty. (Pairs, not a dict: two local times of a repeated DST hour are
        equal as dict keys.)"""
        kept = []
        for start, rows in periods:
            if minimum:
                rows = [r for r in rows if r.value >= minimum]
            if rows:
                kept.append(Period(start, sort_rows(rows)))
        kept.sort(key=lambda p: p.start.timestamp(), reverse=True)
        return cls(period, tuple(kept))

    @classmethod
    def build(cls, period: PeriodName, rows: Iterable[tuple[datetime, Row]], *, minimum: float = 0) -> UsageTable:
        """Group (start, row) pairs into sorted periods, dropping rows below `minimum`."""
        starts: dict[float, datetime] = {}
        grouped: dict[float, list[Row]] = {}
        for start, row in rows:
            instant = start.timestamp()
            starts.setdefault(instant, start)
            grouped.setdefault(instant, []).append(row)
        return cls.from_periods(period, ((starts[i], r) for i, r in grouped.items()), minimum=minimum)

    def as_dicts(self) -> list[dict[str, Any]]:
        """One dict per row: start (ISO 8601), category, event, kind, value."""
        return [
            {
                "start": period.start.isoformat(),
                "category": row.category,
                "event": row.event,
                "kind": row.kind,
                "value": row.value,
            }
            for period in self.periods
            for row in period.rows
        ]

    def to_json(self) -> str:
        """The table as JSON: {"period": ..., "rows": [...as_dicts()...]}."""
        return formats.to_json(self)

    def to_csv(self) -> str:
        """The table as CSV with a header row; cells that a spreadsheet would run as formulas are quoted."""
        return formats.to_csv(self)

    def total(self, category: str, event: str) -> int | float:
        """The sum of `value` for (category, event) over every period (a convenience for checks)."""
        return sum(r.value for p in self.periods for r in p.rows if r.category == category and r.event == event)
