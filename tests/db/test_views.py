"""Issue 13.5: the SQL views `day_table` and `month_table` equal `UsageStats.table("day")` and
`table("month")`: every row, kind and period, over a simulated month driven by the clock (before and
after roll-ups, today's distinct counts from the stored keys, averages), in a zone with DST and in one
whose midnight repeats; and a role with nothing but SELECT on the views can read them."""

from __future__ import annotations

import itertools
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import anyio.to_thread
import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import UsageStats, UsageTable
from usage_stats.cli import main
from usage_stats.db.calendar_table import calendar_rows, fill_calendar
from usage_stats.periods import Calendar

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
EVENTS = {"page": [f"/p{i}" for i in range(6)], "api": ["/api/a", "/api/b", "/api/c"]}
KEEP = {"keep_base_days": 1, "keep_days": 7, "keep_event_months": 1, "keep_months": 12}

Figure = tuple[datetime, str, str, str, int | float]


def table_figures(table: UsageTable) -> list[Figure]:
    return [(p.start.astimezone(UTC), r.category, r.event, r.kind, r.value) for p in table.periods for r in p.rows]


async def view_figures(conn: asyncpg.Connection, schema: str, view: str, now: datetime, zone: ZoneInfo) -> list[Figure]:
    """The view's rows as the table's figures; checks the local columns on the way."""
    async with conn.transaction():
        await conn.execute("SELECT set_config('usage_stats.now', $1, true)", now.isoformat())
        records = await conn.fetch(f'SELECT * FROM "{schema}".{view}')
    figures: list[Figure] = []
    for r in records:
        start: datetime = r["start"]
        assert start is not None, dict(r)
        local = start.astimezone(zone)
        assert (r["local_date"], r["local_start"]) == (local.date(), local.replace(tzinfo=None)), dict(r)
        value: Decimal = r["value"]
        figures.append(
            (start, r["category"], r["event"], r["kind"], float(value) if r["kind"] == "average" else int(value))
        )
    return figures


async def assert_views_equal_tables(stats: UsageStats, conn: asyncpg.Connection, now: datetime) -> int:
    schema, zone = stats.config.schema, stats.calendar.zone
    compared = 0
    for period in ("day", "month"):
        want = table_figures(await stats.table(period))
        got = await view_figures(conn, schema, f"{period}_table", now, zone)
        assert sorted(got, key=repr) == sorted(want, key=repr), period
        compared += len(want)
    return compared


def record_at(stats: UsageStats, clock: FakeClock, rng: random.Random, at: datetime) -> None:
    clock.set(at)
    for category, events in EVENTS.items():
        for event in rng.sample(events, rng.randint(1, len(events))):
            stats.add(event, category, rng.randint(1, 9))
    for _ in range(rng.randint(0, 4)):
        stats.seen_user(f"user-{rng.randrange(12)}")
        stats.seen_visitor(f"10.{rng.randrange(20)}.0.{rng.randrange(1, 255)}")


@pytest.mark.parametrize("zone_name", ["Europe/Berlin", "Atlantic/Azores", "CET"])
async def test_views_equal_the_tables_over_a_simulated_month(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, zone_name: str
) -> None:
    # 25 Oct 2026: Berlin's day has 25 hours; the Azores' midnight hour happens twice (01:00 -> 00:00).
    zone = ZoneInfo(zone_name)
    rng = random.Random(13_5)
    first = date(2026, 9, 22)
    cal = Calendar(zone, timedelta(hours=1))
    clock.set(cal.day_start(first) + timedelta(minutes=3))
    kinds: set[str] = set()
    compared = 0
    async with make_stats(timezone=zone_name, **KEEP) as stats:
        day = first
        while day < date(2026, 11, 4):
            start, end = cal.day_start(day), cal.day_start(day + timedelta(days=1))
            length = (end - start).total_seconds()
            moments = sorted(start + timedelta(seconds=rng.uniform(0, length)) for _ in range(3))
            if day == date(2026, 10, 25):  # both of the repeated midnight hours, and the extra hour
                moments = sorted([*moments, start + timedelta(minutes=10), start + timedelta(minutes=70)])
            for at in moments:
                record_at(stats, clock, rng, at)
            await stats.flush()
            compared += await assert_views_equal_tables(stats, db, clock.now)  # today's keys, rows not rolled up
            # Just after midnight: yesterday's keys are not closed yet and count in the average from the keys.
            clock.set(end + timedelta(minutes=1))
            compared += await assert_views_equal_tables(stats, db, clock.now)
            clock.set(end + stats.grace + timedelta(seconds=1))
            assert await stats.maintain() == [day]
            compared += await assert_views_equal_tables(stats, db, clock.now)
            for period in ("day", "month"):
                kinds |= {r.kind for p in (await stats.table(period)).periods for r in p.rows}
            day += timedelta(days=1)
        levels = {r[0] for r in await db.fetch(f'SELECT DISTINCT level FROM "{schema}".counts')}
        # The cost of one read of both tables, through table() and through the views (pytest -s shows it).
        began = time.perf_counter()
        for _ in range(5):
            await stats.table("day")
            await stats.table("month")
        python_side = time.perf_counter() - began
        began = time.perf_counter()
        for _ in range(5):
            await view_figures(db, schema, "day_table", clock.now, zone)
            await view_figures(db, schema, "month_table", clock.now, zone)
        views_side = time.perf_counter() - began
        print(
            f"\nviews {zone_name}: day+month via table() {python_side / 5 * 1000:.1f} ms,"
            f" via views {views_side / 5 * 1000:.1f} ms"
        )
    assert kinds == {"count", "total", "distinct", "average"}
    assert levels == {1, 2, 3, 4}  # every level was stored and merged into the views at the end
    assert compared > 3000


async def test_the_calendar_matches_python_where_postgresql_does_not(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    # The day start of 25 Oct 2026 in the Azores is the first of its two midnights; PostgreSQL's
    # date_trunc picks the later one. The calendar holds Python's.
    zone = ZoneInfo("Atlantic/Azores")
    clock.set(datetime(2026, 10, 25, 12, tzinfo=zone))
    async with make_stats(timezone="Atlantic/Azores"):
        pass
    start = await db.fetchval(
        f"""SELECT start FROM "{schema}".calendar WHERE period = 'day' AND local_date = '2026-10-25'"""
    )
    assert start == datetime(2026, 10, 25, 0, tzinfo=UTC)  # the first 00:00 (UTC+0), before the clocks go back
    assert start.timestamp() == Calendar(zone, timedelta(hours=1)).day_start(date(2026, 10, 25)).timestamp()
    pg = await db.fetchval("SELECT date_trunc('day', '2026-10-25 12:00+00'::timestamptz, 'Atlantic/Azores')")
    assert pg != start  # what the views must not use
    months = await db.fetch(f"""SELECT local_date FROM "{schema}".calendar WHERE period = 'month' ORDER BY 1""")
    assert months[0][0] == date(2026, 9, 1)
    assert months[-1][0] == date(2027, 1, 1)


def test_calendar_rows_are_contiguous() -> None:
    cal = Calendar(ZoneInfo("Atlantic/Azores"), timedelta(hours=1))
    rows = calendar_rows(cal, date(2026, 10, 1), date(2026, 12, 1))
    days = [r for r in rows if r[0] == "day"]
    assert len(days) == 61
    assert len([r for r in rows if r[0] == "month"]) == 2
    assert all(a[2] == b[1] for a, b in itertools.pairwise(days))  # each day ends where the next starts
    assert days[24][3] == date(2026, 10, 25)
    assert days[24][2].timestamp() - days[24][1].timestamp() == 25 * 3600


def documented_grants(schema: str, role: str) -> list[str]:
    """The SQL block of the read-only role section of docs/sql.md, for `schema` and `role`."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A read-only role") :]
    block = section[section.index("```sql") + len("```sql") : section.index("```", section.index("```sql") + 6)]
    block = re.sub(r"\busage\b", f'"{schema}"', block)
    block = re.sub(r"\bgrafana\b", f'"{role}"', block)
    return [s.strip() for s in block.split(";") if s.strip()]


@pytest.fixture
async def reader_role(pg_dsn: str, schema: str) -> AsyncIterator[str]:
    role = f"stats_grafana_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        yield role
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"')
        await conn.execute(f'DROP ROLE "{role}"')
        await conn.close()


async def test_a_read_only_role_selects_from_the_views(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, pg_dsn: str, reader_role: str
) -> None:
    async with make_stats(timezone="Europe/Berlin") as stats:
        stats.add("/p", "page", 5)
        stats.seen_user("ann")
        await stats.flush()
        day = table_figures(await stats.table("day"))
        month = table_figures(await stats.table("month"))
    for statement in documented_grants(schema, reader_role):
        await db.execute(statement)
    parts = urlsplit(pg_dsn)
    dsn = urlunsplit(parts._replace(netloc=f"{quote(reader_role)}@{parts.netloc.rsplit('@', 1)[-1]}"))
    grafana = await asyncpg.connect(dsn)
    try:
        zone = ZoneInfo("Europe/Berlin")
        for view, want in (("day_table", day), ("month_table", month)):
            got = await view_figures(grafana, schema, view, clock.now, zone)
            assert want, view
            assert sorted(got, key=repr) == sorted(want, key=repr), view
        for table in ("counts", "seen_keys", "marks", "calendar"):  # the tables themselves stay closed
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await grafana.fetch(f'SELECT * FROM "{schema}".{table}')
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await grafana.execute(f'DELETE FROM "{schema}".calendar')
    finally:
        await grafana.close()


async def test_migrate_fills_the_calendar_and_a_role_that_may_not_write_it_is_only_warned(
    pg_dsn: str, schema: str, db: asyncpg.Connection, reader_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    status = await anyio.to_thread.run_sync(lambda: main(["migrate", "--dsn", pg_dsn, "--schema", schema]))
    assert status == 0
    today = datetime.now(UTC).date()  # the default zone, recorded by migrate
    covered = await db.fetchval(
        f"""SELECT count(*) FROM "{schema}".calendar WHERE period = 'day' AND local_date BETWEEN $1 AND $2""",
        today - timedelta(days=28),
        today + timedelta(days=62),
    )
    assert covered == 91
    # A day far ahead is missing; a role that may read but not write the calendar is warned, nothing raised.
    await db.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{reader_role}"')
    await db.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{reader_role}"')
    parts = urlsplit(pg_dsn)
    conn = await asyncpg.connect(
        urlunsplit(parts._replace(netloc=f"{quote(reader_role)}@{parts.netloc.rsplit('@', 1)[-1]}"))
    )
    try:
        cal = Calendar(ZoneInfo("UTC"), timedelta(hours=1))
        assert await fill_calendar(conn, schema, cal, today + timedelta(days=400)) == 0
    finally:
        await conn.close()
    assert "cannot extend the calendar" in caplog.text
    assert await fill_calendar(db, schema, cal, today + timedelta(days=400)) > 0  # the owner can
