"""Benchmark 6: reading tables, before and after, side by side in one run.

Big data (as the issue measured it): `table("day")` over 90 days x 5,000 events (450,000 day rows)
and `table("month")` over 24 months x 5,000 events (120,000 month rows, plus the 450,000 day rows,
whose month sums are built as day-end maintenance keeps them, `usage_stats/db/day_sums.py`), each
against `SELECT count(*)` over its own rows.

A realistic service: 200 routes in 4 categories (50 each), the status classes, 300 visitors and 40
users a day, with the default retention (48 base hours, 8 days, 24 months): `table("day")`,
`table("month")`, and the dashboard's daily and monthly pages (through its ASGI app in process)
against the `table()` call behind them.

The package before this work (`baseline.load()`, as `usage_stats_before`) reads a copy of the same
rows in a schema of its own. Everything runs on the server of `USAGE_STATS_TEST_DSN` (else
`USAGE_STATS_DSN`, else the embedded one), in schemas that are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import asyncpg
import httpx

from usage_stats import UsageConfig, UsageStats
from usage_stats.db import day_sums

from . import baseline, common
from .common import Clock, timed
from .report import Section

_HOUR = timedelta(hours=1)


def _open(package: ModuleType, dsn: str, schema: str, clock: Clock) -> Any:
    config = package.UsageConfig(dsn=dsn, schema=schema, flush_interval=timedelta(hours=1))
    return package.UsageStats(config, clock=clock)


async def _copy(conn: asyncpg.Connection, source: str, target: str, tables: tuple[str, ...]) -> None:
    for table in tables:
        await conn.execute(f'INSERT INTO "{target}".{table} SELECT * FROM "{source}".{table}')
    await conn.execute(
        f'UPDATE "{target}".state SET maintained_through = (SELECT maintained_through FROM "{source}".state)'
    )
    await conn.execute(f'VACUUM ANALYZE "{target}".counts, "{target}".distinct_counts')


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


class Rounds:
    """Timings of several measurements taken in interleaved rounds; medians."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    async def time(self, name: str, fn: Callable[[], Awaitable[object]]) -> None:
        self.times.setdefault(name, []).append(await timed(fn))

    def __getitem__(self, name: str) -> float:
        return statistics.median(self.times[name])

    def __contains__(self, name: str) -> bool:
        return name in self.times


# -- big data ----------------------------------------------------------------------------------------


async def big_bench(dsn: str, quick: bool) -> Section:
    events, rounds = (1_000, 5) if quick else (5_000, 7)
    section = Section(
        "6. Tables",
        f"table('month') over 24 months x {events:,} events ({24 * events:,} month rows, plus {90 * events:,} "
        "day rows not rolled up yet, whose month sums day-end maintenance keeps in `day_sums`: the "
        f"package before summed them on every read) and table('day') over 90 days x {events:,} events "
        f"({90 * events:,} day rows), against `SELECT count(*)` over the same rows; medians of {rounds} "
        "interleaved rounds. table() includes fetching the rows and building the UsageTable in Python; "
        "'then every row read' adds reading `.rows` of every period (today's package makes its `Row` "
        "objects then). Before: the package at the baseline commit, on a copy of the same rows.",
    )
    before = baseline.load()
    now = Clock(datetime(2026, 12, 15, 12, tzinfo=UTC))
    after_schema, before_schema = "bench_" + uuid.uuid4().hex[:10], "bench_" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(dsn)
    try:
        async with UsageStats(
            UsageConfig(dsn=dsn, schema=after_schema, flush_interval=timedelta(hours=1)), clock=now
        ) as stats:
            s = f'"{after_schema}"'
            await conn.execute(
                f"""INSERT INTO {s}.counts (level, start, category, event, value)
                    SELECT 3, '2025-01-01T00:00Z'::timestamptz + m * interval '1 month', 'page', '/event/' || e,
                           1 + e % 9
                    FROM generate_series(0, 23) m, generate_series(1, $1) e""",
                events,
            )
            await conn.execute(
                f"""INSERT INTO {s}.counts (level, start, category, event, value)
                    SELECT 2, '2026-09-01T00:00Z'::timestamptz + d * interval '1 day', 'page', '/event/' || e,
                           1 + e % 9
                    FROM generate_series(0, 89) d, generate_series(1, $1) e""",
                events,
            )
            async with conn.transaction():  # the month sums of the day rows, as day-end maintenance keeps them
                await day_sums.cover(conn, s, stats.calendar)
            await conn.execute(f"VACUUM ANALYZE {s}.counts")
            await conn.execute(f"VACUUM ANALYZE {s}.day_sums")
            old = None
            if before is not None:
                old = _open(before, dsn, before_schema, now)
                await old.start()
                await _copy(conn, after_schema, before_schema, ("counts",))
            try:
                month_lo, month_hi = datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
                day_lo, day_hi = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
                cases = [
                    ("month", [3], [1, 2, 3, 4], month_lo, month_hi, month_lo, None),
                    ("day", [2], [1, 2], day_lo, day_hi, day_lo, day_hi),
                ]
                timings = Rounds()
                count = (
                    f"SELECT count(*) FROM {s}.counts WHERE level = ANY($1::smallint[]) AND start >= $2 AND start < $3"
                )
                for _ in range(rounds):
                    for period, own, read, lo, hi, start, end in cases:
                        await timings.time(f"{period} count", lambda lv=own, a=lo, b=hi: conn.fetchval(count, lv, a, b))
                        await timings.time(f"{period} read", lambda lv=read, a=lo, b=hi: conn.fetchval(count, lv, a, b))
                        await timings.time(
                            f"{period} after", lambda p=period, a=start, b=end: stats.table(p, start=a, end=b)
                        )

                        async def every_row(p: str = period, a: datetime = start, b: datetime | None = end) -> int:
                            table = await stats.table(p, start=a, end=b)
                            return sum(len(x.rows) for x in table.periods)

                        await timings.time(f"{period} rows", every_row)
                        if old is not None:
                            await timings.time(
                                f"{period} before", lambda p=period, a=start, b=end: old.table(p, start=a, end=b)
                            )
            finally:
                if old is not None:
                    await old.stop()
    finally:
        for schema in (after_schema, before_schema):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    for period, own_rows, read_rows in (
        ("month", 24 * events, 24 * events + 90 * events),
        ("day", 90 * events, 90 * events),
    ):
        base, whole = timings[f"{period} count"], timings[f"{period} read"]
        after, rows = timings[f"{period} after"], timings[f"{period} rows"]
        section.row(f"SELECT count(*) over the {own_rows:,} {period} rows", _ms(base), "1.00")
        if read_rows != own_rows:
            section.row(f"SELECT count(*) over every row table('{period}') stands for ({read_rows:,})", _ms(whole), "")
        target_met = after <= 10 * base
        if f"{period} before" in timings:
            then = timings[f"{period} before"]
            section.row(
                f'before: table("{period}")', _ms(then), f"{then / base:.1f}x count(*)", "≤ 10x", then <= 10 * base
            )
        else:
            then = None
        section.row(f'table("{period}")', _ms(after), f"{after / base:.1f}x count(*)", "≤ 10x", target_met)
        section.row(f'table("{period}"), then every row read', _ms(rows), f"{rows / base:.1f}x count(*)")
        if read_rows != own_rows:
            section.row(
                f'table("{period}") against count(*) over every row it stands for', _ms(after), f"{after / whole:.1f}x"
            )
        section.goal(
            f'table("{period}") over {own_rows:,} {period} rows vs `count(*)` over them',
            "≤ 10x",
            f"{then / base:.1f}x" if then is not None else "",
            f"{after / base:.1f}x",
            target_met,
        )
    return section


# -- a realistic service -----------------------------------------------------------------------------

CATEGORIES = ("page", "api", "file", "admin")
ROUTES = [(CATEGORIES[i % 4], f"/{CATEGORIES[i % 4]}/r{i}/{{item_id}}") for i in range(200)]
_NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
_GO_LIVE = datetime(2024, 1, 15, 9, tzinfo=UTC)
_MONTHS = "SELECT generate_series('2024-03-01T00:00Z'::timestamptz, '2026-02-01T00:00Z', interval '1 month') AS m"


async def _old_months(conn: asyncpg.Connection, schema: str) -> None:
    """The rows maintenance leaves of March 2024 to February 2026 on 1 March 2026 (default retention):
    per-event month rows of the three months before this one, a total per category of the older ones,
    and each month's sum of daily distinct counts."""
    s = f'"{schema}"'
    await conn.execute(
        f"""INSERT INTO {s}.counts (level, start, category, event, value)
            SELECT 3, m.m, r.category, r.event, 200 + (r.i * 37) % 900
            FROM ({_MONTHS}) AS m, unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(category, event, i)
            WHERE m.m >= '2025-12-01T00:00Z'
            UNION ALL
            SELECT 3, m.m, 'status', s, 5000 FROM ({_MONTHS}) AS m, unnest('{{2xx,3xx,4xx,5xx}}'::text[]) AS s
            WHERE m.m >= '2025-12-01T00:00Z'
            UNION ALL
            SELECT 4, m.m, c, '<all>', 40000 FROM ({_MONTHS}) AS m,
                   unnest('{{page,api,file,admin,status}}'::text[]) AS c
            WHERE m.m < '2025-12-01T00:00Z'""",
        [c for c, _ in ROUTES],
        [e for _, e in ROUTES],
    )
    await conn.execute(
        f"""INSERT INTO {s}.distinct_counts (level, start, category, value)
            SELECT 3, m.m, c, CASE c WHEN 'user' THEN 40 ELSE 300 END * 30 FROM ({_MONTHS}) AS m,
                   unnest('{{user,visitor}}'::text[]) AS c"""
    )
    await conn.execute(f"UPDATE {s}.state SET maintained_through = '2026-02-28'")


async def _traffic(stats: UsageStats, clock: Clock) -> None:
    """Every hour from 1 March 2026 to now: each route's counts, status classes, visitors and users,
    one flush, and maintenance when a day is due."""
    hour = 0
    while clock.at < _NOW:
        for i, (category, event) in enumerate(ROUTES):
            stats.add(event, category, 1 + (i * 7 + hour) % 12)
        stats.add("2xx", "status", 900)
        stats.add("4xx", "status", 20)
        for v in range(13):
            stats.seen_visitor(f"198.51.{(hour * 13 + v) % 300}.9")
        for u in range(2):
            stats.seen_user(f"user-{(hour * 2 + u) % 40}")
        await stats.flush()
        await stats.maintain()
        hour += 1
        clock.at = min(clock.at + _HOUR, _NOW)
    await stats.flush()


async def service_bench(dsn: str, quick: bool) -> Section:
    rounds = 5 if quick else 9
    section = Section(
        "6b. Tables of a realistic service",
        "200 routes in 4 categories (50 each) and the status classes, 300 visitors and 40 users a day, default "
        "retention (48 base hours, 8 days, 24 months; hourly base): month rows of March 2024 to February "
        "2026 as maintenance leaves them (SQL), then every hour of March 2026 up to the 10th through "
        "the public API (add, seen_visitor, seen_user, flush, maintain). table() against `SELECT count(*)` "
        "over the count rows it reads, and the dashboard's daily and monthly pages (GET through its ASGI "
        f"app in process, HTML rendered) against the table() call behind them; medians of {rounds} "
        "interleaved rounds. Before: the package at the baseline commit, on a copy of the same rows.",
    )
    before = baseline.load()
    clock = Clock(_GO_LIVE)
    after_schema, before_schema = "bench_" + uuid.uuid4().hex[:10], "bench_" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(dsn)
    timings = Rounds()
    sizes: dict[str, int] = {}
    try:
        stats = UsageStats(UsageConfig(dsn=dsn, schema=after_schema), clock=clock)
        old = _open(before, dsn, before_schema, clock) if before is not None else None
        async with stats:
            if old is not None:
                await old.start()
            try:
                await _old_months(conn, after_schema)
                clock.at = datetime(2026, 3, 1, tzinfo=UTC)
                await _traffic(stats, clock)
                s = f'"{after_schema}"'
                await conn.execute(f"VACUUM ANALYZE {s}.counts, {s}.distinct_counts, {s}.seen_keys")
                if old is not None:
                    await _copy(conn, after_schema, before_schema, ("counts", "distinct_counts", "seen_keys"))
                count = f"SELECT count(*) FROM {s}.counts WHERE level = ANY($1::smallint[])"
                readers = [("after", stats)] + ([("before", old)] if old is not None else [])
                clients = {
                    name: httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=reader.dashboard(auth=lambda request: True)),
                        base_url="http://bench",
                    )
                    for name, reader in readers
                }
                for period, levels in (("day", [1, 2]), ("month", [1, 2, 3, 4])):
                    sizes[period] = await conn.fetchval(count, levels)
                    table = await stats.table(period)
                    sizes[f"{period} figures"] = sum(len(p.rows) for p in table.periods)
                    page = await clients["after"].get(f"/{period}")
                    assert page.status_code == 200, page.text[:300]
                    assert "/page/r0/{item_id}" in page.text
                for _ in range(rounds):
                    for period, levels in (("day", [1, 2]), ("month", [1, 2, 3, 4])):
                        await timings.time(f"{period} count", lambda lv=levels: conn.fetchval(count, lv))
                        for name, reader in readers:
                            await timings.time(f"{period} {name} table", lambda r=reader, p=period: r.table(p))
                            await timings.time(
                                f"{period} {name} page", lambda c=clients[name], p=period: c.get(f"/{p}")
                            )
                for client in clients.values():
                    await client.aclose()
            finally:
                if old is not None:
                    await old.stop()
    finally:
        for schema in (after_schema, before_schema):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    for period in ("day", "month"):
        base = timings[f"{period} count"]
        section.row(
            f"SELECT count(*) over the {sizes[period]:,} count rows table('{period}') reads "
            f"({sizes[f'{period} figures']:,} figures shown)",
            _ms(base),
            "1.00",
        )
        ratios: dict[str, tuple[float, float]] = {}
        for name in ("before", "after"):
            if f"{period} {name} table" not in timings:
                continue
            table, page = timings[f"{period} {name} table"], timings[f"{period} {name} page"]
            ratios[name] = (table / base, page / table)
            label = "before: " if name == "before" else ""
            section.row(
                f'{label}table("{period}")', _ms(table), f"{table / base:.1f}x count(*)", "≤ 10x", table <= 10 * base
            )
            section.row(
                f"{label}dashboard's {'daily' if period == 'day' else 'monthly'} page",
                _ms(page),
                f"{page / table:.1f}x table()",
                "≤ 3x",
                page <= 3 * table,
            )
        then = ratios.get("before")
        now_table, now_page = ratios["after"]
        section.goal(
            f'realistic service: table("{period}") vs `count(*)` over the rows it reads',
            "≤ 10x",
            f"{then[0]:.1f}x" if then else "",
            f"{now_table:.1f}x",
            now_table <= 10,
        )
        section.goal(
            f"realistic service: dashboard's {'daily' if period == 'day' else 'monthly'} page vs its table()",
            "≤ 3x",
            f"{then[1]:.1f}x" if then else "",
            f"{now_page:.1f}x",
            now_page <= 3,
        )
    return section


async def _all(quick: bool) -> list[Section]:
    dsn, server = await common.dsn()
    try:
        return [await big_bench(dsn, quick), await service_bench(dsn, quick)]
    finally:
        del server


def run(quick: bool = False) -> list[Section]:
    return asyncio.run(_all(quick))
