"""`UsageTable` and its parts: the aggregated figures that `UsageStats.table()` returns (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import FrozenInstanceError, dataclass
from datetime import datetime
from functools import partial
from itertools import compress, groupby, islice, repeat
from operator import attrgetter, eq, ge, le
from typing import Any, Literal, NamedTuple, cast

from ..periods import PeriodName
from . import formats

__all__ = ["ALL", "SEEN", "Group", "Kind", "Mark", "Period", "Row", "UsageTable", "sort_rows"]

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


class Group(NamedTuple):
    """The rows of one category in one period as columns, in display order (value descending, then
    event): what exports and the dashboard read, without making a `Row` per figure."""

    category: str
    events: Sequence[str]
    values: Sequence[int | float]
    kinds: Sequence[Kind]


_BY_EVENT = attrgetter("event")
_BY_VALUE = attrgetter("value")
_BY_CATEGORY = attrgetter("category")
# A `Row` from a (category, event, value, kind) tuple, at C speed (`Row._make` is Python code).
_ROW = partial(tuple.__new__, Row)


def sort_rows(rows: list[Row]) -> tuple[Row, ...]:
    """Rows in display order: category, then value descending, then event.

    Three stable sorts on attributes run at C speed, several times faster than one sort with a
    Python key function on the large tables a month of many events makes.
    """
    rows.sort(key=_BY_EVENT)
    rows.sort(key=_BY_VALUE, reverse=True)
    rows.sort(key=_BY_CATEGORY)
    return tuple(rows)


def sorted_group(
    category: str, events: list[str], values: list[Any], kinds: Kind | list[Kind], *, minimum: float = 0
) -> Group:
    """A `Group` of the given columns (any order; `kinds` one per row, or one for all), rows below
    `minimum` dropped, in display order: value descending, then event.

    No tuple is made per row: the order is checked in C-speed passes, and only when it is not the
    display order are the rows' indices sorted (with C-speed keys: by event, then stably by value)
    and the columns rebuilt once.
    """
    per_row = None if isinstance(kinds, str) else kinds
    if minimum:
        keep = list(map(ge, values, repeat(minimum)))
        events, values = list(compress(events, keep)), list(compress(values, keep))
        per_row = None if per_row is None else list(compress(per_row, keep))
    if not (_in_order(values, ge) and _ties_in_order(events, values)):
        # One permutation, by event and then by value (a stable sort, with `reverse` too), applied
        # to the columns once.
        order = sorted(range(len(events)), key=events.__getitem__)
        order.sort(key=values.__getitem__, reverse=True)
        events, values = list(map(events.__getitem__, order)), list(map(values.__getitem__, order))
        per_row = None if per_row is None else list(map(per_row.__getitem__, order))
    return Group(category, events, values, per_row if per_row is not None else [cast(Kind, kinds)] * len(events))


def _in_order(column: list[Any], pairwise: Callable[[Any, Any], bool]) -> bool:
    return all(map(pairwise, column, islice(column, 1, None)))


def _ties_in_order(events: list[str], values: list[Any]) -> bool:
    """Whether the events of equal neighbouring values are in order."""
    ties = list(map(eq, values, islice(values, 1, None)))
    if not any(ties):
        return True
    return all(map(le, compress(events, ties), compress(islice(events, 1, None), ties)))


class Period:
    """The rows of one period; `start` is aware, in the configured time zone.

    A period read from the database keeps its figures as columns (`groups`) and makes its `Row`
    objects the first time `rows` is read: a table of many events need not hold an object per figure.
    """

    __slots__ = ("_groups", "_rows", "start")
    start: datetime
    _rows: tuple[Row, ...] | None
    _groups: tuple[Group, ...] | None

    def __init__(self, start: datetime, rows: Iterable[Row] = ()) -> None:
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "_rows", tuple(rows))
        object.__setattr__(self, "_groups", None)

    @classmethod
    def from_groups(cls, start: datetime, groups: Sequence[Group]) -> Period:
        """A period of `groups`, given in display order (by category)."""
        period = cls(start)
        object.__setattr__(period, "_rows", None)
        object.__setattr__(period, "_groups", tuple(groups))
        return period

    @property
    def rows(self) -> tuple[Row, ...]:
        """Every row, by category, then value descending, then event."""
        rows = self._rows
        if rows is None:
            made: list[Row] = []
            for category, events, values, kinds in self.groups:
                made += map(_ROW, zip(repeat(category), events, values, kinds))
            rows = tuple(made)
            object.__setattr__(self, "_rows", rows)
        return rows

    @property
    def groups(self) -> tuple[Group, ...]:
        """The rows as columns, one `Group` per category, in display order."""
        groups = self._groups
        if groups is None:
            groups = tuple(
                Group(category, [r.event for r in rows], [r.value for r in rows], [r.kind for r in rows])
                for category, rows in ((c, list(g)) for c, g in groupby(self.rows, key=_BY_CATEGORY))
            )
            object.__setattr__(self, "_groups", groups)
        return groups

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Period):
            return NotImplemented
        return self.start == other.start and self.rows == other.rows

    def __hash__(self) -> int:
        return hash((self.start, self.rows))

    def __repr__(self) -> str:
        return f"Period(start={self.start!r}, rows={self.rows!r})"

    def __reduce__(self) -> tuple[type[Period], tuple[datetime, tuple[Row, ...]]]:
        return (Period, (self.start, self.rows))  # for copy and pickle: a period of its rows

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def get(self, category: str, event: str, kind: Kind | None = None) -> Row | None:
        """The row for (category, event), optionally of one kind, or None."""
        for group in self.groups:
            if group.category != category:
                continue
            for i, found in enumerate(group.events):
                if found == event and (kind is None or group.kinds[i] == kind):
                    return Row(category, event, group.values[i], group.kinds[i])
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
            {"start": start, "category": group.category, "event": event, "kind": kind, "value": value}
            for period in self.periods
            for start in (period.start.isoformat(),)
            for group in period.groups
            for event, value, kind in zip(group.events, group.values, group.kinds, strict=True)
        ]

    def to_json(self) -> str:
        """The table as JSON: {"period": ..., "rows": [...as_dicts()...]}."""
        return formats.to_json(self)

    def to_csv(self) -> str:
        """The table as CSV with a header row; cells that a spreadsheet would run as formulas are quoted."""
        return formats.to_csv(self)

    def total(self, category: str, event: str) -> int | float:
        """The sum of `value` for (category, event) over every period (a convenience for checks)."""
        return sum(
            value
            for p in self.periods
            for group in p.groups
            if group.category == category
            for found, value in zip(group.events, group.values, strict=True)
            if found == event
        )
