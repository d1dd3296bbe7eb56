"""Every stored instant is grouped into the day and month that begin at the earliest instant of its
local date, in every time zone, around every DST change from 2020 to 2030, by the period starts and
the lookup that roll-ups and tables use (`usage_stats/db/periodkeys.py`)."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from usage_stats.db.periodkeys import PERIOD_OF, period_starts
from usage_stats.periods import Calendar, month_of

_LO = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
_HI = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp())
_STEP = 86_400  # no zone changes its offset twice within a day (a 6-hour step finds the same 4,518 changes)
_TICK = timedelta(microseconds=1)

# What roll-ups and tables do: each stored start looked up in the period starts.
_GROUPED = "SELECT t.x, {parent} FROM unnest($1::timestamptz[]) AS t(x)".format(
    parent=PERIOD_OF.format(starts="$2", column="t.x")
)


def transitions(zone: ZoneInfo) -> list[int]:
    """Every instant (Unix seconds) from 2020 to 2030 at which the zone's UTC offset changes."""
    found = []
    t = _LO
    before = datetime.fromtimestamp(t, zone).utcoffset()
    while t < _HI:
        after = datetime.fromtimestamp(t + _STEP, zone).utcoffset()
        if after != before:
            lo, hi = t, t + _STEP  # the change is in (lo, hi]: bisect to the second
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, zone).utcoffset() == before:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
            before = after
        t += _STEP
    return found


def instants_around(calendar: Calendar, change: int) -> set[datetime]:
    """The change itself and a second either side, and the first instant of every day and month near
    it with the instant just before it: the stored rows most likely to land in the wrong period."""
    points = {datetime.fromtimestamp(change + d, UTC) for d in (-1, 0, 1)}
    first = calendar.day_of(change - 1)
    for day in (first + timedelta(days=d) for d in range(-1, 3)):
        for start in (calendar.day_start(day), calendar.day_start(month_of(day))):
            points |= {start.astimezone(UTC), start.astimezone(UTC) - _TICK}
    return points


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


async def test_every_day_and_month_starts_at_the_earliest_instant_of_its_date_around_every_dst_change(
    db: asyncpg.Connection,
) -> None:
    changes = checked = 0
    doubled: set[str] = set()  # zones where a midnight happens twice, and PostgreSQL's date_trunc differs
    for name in sorted(zoneinfo.available_timezones()):
        zone = ZoneInfo(name)
        calendar = Calendar(zone, timedelta(hours=1))
        found = transitions(zone)
        changes += len(found)
        clusters = [sorted(instants_around(calendar, change)) for change in found]
        stored = sorted({moment for cluster in clusters for moment in cluster})
        if not stored:
            continue
        for period in ("day", "month"):
            # The starts a roll-up would get for rows spanning each change (the years between the
            # changes add nothing but time to the test).
            starts = {s for c in clusters for s in period_starts(calendar, period, c[0], c[-1])}
            rows = await db.fetch(_GROUPED, stored, sorted(starts, key=datetime.timestamp))
            assert len(rows) == len(stored)
            for moment, start in rows:
                assert start is not None, (name, moment)
                # The definition, independent of Calendar: the period holds the instant, and its
                # start is the earliest instant of its first date (the instant before is earlier).
                day = local_date(moment, zone)
                first = local_date(start, zone)
                assert first == (day if period == "day" else month_of(day)), (name, period, moment, start)
                assert start <= moment, (name, period, moment, start)
                assert local_date(start - _TICK, zone) < first, (name, period, moment, start)
                checked += 1
    assert changes > 4000  # sanity: the scan found the DST changes (4 518 with 2025 tzdata)
    # For the record, and to show these instants are the hard ones: PostgreSQL's own rule, which the
    # tables used before, starts some of these days elsewhere (zones PostgreSQL knows only).
    known = {r[0] for r in await db.fetch("SELECT name FROM pg_timezone_names")}
    for name in ("Atlantic/Azores", "America/Havana"):
        assert name in known
        zone = ZoneInfo(name)
        calendar = Calendar(zone, timedelta(hours=1))
        stored = sorted({m for c in transitions(zone) for m in instants_around(calendar, c)})
        truncated = await db.fetch(
            "SELECT date_trunc('day', x, $2) FROM unnest($1::timestamptz[]) AS t(x)", stored, name
        )
        floors = [calendar.period_floor("day", m).timestamp() for m in stored]  # as numbers: see PEP 495
        if any(r[0].timestamp() != floor for r, floor in zip(truncated, floors, strict=True)):
            doubled.add(name)
    assert doubled == {"Atlantic/Azores", "America/Havana"}
    print(f"\n{len(zoneinfo.available_timezones())} zones, {changes} DST changes, {checked} instants checked")


def test_period_starts_cover_every_period_from_first_to_last() -> None:
    azores = ZoneInfo("Atlantic/Azores")
    calendar = Calendar(azores, timedelta(hours=1))
    first, last = datetime(2026, 10, 24, 23, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    days = period_starts(calendar, "day", first, last)
    assert [d.timestamp() for d in days] == [
        datetime(2026, 10, 24, tzinfo=UTC).timestamp(),  # summer time, UTC+0
        datetime(2026, 10, 25, tzinfo=UTC).timestamp(),  # the first of the two midnights
    ]
    months = period_starts(calendar, "month", datetime(2025, 12, 31, 23, 59, tzinfo=azores), last)
    assert [(m.year, m.month, m.day, m.hour) for m in months] == [(2025, 12, 1, 0)] + [
        (2026, n, 1, 0) for n in range(1, 11)
    ]
    assert period_starts(calendar, "day", None, None) == []
