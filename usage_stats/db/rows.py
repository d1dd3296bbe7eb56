"""What the store's reads return: plain named tuples, no driver types (the read path builds on them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

__all__ = ["LiveKeys", "MarkRow", "PeriodCounts", "Snapshot", "StoredDistinct"]


class PeriodCounts(NamedTuple):
    """The count rows of one period, as parallel arrays (one entry per row)."""

    start: datetime
    categories: list[str]
    events: list[str]
    totals: list[bool]  # the row is a category's total (events merged, event `<all>`)
    values: list[int]
    merged: bool  # rows finer than the period were summed into it (then an event may appear twice)


class StoredDistinct(NamedTuple):
    """A distinct count stored by day-end maintenance (of a day, or summed over a month)."""

    start: datetime
    category: str
    level: int
    value: int


class LiveKeys(NamedTuple):
    """The distinct keys of a day that maintenance has not closed yet, per category."""

    day: date
    category: str
    keys: int


class MarkRow(NamedTuple):
    """A stored mark (`at` in UTC)."""

    name: str
    category: str
    at: datetime


class Snapshot(NamedTuple):
    """The stored rows of one table, read in one transaction (see `Store.snapshot`)."""

    go_live: datetime | None
    counts: list[PeriodCounts]
    stored_distinct: list[StoredDistinct]
    live_keys: list[LiveKeys]
