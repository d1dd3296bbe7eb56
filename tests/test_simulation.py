"""A simulated service over 15 months (hourly base periods, several categories, Europe/Berlin):
at every day end `maintain()` runs, and the stored rows and tables are checked against an
independent computation in the test."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageStats, UsageTable
from usage_stats.periods import add_months

ZONE = ZoneInfo("Europe/Berlin")
EVENTS = {"page": [f"/p{i}" for i in range(8)], "api": [f"/api/v1/r{i}" for i in range(5)], "file": ["/a.css", "/b.js"]}
KEEP = {"keep_base_days": 1, "keep_days": 7, "keep_event_months": 3, "keep_months": 12}
N_EVENTS = sum(len(v) for v in EVENTS.values())


class Model:
    """What the test recorded, aggregated independently of the library."""

    def __init__(self, go_live: date) -> None:
        self.go_live = go_live
        self.counts: dict[tuple[date, str, str], int] = defaultdict(int)  # (day, category, event)
        self.distinct: dict[tuple[date, str], int] = {}  # (day, "user"/"visitor")

    def day_table(self, today: date) -> set[tuple[date, str, str, str, float]]:
        first = today - timedelta(days=KEEP["keep_days"])
        rows = {(d, c, e, "count", float(n)) for (d, c, e), n in self.counts.items() if d >= first}
        rows |= {(d, "seen", k, "distinct", float(n)) for (d, k), n in self.distinct.items() if d >= first}
        return rows

    def month_table(self, today: date) -> set[tuple[date, str, str, str, float]]:
        month = today.replace(day=1)
        event_cut = add_months(month, -KEEP["keep_event_months"])
        purge_cut = add_months(month, -KEEP["keep_months"])
        sums: dict[tuple[date, str, str, str], float] = defaultdict(float)
        for (d, c, e), n in self.counts.items():
            m = d.replace(day=1)
            if m >= purge_cut:
                sums[(m, c, "<all>", "total") if m < event_cut else (m, c, e, "count")] += n
        seen: dict[tuple[date, str], int] = defaultdict(int)
        for (d, k), n in self.distinct.items():
            if d.replace(day=1) >= purge_cut and d < today:
                seen[(d.replace(day=1), k)] += n
        for (m, k), total in seen.items():
            last = min(add_months(m, 1), today) - timedelta(days=1)
            live = (last - max(m, self.go_live)).days + 1
            sums[(m, "seen", k, "average")] = total / live
        return {(m, c, e, kind, v) for (m, c, e, kind), v in sums.items()}


def flatten(table: UsageTable) -> set[tuple[date, str, str, str, float]]:
    return {(p.start.date(), r.category, r.event, r.kind, float(r.value)) for p in table.periods for r in p.rows}


def approx_equal(got: set[tuple[date, str, str, str, float]], want: set[tuple[date, str, str, str, float]]) -> None:
    got_map = {k[:4]: k[4] for k in got}
    want_map = {k[:4]: k[4] for k in want}
    assert got_map.keys() == want_map.keys()
    for key, value in want_map.items():
        assert got_map[key] == pytest.approx(value), key


async def level_rows(db: asyncpg.Connection, schema: str) -> dict[str, int]:
    found = {f"level{r[0]}": r[1] for r in await db.fetch(f'SELECT level, count(*) FROM "{schema}".counts GROUP BY 1')}
    found["distinct"] = await db.fetchval(f'SELECT count(*) FROM "{schema}".distinct_counts')
    found["keys"] = await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys')
    found["salts"] = await db.fetchval(f'SELECT count(*) FROM "{schema}".salts')
    return found


def record_day(stats: UsageStats, clock: FakeClock, model: Model, day: date, rng: random.Random) -> None:
    users: set[str] = set()
    networks: set[str] = set()
    for hour in sorted(rng.sample(range(24), 4)):
        clock.set(datetime(day.year, day.month, day.day, hour, rng.randrange(60), tzinfo=ZONE))
        for category, events in EVENTS.items():
            for event in rng.sample(events, rng.randint(1, len(events))):
                n = rng.randint(1, 20)
                stats.add(event, category, n)
                model.counts[(day, category, event)] += n
        for _ in range(rng.randint(0, 6)):
            user = f"user-{rng.randrange(30)}"
            stats.seen_user(user)
            users.add(user)
            net = rng.randrange(40)
            stats.seen_visitor(f"10.{net}.0.{rng.randrange(1, 255)}")
            networks.add(f"10.{net}.0.0")
    if users:
        model.distinct[(day, "user")] = len(users)
        model.distinct[(day, "visitor")] = len(networks)


@pytest.mark.slow
async def test_fifteen_months_of_service(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    rng = random.Random(20260101)
    first = date(2025, 1, 1)
    clock.set(datetime(2025, 1, 1, 0, 5, tzinfo=ZONE))
    model = Model(first)
    maintenance_seconds = 0.0
    peak: dict[str, int] = defaultdict(int)
    async with make_stats(timezone="Europe/Berlin", **KEEP) as stats:
        day = first
        end = add_months(first, 15)
        while day < end:
            record_day(stats, clock, model, day, rng)
            await stats.flush()
            today = day + timedelta(days=1)
            clock.set(stats.calendar.day_start(today) + stats.grace + timedelta(seconds=1))
            began = time.perf_counter()
            processed = await stats.maintain()
            maintenance_seconds += time.perf_counter() - began
            assert processed == [day]

            stored = await level_rows(db, schema)
            for key, n in stored.items():
                peak[key] = max(peak[key], n)
            assert stored.get("level1", 0) <= (KEEP["keep_base_days"] + 1) * 24 * N_EVENTS
            assert stored.get("level2", 0) <= (KEEP["keep_days"] + 1) * N_EVENTS
            assert stored.get("level3", 0) <= (KEEP["keep_event_months"] + 1) * N_EVENTS
            assert stored.get("level4", 0) <= (KEEP["keep_months"] - KEEP["keep_event_months"]) * len(EVENTS)
            assert stored["distinct"] <= (KEEP["keep_days"] + 1 + KEEP["keep_months"] + 1) * 2
            assert stored["keys"] == 0
            assert stored["salts"] == 0

            if today.weekday() == 0 or today.day == 1 or today >= end:
                approx_equal(flatten(await stats.table("day")), model.day_table(today))
                approx_equal(flatten(await stats.table("month")), model.month_table(today))
            day = today

        # The whole history that is kept: per-category totals over every month in the month table.
        month = await stats.table("month")
        for category in EVENTS:
            kept_from = add_months(day.replace(day=1), -KEEP["keep_months"])
            want = sum(n for (d, c, _), n in model.counts.items() if c == category and d >= kept_from)
            assert sum(r.value for p in month.periods for r in p.rows if r.category == category) == want
    days = (end - first).days
    print(  # the figures quoted in the README and the issue note (pytest -s shows them)
        f"\nsimulation: {days} days, maintenance {maintenance_seconds:.2f} s in all, "
        f"{1000 * maintenance_seconds / days:.1f} ms per day; peak rows {dict(peak)}; final rows {stored}"
    )
