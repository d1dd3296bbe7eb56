"""The day or month that each stored row belongs to, decided in Python only and joined into SQL.

PostgreSQL is never asked to interpret the time zone: where local midnight happens twice when DST
ends (Atlantic/Azores, America/Havana), `date_trunc('day', ts, zone)` picks the later midnight while
`periods.Calendar` starts the day at the earliest instant of its date; and PostgreSQL reads some zone
names (`CET`, `EET`, `MET`, `WET`) as fixed-offset abbreviations, without DST. So a statement that
groups rows into days or months first reads the distinct starts of those rows, then receives each
with the start of its day or month from `Calendar.period_floor` (`parent_starts`) as two arrays,
joined on equality (`PARENTS`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..periods import Calendar

__all__ = ["PARENTS", "ParentStarts", "parent_starts"]

# (distinct row starts, the start of the day or month each belongs to)
ParentStarts = tuple[list[datetime], list[datetime]]

# A FROM item with columns (child, start); format with the two array parameters, e.g. "$4", "$5".
PARENTS = "unnest({children}::timestamptz[], {parents}::timestamptz[]) AS p(child, start)"


def parent_starts(calendar: Calendar, period: str, children: Iterable[datetime]) -> ParentStarts:
    """Each distinct instant of `children` with the start of the `period` ("day" or "month") holding it."""
    ordered = sorted(set(children))
    return ordered, [calendar.period_floor(period, child) for child in ordered]
