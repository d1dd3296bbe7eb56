"""Benchmarks 5 and 7: maintenance and database load, each against a hand-written baseline on the
same server in the same run (4, the flush, is `flush.py`; 6, the tables, is `tables.py`).

They use the server of `USAGE_STATS_TEST_DSN` (else `USAGE_STATS_DSN`, else the embedded one), each in
a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

from usage_stats import UsageConfig, UsageMiddleware, UsageStats
from usage_stats.db import day_sums, maintenance
from usage_stats.periods import Calendar

from . import common
from .common import Clock, timed
from .report import Section

DAY = date(2026, 3, 10)  # the day the recorded traffic happens on


def _stats(dsn: str, schema: str, at: datetime, **overrides: Any) -> UsageStats:
    config = UsageConfig(dsn=dsn, schema=schema, flush_interval=timedelta(hours=1), **overrides)
    return UsageStats(config, clock=Clock(at))


# -- 5. maintenance --------------------------------------------------------------------------------


async def _populate_day_end(conn: asyncpg.Connection, schema: str, events: int, keys: int) -> None:
    s = f'"{schema}"'
    await conn.execute(f"TRUNCATE {s}.counts, {s}.distinct_counts, {s}.seen_keys, {s}.salts, {s}.day_sums")
    # The day's month is covered by the month sums of day rows, as on every day but a month's first.
    await conn.execute(f"TRUNCATE {s}.day_sums_months")
    await conn.execute(f"INSERT INTO {s}.day_sums_months VALUES ($1)", datetime(DAY.year, DAY.month, 1, tzinfo=UTC))
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    await conn.execute(
        f"""INSERT INTO {s}.counts (level, start, category, event, value)
            SELECT 1, $1::timestamptz + h * interval '1 hour', 'page', '/event/' || e, 1 + (e % 7)
            FROM generate_series(0, 23) h, generate_series(1, $2) e""",
        start,
        events,
    )
    await conn.execute(
        f"""INSERT INTO {s}.seen_keys (day, category, key)
            SELECT $1, CASE WHEN k % 10 = 0 THEN 'user' ELSE 'visitor' END, uuid_send(gen_random_uuid())
            FROM generate_series(1, $2) k""",
        DAY,
        keys,
    )
    await conn.execute(f"UPDATE {s}.state SET maintained_through = $1, day_sums_through = $1", DAY - timedelta(days=1))
    await conn.execute(f"VACUUM ANALYZE {s}.counts, {s}.seen_keys, {s}.day_sums")


async def _populate_month(conn: asyncpg.Connection, schema: str, events: int) -> date:
    """31 days of January at day level; returns the day whose processing rolls them up."""
    s = f'"{schema}"'
    await conn.execute(f"TRUNCATE {s}.counts, {s}.distinct_counts, {s}.seen_keys, {s}.salts")
    await conn.execute(f"TRUNCATE {s}.day_sums, {s}.day_sums_months")
    await conn.execute(
        f"""INSERT INTO {s}.counts (level, start, category, event, value)
            SELECT 2, '2026-01-01T00:00Z'::timestamptz + d * interval '1 day', 'page', '/event/' || e, 1 + (e % 7)
            FROM generate_series(0, 30) d, generate_series(1, $1) e""",
        events,
    )
    async with conn.transaction():  # January's month sums, as maintenance kept them
        await day_sums.cover(conn, s, Calendar(UsageConfig().zone, timedelta(hours=1)))
    process = date(2026, 2, 7)  # its day cut-off (keep_days = 7) is 1 February
    await conn.execute(
        f"UPDATE {s}.state SET maintained_through = $1, day_sums_through = $1", process - timedelta(days=1)
    )
    await conn.execute(f"VACUUM ANALYZE {s}.counts, {s}.day_sums")
    return process


_BASE_DAY_END = (
    """INSERT INTO {s}.distinct_counts (level, start, category, value)
       SELECT 2, $2, category, count(*) FROM {s}.seen_keys WHERE day = $1 GROUP BY category""",
    "DELETE FROM {s}.seen_keys WHERE day = $1",
    """INSERT INTO {s}.counts (level, start, category, event, value)
       SELECT 2, date_trunc('day', start, 'UTC'), category, event, sum(value) FROM {s}.counts
       WHERE level = 1 AND start < $1 GROUP BY 2, 3, 4""",
    "DELETE FROM {s}.counts WHERE level = 1 AND start < $1",
)

_BASE_MONTH = (
    """INSERT INTO {s}.counts (level, start, category, event, value)
       SELECT 3, date_trunc('month', start, 'UTC'), category, event, sum(value) FROM {s}.counts
       WHERE level = 2 AND start < $1 GROUP BY 2, 3, 4""",
    "DELETE FROM {s}.counts WHERE level = 2 AND start < $1",
)


_DAY_END = maintenance.Retention(0, 7, 3, 24)  # base rows of the day closed roll up at once
_MONTH = maintenance.Retention(1, 7, 3, 24)
_MONTH_CUT = datetime(2026, 2, 1, tzinfo=UTC)


async def maintenance_bench(dsn: str, schema: str, quick: bool) -> Section:
    events, keys, rounds = (2_000, 20_000, 1) if quick else (10_000, 100_000, 2)
    section = Section(
        "5. Maintenance",
        f"Day-end: 24 hourly periods x {events:,} events and {keys:,} distinct keys. Month roll-up: 31 days x "
        f"{events:,} events. Each against hand-written `INSERT ... SELECT ... GROUP BY` + `DELETE` in one "
        f"transaction on identical data; median of {rounds}. The library runs its whole day-end (every roll-up "
        "and retention step).",
    )
    calendar = Calendar(UsageConfig().zone, timedelta(hours=1))
    conn = await asyncpg.connect(dsn)
    s = f'"{schema}"'
    try:
        async with _stats(dsn, schema, datetime(2026, 1, 1, tzinfo=UTC)):
            pass  # creates the tables
        day_start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
        next_day = day_start + timedelta(days=1)
        lib_day, base_day, lib_month, base_month = [], [], [], []
        for _ in range(rounds):
            await _populate_day_end(conn, schema, events, keys)

            async def base() -> None:
                args = [(DAY, day_start), (DAY,), (next_day,), (next_day,)]
                async with conn.transaction():
                    for sql, params in zip(_BASE_DAY_END, args, strict=True):
                        await conn.execute(sql.format(s=s), *params)

            base_day.append(await timed(base))
            await _populate_day_end(conn, schema, events, keys)
            lib_day.append(
                await timed(
                    lambda: maintenance.maintain(conn, schema, calendar, _DAY_END, last_ended=DAY, first_day=DAY)
                )
            )
            process = await _populate_month(conn, schema, events)

            async def base_m() -> None:
                async with conn.transaction():
                    for sql in _BASE_MONTH:
                        await conn.execute(sql.format(s=s), _MONTH_CUT)

            base_month.append(await timed(base_m))
            await _populate_month(conn, schema, events)
            lib_month.append(
                await timed(
                    lambda p=process: maintenance.maintain(conn, schema, calendar, _MONTH, last_ended=p, first_day=p)
                )
            )
    finally:
        await conn.close()
    for title, lib, base_t, rows in (
        ("day-end", lib_day, base_day, 24 * events + keys),
        ("month roll-up", lib_month, base_month, 31 * events),
    ):
        lt, bt = statistics.median(lib), statistics.median(base_t)
        section.row(f"{title}: hand-written SQL", f"{bt:.3f} s ({rows / bt:,.0f} rows/s)", "1.00")
        section.row(
            f"{title}: usage_stats maintain()",
            f"{lt:.3f} s ({rows / lt:,.0f} rows/s)",
            f"{lt / bt:.2f}x hand-written",
            "≤ 2x",
            lt <= 2 * bt,
        )
    return section


# -- 7. database load vs traffic -----------------------------------------------------------------


async def load_bench(dsn: str, schema: str, quick: bool) -> Section:
    sizes = (1_000, 10_000, 100_000) if quick else (1_000, 10_000, 100_000, 1_000_000)
    section = Section(
        "7. Database load vs traffic",
        "Requests through UsageMiddleware (around a minimal router with 50 routes, 1,000 client addresses) "
        "between two flushes, spread over two hourly base periods; rows written by the flush. Bound: "
        "50 routes x periods spanned, plus the status classes.",
    )

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    router = Router(routes=[Route(f"/r{i}/items/{{item_id}}", hello) for i in range(50)])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        pass

    t0 = datetime(2026, 3, 10, 11, 30, tzinfo=UTC)
    clock = Clock(t0)
    config = UsageConfig(dsn=dsn, schema=schema, flush_interval=timedelta(hours=1))
    async with UsageStats(config, clock=clock) as stats:
        app = UsageMiddleware(router, stats=stats)
        addresses = [f"198.51.{i % 250}.{i // 250 + 1}" for i in range(1_000)]
        for n in sizes:
            clock.at = t0
            step = timedelta(hours=1) / n
            for i in range(n):
                scope = {
                    "type": "http",
                    "method": "GET",
                    "path": f"/r{i % 50}/items/{i}",
                    "root_path": "",
                    "query_string": b"",
                    "headers": [],
                    "client": (addresses[i % 1_000], 1),
                }
                await app(scope, receive, send)
                if i % 64 == 0:
                    clock.at = t0 + step * i
            pending = stats.pending
            rows = sum(len(c) for c in pending.counts.values())
            periods = len(pending.counts)
            keys = pending.total_keys
            await stats.flush()
            bound = 50 * periods + 5 * periods
            section.row(
                f"{n:,} requests",
                f"{rows} counter rows, {keys} distinct keys written",
                f"{rows / n:.4f} rows/request",
                f"≤ {bound} (50 x {periods} periods + status)",
                rows <= bound,
            )
    return section


async def _all(quick: bool) -> list[Section]:
    dsn, server = await common.dsn()
    sections = []
    try:
        for bench in (maintenance_bench, load_bench):
            schema = "bench_" + uuid.uuid4().hex[:10]
            try:
                sections.append(await bench(dsn, schema, quick))
            finally:
                conn = await asyncpg.connect(dsn)
                try:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                finally:
                    await conn.close()
    finally:
        del server
    return sections


def run(quick: bool = False) -> list[Section]:
    return asyncio.run(_all(quick))
