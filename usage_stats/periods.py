"""Period arithmetic in the configured time zone: base periods, days and months (pure, no I/O).

Days and months begin at local midnight, so a day lasts 23, 24 or 25 hours across DST changes.
Where midnight happens twice (the clocks go back at 01:00), a day begins at the first one: the
earliest instant of its local date. Base periods are counted from the day's start in elapsed time
and never straddle two days: on a 25-hour day an hourly base has 25 periods; the last period of a
short day may be shorter; on a long day a remainder shorter than the base joins the day's last
period, so a base of one day is always one period per day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

__all__ = ["PERIODS", "Calendar", "PeriodName", "Slot", "add_months", "month_of", "period_name"]

PeriodName = Literal["day", "month", "base"]
PERIODS: tuple[PeriodName, ...] = ("day", "month", "base")


def period_name(value: str) -> PeriodName:
    """`value` as a period name; `ValueError` unless it is one of `PERIODS`."""
    for name in PERIODS:
        if value == name:
            return name
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {value!r}")


_DAY_SECONDS = 86_400


class Slot(NamedTuple):
    """The base period that contains an instant: [start, end) in Unix seconds, and its local day."""

    start: int
    end: int
    day: date


def month_of(day: date) -> date:
    """The first day of the month that holds `day`."""
    return day.replace(day=1)


def add_months(month: date, months: int) -> date:
    """The first day of the month `months` after (or before, if negative) the month of `month`."""
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class Calendar:
    """Maps instants to base periods, days and months in one time zone."""

    def __init__(self, zone: ZoneInfo, base_period: timedelta) -> None:
        self.zone = zone
        self.base_seconds = int(base_period.total_seconds())
        self._day_cache: tuple[int, int, date] = (0, 0, date.min)

    def day_start(self, day: date) -> datetime:
        """The first instant of local `day`, as an aware datetime in the zone.

        Where midnight does not exist (a DST gap at midnight), this is the first instant after it.
        """
        naive = datetime(day.year, day.month, day.day)
        return datetime.fromtimestamp(naive.replace(tzinfo=self.zone).timestamp(), self.zone)

    def day_start_ts(self, day: date) -> int:
        """`day_start` in Unix seconds."""
        return int(datetime(day.year, day.month, day.day, tzinfo=self.zone).timestamp())

    def day_of(self, ts: float) -> date:
        """The local date of the instant `ts` (Unix seconds)."""
        return datetime.fromtimestamp(ts, self.zone).date()

    def day_bounds(self, ts: float) -> tuple[int, int, date]:
        """[start, end) of the local day holding `ts`, in Unix seconds, and its date (cached)."""
        start, end, day = self._day_cache
        if start <= ts < end:
            return self._day_cache
        day = self.day_of(ts)
        bounds = (self.day_start_ts(day), self.day_start_ts(day + timedelta(days=1)), day)
        self._day_cache = bounds
        return bounds

    def slot(self, ts: float) -> Slot:
        """The base period that holds the instant `ts` (Unix seconds)."""
        day_start, day_end, day = self.day_bounds(ts)
        base = self.base_seconds
        length = day_end - day_start
        last = length // base - 1 if length > _DAY_SECONDS else (length - 1) // base  # the day's last period
        index = min(int(ts - day_start) // base, last)
        start = day_start + index * base
        return Slot(start, day_end if index == last else start + base, day)

    def local(self, ts: float) -> datetime:
        """The instant `ts` as an aware datetime in the zone."""
        return datetime.fromtimestamp(ts, self.zone)

    def month_start(self, month: date) -> datetime:
        """The first instant of the month holding `month`."""
        return self.day_start(month_of(month))

    def period_floor(self, period: PeriodName, moment: datetime) -> datetime:
        """The start of the `period` ("base", "day" or "month") that holds `moment`."""
        ts = moment.timestamp()
        if period == "base":
            return self.local(self.slot(ts).start)
        day = self.day_of(ts)
        return self.day_start(month_of(day) if period == "month" else day)

    def period_ceil(self, period: PeriodName, moment: datetime) -> datetime:
        """The start of the first `period` that begins at or after `moment`."""
        floor = self.period_floor(period, moment)
        if floor >= moment:
            return floor
        if period == "base":
            return self.local(self.slot(moment.timestamp()).end)
        day = self.day_of(moment.timestamp())
        return self.day_start(add_months(day, 1) if period == "month" else day + timedelta(days=1))


def utc(ts: float) -> datetime:
    """Unix seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)
