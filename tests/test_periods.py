"""Period arithmetic in a time zone: base periods, days and months, across DST changes (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from usage_stats.periods import Calendar, add_months, month_of

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def ts(*args: int, tz: ZoneInfo | None = None) -> float:
    return datetime(*args, tzinfo=tz or UTC).timestamp()  # type: ignore[arg-type,misc]


def test_month_helpers() -> None:
    assert month_of(date(2026, 3, 31)) == date(2026, 3, 1)
    assert add_months(date(2026, 1, 1), 1) == date(2026, 2, 1)
    assert add_months(date(2026, 12, 1), 1) == date(2027, 1, 1)
    assert add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)
    assert add_months(date(2026, 3, 1), -24) == date(2024, 3, 1)
    assert add_months(date(2026, 3, 1), 0) == date(2026, 3, 1)


def test_hourly_slot_in_utc() -> None:
    cal = Calendar(ZoneInfo("UTC"), timedelta(hours=1))
    slot = cal.slot(ts(2026, 3, 10, 12, 59, 59))
    assert slot.start == ts(2026, 3, 10, 12)
    assert slot.end == ts(2026, 3, 10, 13)
    assert slot.day == date(2026, 3, 10)
    assert cal.slot(ts(2026, 3, 10, 13)).start == ts(2026, 3, 10, 13)


def test_days_begin_at_local_midnight() -> None:
    cal = Calendar(NEW_YORK, timedelta(hours=1))
    # 03:30 UTC on 11 March is still 10 March in New York (UTC-4 after the DST change on 8 March)
    assert cal.day_of(ts(2026, 3, 11, 3, 30)) == date(2026, 3, 10)
    assert cal.day_of(ts(2026, 3, 11, 4, 0)) == date(2026, 3, 11)
    start, end, day = cal.day_bounds(ts(2026, 3, 11, 3, 30))
    assert (start, end, day) == (ts(2026, 3, 10, 4), ts(2026, 3, 11, 4), date(2026, 3, 10))


def test_spring_forward_day_has_23_hourly_periods() -> None:
    cal = Calendar(LONDON, timedelta(hours=1))
    day = date(2026, 3, 29)  # clocks go forward at 01:00 UTC
    start, end = cal.day_start_ts(day), cal.day_start_ts(day + timedelta(days=1))
    assert end - start == 23 * 3600
    starts = {cal.slot(t).start for t in range(int(start), int(end), 600)}
    assert len(starts) == 23
    assert all(cal.slot(t).day == day for t in range(int(start), int(end), 600))


def test_fall_back_day_has_25_hourly_periods() -> None:
    cal = Calendar(NEW_YORK, timedelta(hours=1))
    day = date(2026, 11, 1)
    start, end = cal.day_start_ts(day), cal.day_start_ts(day + timedelta(days=1))
    assert end - start == 25 * 3600
    assert len({cal.slot(t).start for t in range(int(start), int(end), 600)}) == 25


def test_base_periods_never_straddle_a_day() -> None:
    # 8 h periods on a 23 h day: the last one is cut short at midnight
    cal = Calendar(LONDON, timedelta(hours=8))
    day = date(2026, 3, 29)
    end = cal.day_start_ts(day + timedelta(days=1))
    last = cal.slot(end - 1)
    assert last.end == end
    assert last.day == day
    assert cal.slot(end).day == day + timedelta(days=1)


def test_period_floor_and_ceil() -> None:
    cal = Calendar(LONDON, timedelta(hours=1))
    moment = datetime(2026, 7, 15, 10, 30, tzinfo=LONDON)
    assert cal.period_floor("base", moment) == datetime(2026, 7, 15, 10, tzinfo=LONDON)
    assert cal.period_floor("day", moment) == datetime(2026, 7, 15, tzinfo=LONDON)
    assert cal.period_floor("month", moment) == datetime(2026, 7, 1, tzinfo=LONDON)
    assert cal.period_ceil("base", moment) == datetime(2026, 7, 15, 11, tzinfo=LONDON)
    assert cal.period_ceil("day", moment) == datetime(2026, 7, 16, tzinfo=LONDON)
    assert cal.period_ceil("month", moment) == datetime(2026, 8, 1, tzinfo=LONDON)
    exact = datetime(2026, 7, 1, tzinfo=LONDON)
    assert cal.period_ceil("month", exact) == exact
    assert cal.period_floor("day", moment).utcoffset() == timedelta(hours=1)


def test_day_start_is_aware_in_the_zone() -> None:
    cal = Calendar(NEW_YORK, timedelta(days=1))
    start = cal.day_start(date(2026, 1, 5))
    assert start == datetime(2026, 1, 5, 5, tzinfo=UTC)
    assert start.tzinfo is not None
    assert start.utcoffset() == timedelta(hours=-5)
    assert cal.month_start(date(2026, 1, 20)) == datetime(2026, 1, 1, tzinfo=NEW_YORK)


@pytest.mark.parametrize("minutes", [1, 5, 15, 30, 60, 120, 240, 1440])
def test_slots_tile_a_day(minutes: int) -> None:
    cal = Calendar(NEW_YORK, timedelta(minutes=minutes))
    day = date(2026, 3, 8)  # spring forward
    t = cal.day_start_ts(day)
    end = cal.day_start_ts(day + timedelta(days=1))
    while t < end:
        slot = cal.slot(t)
        assert slot.start == t
        assert slot.day == day
        assert slot.end > t
        t = slot.end
    assert t == end


@pytest.mark.parametrize("minutes", [60, 1440])
def test_a_day_whose_midnight_does_not_exist(minutes: int) -> None:
    # Chile moves its clocks forward at midnight: 6 September 2026 begins at 01:00 local time.
    zone = ZoneInfo("America/Santiago")
    cal = Calendar(zone, timedelta(minutes=minutes))
    day = date(2026, 9, 6)
    start = cal.day_start(day)
    assert (start.hour, start.minute) == (1, 0)
    assert cal.day_of(start.timestamp()) == day
    assert cal.day_of(start.timestamp() - 1) == day - timedelta(days=1)
    end = cal.day_start_ts(day + timedelta(days=1))
    assert end - start.timestamp() == 23 * 3600
    t = cal.day_start_ts(day)
    while t < end:
        slot = cal.slot(t)
        assert (slot.start, slot.day) == (t, day)
        t = slot.end
    assert t == end


def test_a_long_day_is_one_period_with_a_base_of_one_day() -> None:
    cal = Calendar(ZoneInfo("Europe/Berlin"), timedelta(days=1))
    day = date(2026, 10, 25)  # 25 hours
    start, end = cal.day_start_ts(day), cal.day_start_ts(day + timedelta(days=1))
    assert end - start == 25 * 3600
    assert {cal.slot(t) for t in range(start, end, 600)} == {(start, end, day)}
    assert cal.slot(end).start == end


def test_a_remainder_shorter_than_the_base_joins_the_last_period_of_a_long_day() -> None:
    cal = Calendar(ZoneInfo("Europe/Berlin"), timedelta(hours=12))
    day = date(2026, 10, 25)
    start, end = cal.day_start_ts(day), cal.day_start_ts(day + timedelta(days=1))
    slots = sorted({cal.slot(t) for t in range(start, end, 600)})
    assert [(s.start - start, s.end - start) for s in slots] == [(0, 12 * 3600), (12 * 3600, 25 * 3600)]
