"""Day-end maintenance against PostgreSQL: distinct keys to daily counts, roll-ups, retention,
averages, catch-up, concurrency and DST. Time is driven by the test clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory, stored_state
from usage_stats import UsageConfig, UsageStats


async def day_end(stats: UsageStats, clock: FakeClock) -> list[date]:
    """Flush, move the clock past the next local midnight and the grace period, and maintain."""
    await stats.flush()
    zone = stats.calendar.zone
    local = clock.now.astimezone(zone)
    next_day = local.date() + timedelta(days=1)
    clock.set(stats.calendar.day_start(next_day) + stats.grace + timedelta(minutes=1))
    return await stats.maintain()


async def test_day_end_turns_keys_into_distinct_counts_and_deletes_keys_and_salt(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        for user in ("ann", "bob", "ann"):
            stats.seen_user(user)
        for address in ("192.0.2.1", "192.0.2.200", "198.51.100.7"):
            stats.seen_visitor(address)
        await stats.flush()
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".salts') == 1
        assert await stats.maintain() == []  # the day has not ended yet
        processed = await day_end(stats, clock)
        assert processed == [date(2026, 3, 10)]
        distinct = {r["category"]: r["value"] for r in await db.fetch(f'SELECT * FROM "{schema}".distinct_counts')}
        assert distinct == {"user": 2, "visitor": 2}
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".salts') == 0
        table = await stats.table("day")
        day = table.periods[0]
        assert day.start == datetime(2026, 3, 10, tzinfo=UTC)
        assert day.get("seen", "user", "distinct").value == 2  # type: ignore[union-attr]
        assert await stats.maintain() == []  # rerunning is a no-op


async def test_late_keys_for_a_closed_day_are_dropped_but_counts_still_added(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        stats.seen_user("ann")
        await day_end(stats, clock)
        # Counts and a key recorded for 10 March reach the database only after it was closed.
        stats.recorder.counters.add("page", "/late", 3, datetime(2026, 3, 10, 23, 0, tzinfo=UTC).timestamp())
        stats.recorder.counters.seen("u", "user", "bob", datetime(2026, 3, 10, 23, 0, tzinfo=UTC).timestamp())
        await stats.flush()
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0
        table = await stats.table("day")
        march10 = next(p for p in table.periods if p.start.date() == date(2026, 3, 10))
        assert march10.get("page", "/late").value == 3  # type: ignore[union-attr]
        assert march10.get("seen", "user", "distinct").value == 1  # type: ignore[union-attr]


async def test_rollups_follow_the_keep_settings_and_conserve_sums(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    clock.set(datetime(2026, 1, 1, 9, tzinfo=UTC))
    async with make_stats(keep_base_days=1, keep_days=2, keep_event_months=1, keep_months=2) as stats:
        recorded: dict[tuple[str, str], int] = {}
        for _ in range(100):  # 1 Jan .. 10 Apr
            for event, category, n in (("/a", "page", 2), ("/b", "page", 1), ("/api", "api", 5)):
                stats.add(event, category, n)
                recorded[(category, event)] = recorded.get((category, event), 0) + n
            await day_end(stats, clock)
            clock.advance(hours=9)
        assert clock.now.date() == date(2026, 4, 11)
        levels = {r[0]: r[1] for r in await db.fetch(f'SELECT level, count(*) FROM "{schema}".counts GROUP BY 1')}
        # base rows: only the last keep_base_days + today; day rows: keep_days; month rows: this month
        # and keep_event_months; totals: up to keep_months.
        assert levels.get(1, 0) <= 3 * 2
        assert levels.get(2, 0) <= 3 * 3
        assert levels.get(3, 0) <= 3 * 2
        assert levels.get(4, 0) <= 2 * 2
        month = await stats.table("month")
        starts = [p.start.date() for p in month.periods]
        assert starts == [date(2026, 4, 1), date(2026, 3, 1), date(2026, 2, 1)]  # January purged
        feb = month.periods[2]
        assert {(r.category, r.event, r.kind) for r in feb.rows} >= {
            ("page", "<all>", "total"),
            ("api", "<all>", "total"),
        }
        assert feb.get("page", "<all>").value == 28 * 3  # type: ignore[union-attr]
        march = month.periods[1]
        assert march.get("page", "/a").value == 31 * 2  # type: ignore[union-attr]
        april = month.periods[0]
        assert april.get("api", "/api").value == 10 * 5  # type: ignore[union-attr]
        day = await stats.table("day")
        assert [p.start.date() for p in day.periods] == [date(2026, 4, 10), date(2026, 4, 9)]  # keep_days=2


async def test_monthly_average_of_daily_distinct_counts(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    clock.set(datetime(2026, 1, 20, 12, tzinfo=UTC))  # go-live on 20 January
    async with make_stats(keep_days=3) as stats:
        expected_sum: dict[date, int] = {}
        day = clock.now.date()
        while day < date(2026, 3, 6):
            users = 1 + day.day % 4
            for n in range(users):
                stats.seen_user(f"user{n}")
            month = day.replace(day=1)
            expected_sum[month] = expected_sum.get(month, 0) + users
            await day_end(stats, clock)
            clock.advance(hours=11)
            day = clock.now.date()
        # Today (6 March) has keys too, which must not count in the average.
        for n in range(50):
            stats.seen_user(f"today{n}")
        await stats.flush()
        table = await stats.table("month")
        averages = {p.start.date(): p.get("seen", "user", "average") for p in table.periods}
        jan = averages[date(2026, 1, 1)]
        assert jan is not None
        assert jan.value == pytest.approx(expected_sum[date(2026, 1, 1)] / 12)
        feb = averages[date(2026, 2, 1)]
        assert feb is not None
        assert feb.value == pytest.approx(expected_sum[date(2026, 2, 1)] / 28)
        mar = averages[date(2026, 3, 1)]
        assert mar is not None
        assert mar.value == pytest.approx(expected_sum[date(2026, 3, 1)] / 5)
        assert all(r.kind != "distinct" for p in table.periods for r in p.rows)
        day_table = await stats.table("day")
        assert day_table.periods[0].get("seen", "user", "distinct").value == 50  # type: ignore[union-attr]


async def test_no_average_without_a_live_day(make_stats: StatsFactory, clock: FakeClock) -> None:
    async with make_stats() as stats:
        stats.seen_user("ann")
        await stats.flush()
        table = await stats.table("month")  # go-live is today: no complete live day yet
        assert all(r.kind != "average" for p in table.periods for r in p.rows)


def traffic(stats: UsageStats, day_index: int) -> None:
    for n in range(day_index % 5 + 1):
        stats.add(f"/e{n}", "page" if n % 2 else "api", n + day_index)
        stats.seen_user(f"u{n}")
        stats.seen_visitor(f"203.0.{n}.9")


async def test_catch_up_after_40_days_equals_daily_runs(
    make_config: Callable[..., UsageConfig], pg_dsn: str, schema: str, second_schema: str, db: asyncpg.Connection
) -> None:
    start = datetime(2026, 2, 1, 8, tzinfo=UTC)
    settings: dict[str, Any] = {"keep_base_days": 1, "keep_days": 5, "keep_event_months": 1, "keep_months": 3}
    daily_clock, catch_up_clock = FakeClock(start), FakeClock(start)
    daily = UsageStats(make_config(**settings), clock=daily_clock)
    late = UsageStats(make_config(schema=second_schema, **settings), clock=catch_up_clock)
    async with daily, late:
        for i in range(45):
            for stats, clk in ((daily, daily_clock), (late, catch_up_clock)):
                clk.set(start + timedelta(days=i))
                traffic(stats, i)
                await stats.flush()
            daily_clock.set(start + timedelta(days=i + 1) - timedelta(hours=8) + daily.grace)
            await daily.maintain()
        # The second service was "down" for maintenance all along: one run catches up.
        catch_up_clock.set(daily_clock.now)
        processed = await late.maintain()
        assert len(processed) == 45
    assert await stored_state(db, schema) == await stored_state(db, second_schema)


async def test_four_concurrent_maintain_calls_equal_one(
    make_config: Callable[..., UsageConfig], clock: FakeClock, schema: str, second_schema: str, db: asyncpg.Connection
) -> None:
    one = UsageStats(make_config(keep_days=2), clock=clock)
    workers = [UsageStats(make_config(schema=second_schema, keep_days=2), clock=clock) for _ in range(4)]
    async with one, workers[0], workers[1], workers[2], workers[3]:
        for i in range(12):
            for stats in (one, workers[i % 4]):
                traffic(stats, i)
                await stats.flush()
            clock.advance(days=1)
        clock.advance(hours=3)
        await one.maintain()
        results: list[list[date]] = []

        async def run(stats: UsageStats) -> None:
            results.append(await stats.maintain())

        async with anyio.create_task_group() as tg:
            for stats in workers:
                tg.start_soon(run, stats)
        assert sorted(d for r in results for d in r) == sorted(set(d for r in results for d in r))  # each day once
    assert await stored_state(db, schema) == await stored_state(db, second_schema)


@pytest.mark.parametrize(
    ("zone", "change_day", "hours"),
    [
        ("Europe/London", date(2026, 3, 29), 23),
        ("Europe/London", date(2026, 10, 25), 25),
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
    ],
)
async def test_days_and_base_periods_across_dst(
    make_stats: StatsFactory, clock: FakeClock, zone: str, change_day: date, hours: int
) -> None:
    tz = ZoneInfo(zone)
    # Aware arithmetic in a ZoneInfo zone is wall-clock arithmetic: count elapsed time in UTC.
    day_start = datetime(change_day.year, change_day.month, change_day.day, tzinfo=tz).astimezone(UTC)
    clock.set(day_start - timedelta(hours=1))
    async with make_stats(timezone=zone, base_period=timedelta(minutes=15), keep_base_days=0) as stats:
        stats.count("/before", "page")  # 23:00 the evening before
        elapsed = 0.0
        while elapsed < hours:  # one count every 15 minutes of the changing day, in elapsed time
            clock.set(day_start + timedelta(hours=elapsed))
            stats.count("/tick", "page")
            elapsed += 0.25
        clock.set(day_start + timedelta(hours=hours, minutes=1))  # 00:01 the next day
        stats.count("/after", "page")
        await stats.flush()
        base = await stats.table("base", start=day_start, end=day_start + timedelta(hours=hours))
        assert len(base.periods) == hours * 4
        assert all(p.get("page", "/tick").value == 1 for p in base.periods)  # type: ignore[union-attr]
        assert base.periods[-1].start == day_start
        days = await stats.table("day")
        by_day = {p.start: p for p in days.periods}
        assert by_day[day_start].get("page", "/tick").value == hours * 4  # type: ignore[union-attr]
        assert by_day[day_start].get("page", "/before") is None
        # After day end the base rows become one day row at local midnight, with the same sum.
        clock.set(day_start + timedelta(hours=hours) + stats.grace)
        await stats.maintain()
        rolled = await stats.table("day")
        changed = next(p for p in rolled.periods if p.start == day_start)
        assert (changed.start.hour, changed.start.minute) == (0, 0)
        assert changed.start.tzinfo == tz
        assert changed.get("page", "/tick").value == hours * 4  # type: ignore[union-attr]
        assert len(rolled.periods) == 3


async def _periods(stats: UsageStats, period: str) -> list[tuple[datetime, int]]:
    """(start, count of page "/tick") of every period of a table that has ticks, oldest first."""
    table = await stats.table(period)
    found = [(p.start, p.get("page", "/tick")) for p in table.periods]
    return sorted((start, row.value) for start, row in found if row is not None)  # type: ignore[misc]


async def test_a_25_hour_day_is_one_period_with_a_base_of_one_day(make_stats: StatsFactory, clock: FakeClock) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    day = datetime(2026, 10, 25, tzinfo=berlin)  # clocks go back at 03:00: 25 hours
    day_start = day.astimezone(UTC)
    assert datetime(2026, 10, 26, tzinfo=berlin).astimezone(UTC) - day_start == timedelta(hours=25)
    clock.set(day_start)
    config = {"timezone": "Europe/Berlin", "base_period": timedelta(days=1), "keep_base_days": 0, "keep_days": 1}
    async with make_stats(**config) as stats:
        for hour in range(25):  # every hour of the day, the last one (23:00-24:00) included
            clock.set(day_start + timedelta(hours=hour, minutes=30))
            stats.count("/tick", "page")
        await stats.flush()
        for period in ("base", "day"):
            assert await _periods(stats, period) == [(day, 25)], period
        assert await _periods(stats, "month") == [(datetime(2026, 10, 1, tzinfo=berlin), 25)]
        await day_end(stats, clock)  # 25 October is closed: its rows stay day rows (keep_days=1)
        assert await _periods(stats, "day") == [(day, 25)]
        await day_end(stats, clock)  # 26 October is closed: 25 October becomes a month row
        assert await _periods(stats, "day") == []
        assert await _periods(stats, "month") == [(datetime(2026, 10, 1, tzinfo=berlin), 25)]


LARGEST_KEEP = {"keep_base_days": 100_000, "keep_days": 100_000, "keep_event_months": 100_000, "keep_months": 100_000}


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Auckland", "America/New_York"])
@pytest.mark.parametrize(
    ("keep", "levels"),
    [
        (LARGEST_KEEP, {1}),  # the largest values validation accepts: "keep forever"
        ({"keep_base_days": 0, "keep_days": 0, "keep_event_months": 24_315, "keep_months": 24_315}, {3}),  # < year 1
        ({"keep_base_days": 0, "keep_days": 0, "keep_event_months": 0, "keep_months": 24_313}, {4}),  # January, year 1
    ],
)
async def test_maintenance_works_with_the_largest_accepted_keep_values(
    make_stats: StatsFactory,
    clock: FakeClock,
    db: asyncpg.Connection,
    schema: str,
    zone: str,
    keep: dict[str, int],
    levels: set[int],
) -> None:
    async with make_stats(timezone=zone, **keep) as stats:
        for _ in range(3):
            stats.add("/a", "page", 2)
            stats.seen_user("ann")
            assert len(await day_end(stats, clock)) == 1  # no "year out of range"
        clock.advance(days=70)  # across months: every roll-up and the purge have their turn
        assert len(await stats.maintain()) == 70
        month = await stats.table("month")
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".counts') == 6  # nothing purged, sums conserved
    assert await db.fetchval(f'SELECT sum(value) FROM "{schema}".distinct_counts') == 3
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0  # keys still deleted
    assert sum(r.value for p in month.periods for r in p.rows if r.category == "page") == 6
    assert {r[0] for r in await db.fetch(f'SELECT DISTINCT level FROM "{schema}".counts')} == levels


async def _dated(stats: UsageStats, period: str) -> list[tuple[datetime, int | float | None, int | float | None]]:
    """(start in UTC, count of page "/tick", distinct or average visitors) of every period, oldest first.

    In UTC: aware datetimes of one zone compare as wall times, so both midnights would look equal."""
    table = await stats.table(period)
    rows = []
    for p in table.periods:
        tick = p.get("page", "/tick")
        seen = p.get("seen", "visitor", "distinct" if period == "day" else "average")
        rows.append(
            (p.start.astimezone(UTC), None if tick is None else tick.value, None if seen is None else seen.value)
        )
    return sorted(rows)


async def test_a_midnight_that_happens_twice_starts_one_period_per_date(
    make_stats: StatsFactory, clock: FakeClock
) -> None:
    # Atlantic/Azores: on 25 October 2026 the clocks go back from 01:00 to 00:00, so local midnight
    # happens at 00:00 UTC and again at 01:00 UTC. The day begins at the first one.
    azores = ZoneInfo("Atlantic/Azores")
    first, second = datetime(2026, 10, 25, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)
    assert first.astimezone(azores).replace(tzinfo=None) == second.astimezone(azores).replace(tzinfo=None)
    oct24, oct25, oct26 = (datetime(2026, 10, d, tzinfo=azores).astimezone(UTC) for d in (24, 25, 26))
    assert oct25 == first
    clock.set(datetime(2026, 10, 24, 12, tzinfo=UTC))
    config = {"timezone": "Atlantic/Azores", "keep_base_days": 0, "keep_days": 2}
    async with make_stats(**config) as stats:
        visitor = 0
        while clock.now < datetime(2026, 10, 25, 12, tzinfo=UTC):  # every 15 minutes across both midnights
            stats.count("/tick", "page")
            stats.seen_visitor(f"198.51.{visitor % 256}.1")
            visitor += 1
            clock.advance(minutes=15)
        assert visitor == 96  # 48 on each date: 12:00 to 00:00 UTC on the 24th, 00:00 to 12:00 UTC on the 25th
        await stats.flush()
        expected_days = [(oct24, 48, 48), (oct25, 48, 48)]
        assert await _dated(stats, "day") == expected_days  # read from hourly rows and live keys
        october = datetime(2026, 10, 1, tzinfo=azores).astimezone(UTC)
        assert [(start, tick) for start, tick, _ in await _dated(stats, "month")] == [(october, 96)]

        clock.set(oct26 + stats.grace)
        await stats.maintain()  # (the background task may have closed 24 October already)
        assert await _dated(stats, "day") == expected_days  # day rows and distinct rows, one period a date
        assert [(start, tick) for start, tick, _ in await _dated(stats, "month")] == [(october, 96)]

        clock.set(datetime(2026, 10, 29, tzinfo=azores).astimezone(UTC) + stats.grace)
        await stats.maintain()  # 24 and 25 October become month rows
        assert [p for p in await _dated(stats, "day") if p[0] < oct26] == []
        month = await _dated(stats, "month")
        assert [(start, tick) for start, tick, _ in month] == [(october, 96)]
        assert month[0][2] == 96 / 5  # 48 distinct visitors on two of the five live days, 24 to 28 October
