"""What the store's reads return: plain named tuples, no driver types (the read path builds on them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

__all__ = ["LiveKeys", "MarkRow", "PeriodCounts", "Snapshot", "StoredDistinct"]


class PeriodCounts(NamedTuple):
    """The count rows of one category in one period, as parallel columns in no particular order: every
    row of one kind, each event once (rows stored at the period's granularity, or the sums of rows
    not rolled up yet: the same event may be in both)."""

    start: datetime
    category: str
    total: bool  # the rows are the category's total (events merged, event `<all>`), not event counts
    events: list[str]
    values: list[int]


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
