"""Benchmark 4: one flush, against two floors, before and after; and what a flush does to the
requests served beside it.

- Speed: one flush of N distinct counter keys and N distinct visitor keys (hashed scheme) by
  `usage_stats` and by `usage_stats_before` (the package at `baseline.BASELINE`, in a schema of its
  own), against (a) a bare binary `COPY` of the same number of rows into unlogged tables without
  indexes and (b) a `COPY` into logged tables with the same primary keys as ours (what any keyed
  store must pay). Rounds interleaved, medians.
- Stalls: a task that sleeps 1 ms in a loop measures its own lateness while a flush runs; the
  longest single delay is the longest time the event loop was held, for flushes of several sizes.
- Requests: an in-process Starlette app with `UsageMiddleware`, called at a steady rate; the p99 of
  each request's latency (from the moment it was due, so a held loop counts) over a window with
  flushes of N + N keys, and over the same window without them.

They use the server of `USAGE_STATS_TEST_DSN` (else `USAGE_STATS_DSN`, else the embedded one), each
in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from types import ModuleType
from typing import Any

import asyncpg
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

import usage_stats

from . import baseline, common
from .common import Clock, timed
from .report import Section

AT = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
DAY = date(2026, 3, 10)


def _stats(package: ModuleType, dsn: str, schema: str, n: int) -> Any:
    config = package.UsageConfig(
        dsn=dsn, schema=schema, flush_interval=timedelta(hours=1), max_keys_per_period=max(40 * n, 10_000)
    )
    return package.UsageStats(config, clock=Clock(AT))


def _record(stats: Any, n: int, tag: int, lo: int = 0) -> None:
    """Counter keys lo..n-1 and as many visitors (distinct networks), new for each `tag`."""
    for i in range(lo, n):
        stats.count(f"/event/{tag}/{i}", "page")
    for i in range(lo, n):
        j = tag * n + i
        stats.seen_visitor(f"{j // 65536 % 200 + 10}.{j // 256 % 256}.{j % 256}.7")


async def _recorded(stats: Any, n: int, tag: int) -> None:
    """`_record` 500 at a time, 5 ms apart, as the traffic of other requests would bring them."""
    for lo in range(0, n, 500):
        _record(stats, min(n, lo + 500), tag, lo)
        await asyncio.sleep(0.005)


class Ticker:
    """A task that sleeps 1 ms in a loop and keeps each delay it saw beyond that, with when it was."""

    def __init__(self) -> None:
        self.delays: list[tuple[float, float, float]] = []  # (from, to, delay)
        self._task: asyncio.Task[None] | None = None

    @property
    def worst(self) -> float:
        return max((d for _, _, d in self.delays), default=0.0)

    def worst_outside(self, spans: list[tuple[float, float]]) -> float:
        """The longest delay that overlaps none of `spans`."""
        return max((d for a, b, d in self.delays if all(b < lo or a > hi for lo, hi in spans)), default=0.0)

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.delays.append((t, now, now - t - 0.001))

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.005)
        self.delays.clear()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# -- speed -----------------------------------------------------------------------------------------


async def _floors(conn: asyncpg.Connection, schema: str, n: int) -> tuple[float, float]:
    """(bare COPY seconds, keyed COPY seconds) for n count rows and n key rows."""
    s = f'"{schema}"'
    counts = [(1, AT, "page", f"/event/{i}", 1) for i in range(n)]
    keys = [(DAY, "visitor", uuid.uuid4().bytes) for _ in range(n)]
    times = []
    for count_table, key_table in (("bare_counts", "bare_keys"), ("keyed_counts", "keyed_keys")):
        await conn.execute(f"TRUNCATE {s}.{count_table}, {s}.{key_table}")

        async def copy(ct: str = count_table, kt: str = key_table) -> None:
            async with conn.transaction():
                await conn.copy_records_to_table(ct, records=counts, schema_name=schema)
                await conn.copy_records_to_table(kt, records=keys, schema_name=schema)

        times.append(await timed(copy))
    return times[0], times[1]


async def _flush_time(
    conn: asyncpg.Connection,
    stats: Any,
    schema: str,
    n: int,
    tag: int,
    *,
    empty: bool = True,
    ticker: Ticker | None = None,
) -> tuple[float, float]:
    """(seconds, longest stall) of one flush of n + n keys (new ones: into emptied tables)."""
    if empty:
        await conn.execute(f'TRUNCATE "{schema}".counts, "{schema}".seen_keys')
    _record(stats, n, tag)
    async with ticker or Ticker() as ticking:
        seconds = await timed(stats.flush)
    return seconds, ticking.worst


async def speed(dsn: str, schemas: tuple[str, str], n: int, rounds: int, section: Section) -> None:
    before = baseline.load()
    conn = await asyncpg.connect(dsn)
    s = f'"{schemas[0]}"'
    try:
        async with _stats(usage_stats, dsn, schemas[0], n) as after_stats:
            before_cm = _stats(before, dsn, schemas[1], n) if before is not None else None
            before_stats = await before_cm.__aenter__() if before_cm is not None else None
            try:
                await conn.execute(
                    f"""CREATE UNLOGGED TABLE {s}.bare_counts
                            (level smallint, start timestamptz, category text, event text, value bigint);
                        CREATE UNLOGGED TABLE {s}.bare_keys (day date, category text, key bytea);
                        CREATE TABLE {s}.keyed_counts (LIKE {s}.counts INCLUDING ALL);
                        CREATE TABLE {s}.keyed_keys (LIKE {s}.seen_keys INCLUDING ALL)"""
                )
                await _flush_time(conn, after_stats, schemas[0], 1_000, 999)  # the day's salt, the catalog warm
                if before_stats is not None:
                    await _flush_time(conn, before_stats, schemas[1], 1_000, 999)
                bare, keyed, after, before_t, again, again_before = [], [], [], [], [], []
                for r in range(rounds):
                    b, k = await _floors(conn, schemas[0], n)
                    bare.append(b)
                    keyed.append(k)
                    after.append((await _flush_time(conn, after_stats, schemas[0], n, r))[0])
                    again.append((await _flush_time(conn, after_stats, schemas[0], n, r, empty=False))[0])
                    if before_stats is not None:
                        before_t.append((await _flush_time(conn, before_stats, schemas[1], n, r))[0])
                        again_before.append((await _flush_time(conn, before_stats, schemas[1], n, r, empty=False))[0])
            finally:
                if before_cm is not None:
                    await before_cm.__aexit__(None, None, None)
    finally:
        await conn.close()
    rows = 2 * n
    b, k, a = statistics.median(bare), statistics.median(keyed), statistics.median(after)
    section.row("bare COPY (unlogged, no index)", f"{b:.3f} s ({rows / b:,.0f} rows/s)", "1.00")
    section.row("keyed COPY (logged, our primary keys)", f"{k:.3f} s ({rows / k:,.0f} rows/s)", f"{k / b:.2f}x bare")
    section.row(
        "usage_stats flush()",
        f"{a:.3f} s ({rows / a:,.0f} rows/s)",
        f"{a / k:.2f}x keyed COPY, {a / b:.2f}x bare",
        "≤ 2x keyed",
        a <= 2 * k,
    )
    before_ratio = ""
    if before_t:
        bt = statistics.median(before_t)
        before_ratio = f"{bt / k:.2f}x keyed ({bt / b:.1f}x bare)"
        section.row(
            "usage_stats_before flush()",
            f"{bt:.3f} s ({rows / bt:,.0f} rows/s)",
            f"{bt / k:.2f}x keyed COPY, {bt / b:.2f}x bare",
        )
    if again_before:
        a2, b2 = statistics.median(again), statistics.median(again_before)
        section.row(
            "the same keys flushed again (every row stored already): usage_stats / usage_stats_before",
            f"{a2:.3f} s / {b2:.3f} s",
            f"{a2 / b2:.2f}x before",
        )
    section.goal(
        f"flush of {n:,} + {n:,} keys vs COPY into keyed tables (bare COPY ratio in brackets)",
        "≤ 2x keyed",
        before_ratio,
        f"{a / k:.2f}x keyed ({a / b:.1f}x bare)",
        a <= 2 * k,
    )


async def small(dsn: str, schemas: tuple[str, str], flushes: int, section: Section) -> None:
    """`flushes` small flushes (100 count rows and 100 visitors each), before and after, alternating."""
    before = baseline.load()
    if before is None:
        return
    times: dict[str, list[float]] = {}
    async with _stats(usage_stats, dsn, schemas[0], 1_000) as after_stats, _stats(before, dsn, schemas[1], 1_000) as b:
        for r in range(flushes):
            for name, stats in (("after", after_stats), ("before", b)):
                for i in range(100):
                    stats.count(f"/small/{i}", "page")
                    stats.seen_visitor(f"172.{16 + r // 256 % 16}.{r % 256}.{i}")
                times.setdefault(name, []).append(await timed(stats.flush))
    a, bt = statistics.median(times["after"]), statistics.median(times["before"])
    section.row(
        f"small flush (100 count rows + 100 visitors), median of {flushes}: usage_stats / usage_stats_before",
        f"{a * 1e3:.2f} ms / {bt * 1e3:.2f} ms",
        f"{a / bt:.2f}x before",
    )


# -- stalls ----------------------------------------------------------------------------------------


class TakeTimer:
    """Times `Recorder.take()` (the recorder's own step at the start of a flush, `recorder.py`)."""

    def __init__(self, package: ModuleType) -> None:
        self.cls = importlib.import_module(f"{package.__name__}.recorder").Recorder
        self.longest = 0.0
        self.spans: list[tuple[float, float]] = []

    def __enter__(self) -> TakeTimer:
        take = self.original = self.cls.take

        def timed(recorder: Any) -> Any:
            t = time.perf_counter()
            try:
                return take(recorder)
            finally:
                self.spans.append((t, time.perf_counter()))
                self.longest = max(self.longest, time.perf_counter() - t)

        self.cls.take = timed
        return self

    def __exit__(self, *exc: object) -> None:
        self.cls.take = self.original


async def stalls(dsn: str, schemas: tuple[str, str], sizes: tuple[int, ...], rounds: int, section: Section) -> None:
    before = baseline.load()
    conn = await asyncpg.connect(dsn)
    worst: dict[tuple[str, int], list[float]] = {}
    takes: dict[tuple[str, int], list[float]] = {}
    own: dict[tuple[str, int], list[float]] = {}  # the longest stall apart from Recorder.take()
    try:
        packages = [("usage_stats", usage_stats, schemas[0])]
        if before is not None:
            packages.append(("usage_stats_before", before, schemas[1]))
        for name, package, schema in packages:
            async with _stats(package, dsn, schema, max(sizes)) as stats:
                await _flush_time(conn, stats, schema, 1_000, 999)
                for r in range(rounds):
                    for n in sizes:
                        ticker = Ticker()
                        with TakeTimer(package) as take:
                            tag = 100 + r * len(sizes) + sizes.index(n)
                            _, stall = await _flush_time(conn, stats, schema, n, tag, ticker=ticker)
                        worst.setdefault((name, n), []).append(stall)
                        takes.setdefault((name, n), []).append(take.longest)
                        own.setdefault((name, n), []).append(ticker.worst_outside(take.spans))
    finally:
        await conn.close()
    for n in sizes:
        after = max(worst[("usage_stats", n)])
        prior = worst.get(("usage_stats_before", n))
        take = max(takes[("usage_stats", n)])
        section.row(
            f"longest stall, flush of {n:,} + {n:,} keys",
            f"{after * 1e3:.1f} ms" + (f" (before: {max(prior) * 1e3:.0f} ms)" if prior else ""),
            f"worst of {rounds}; Recorder.take() alone {take * 1e3:.1f} ms, "
            f"longest stall apart from it {max(own[('usage_stats', n)]) * 1e3:.1f} ms",
            "≤ 20 ms",
            after <= 0.020,
        )
    largest = max(sizes)
    after = max(worst[("usage_stats", largest)])
    prior = worst.get(("usage_stats_before", largest))
    take = max(takes[("usage_stats", largest)])
    section.goal(
        f"longest event-loop stall during a flush of {largest:,} + {largest:,} keys (1 ms ticker; Recorder.take() "
        f"alone: {take * 1e3:.0f} ms; longest apart from it: {max(own[('usage_stats', largest)]) * 1e3:.0f} ms)",
        "≤ 20 ms",
        f"{max(prior) * 1e3:.0f} ms" if prior else "",
        f"{after * 1e3:.1f} ms",
        after <= 0.020,
    )


# -- rows the database refuses ---------------------------------------------------------------------


async def refusals(dsn: str, schema: str, n: int, rounds: int, section: Section) -> None:
    """A flush of n count rows and n keys with 0, 1, 10 or 100 rows that a CHECK constraint refuses:
    the flush is tried again with the refused rows found by halving (`isolate.py`)."""
    conn = await asyncpg.connect(dsn)
    times: dict[int, list[float]] = {}
    try:
        async with _stats(usage_stats, dsn, schema, n) as stats:
            await conn.execute(f"ALTER TABLE \"{schema}\".counts ADD CONSTRAINT refuse CHECK (event NOT LIKE 'bad%')")
            try:
                for r in range(rounds):
                    for bad in (0, 1, 10, 100):
                        await conn.execute(f'TRUNCATE "{schema}".counts, "{schema}".seen_keys')
                        _record(stats, n, 300 + r * 4 + bad % 7)
                        for i in range(bad):
                            stats.count(f"bad{i}", "page")
                        times.setdefault(bad, []).append(await timed(stats.flush))
            finally:
                await conn.execute(f'ALTER TABLE "{schema}".counts DROP CONSTRAINT refuse')
    finally:
        await conn.close()
    clean = statistics.median(times[0])
    for bad in (1, 10, 100):
        t = statistics.median(times[bad])
        section.row(
            f"flush of {n:,} + {n:,} keys with {bad} refused count row(s), vs none refused",
            f"{t:.3f} s / {clean:.3f} s",
            f"{t / clean:.1f}x",
        )


# -- requests beside flushes -----------------------------------------------------------------------


async def _hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _latencies(app: Any, rate: float, seconds: float) -> list[float]:
    """Call `app` `rate` times a second for `seconds`; each latency counted from when it was due."""
    done: list[float] = []
    interval = 1 / rate

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        pass

    async def one(i: int, due: float) -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": f"/items/{i}",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": (f"203.0.{i % 200}.9", 1),
        }
        await app(scope, receive, send)
        done.append(time.perf_counter() - due)

    tasks = []
    t0 = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = t0 + i * interval
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return done


async def _window(package: ModuleType, dsn: str, schema: str, n: int, flushes: bool, seconds: float) -> list[float]:
    """p99 latency of steady requests while traffic records n + n new keys over and over, flushed
    as soon as they are in (`flushes`) or thrown away."""
    async with _stats(package, dsn, schema, n) as stats:
        app = package.UsageMiddleware(Router(routes=[Route("/items/{item_id}", _hello)]), stats=stats)
        stop = asyncio.Event()

        async def traffic() -> None:
            tag = 500
            while not stop.is_set():
                tag += 1
                await _recorded(stats, n, tag)
                if flushes:
                    await stats.flush()
                else:  # thrown away, which costs next to nothing
                    stats.recorder.discard()

        task = asyncio.create_task(traffic())
        try:
            latencies = await _latencies(app, 200, seconds)
        finally:
            stop.set()
            await task
    return latencies


def _p99(latencies: list[float]) -> float:
    return sorted(latencies)[int(len(latencies) * 0.99)]


async def requests(dsn: str, schemas: tuple[str, str], n: int, seconds: float, rounds: int, section: Section) -> None:
    before = baseline.load()
    packages = [("usage_stats", usage_stats, schemas[0])]
    if before is not None:
        packages.append(("usage_stats_before", before, schemas[1]))
    p99: dict[tuple[str, bool], list[float]] = {}
    for _ in range(rounds):
        for name, package, schema in packages:
            for flushes in (False, True):
                latencies = await _window(package, dsn, schema, n, flushes, seconds)
                p99.setdefault((name, flushes), []).append(_p99(latencies))
    ratios = {}
    for name, _, _ in packages:
        quiet, busy = statistics.median(p99[(name, False)]), statistics.median(p99[(name, True)])
        ratios[name] = busy / quiet
        section.row(
            f"{name}: p99 request latency, without / with flushes of {n:,} + {n:,} keys",
            f"{quiet * 1e3:.1f} / {busy * 1e3:.1f} ms",
            f"{busy / quiet:.2f}x",
            "≤ 1.10x" if name == "usage_stats" else "",
            busy <= 1.10 * quiet if name == "usage_stats" else None,
        )
    before_ratio = f"{ratios['usage_stats_before']:.2f}x" if "usage_stats_before" in ratios else ""
    section.goal(
        "p99 latency of steady requests (200/s, in process) with flushes vs without",
        "≤ 1.10x",
        before_ratio,
        f"{ratios['usage_stats']:.2f}x",
        ratios["usage_stats"] <= 1.10,
    )


async def _all(quick: bool) -> Section:
    n, rounds = (20_000, 1) if quick else (100_000, 3)
    sizes = (1_000, 10_000, 20_000) if quick else (1_000, 10_000, 100_000)
    section = Section(
        "4. Flush",
        f"One flush of {n:,} distinct counter keys and {n:,} distinct visitor keys (hashed scheme), against a "
        "bare COPY of as many rows into unlogged tables without indexes and a COPY into logged tables with our "
        f"primary keys; `usage_stats_before` is the package at the baseline commit; medians of {rounds}, rounds "
        "interleaved. Stalls: the longest lateness of a task sleeping 1 ms during a flush. Requests: an in-process "
        "Starlette app with UsageMiddleware called 200 times a second for 3 s, p99 latency counted from when each "
        "request was due (median of 5 rounds, windows with and without flushes alternating), while other traffic "
        "records half as many new keys, 500 every 5 ms, and they are flushed, or thrown away.",
    )
    dsn, server = await common.dsn()
    schemas = ("bench_" + uuid.uuid4().hex[:10], "bench_" + uuid.uuid4().hex[:10])
    try:
        await speed(dsn, schemas, n, rounds, section)
        await small(dsn, schemas, 30 if quick else 150, section)
        await stalls(dsn, schemas, sizes, rounds, section)
        await refusals(dsn, schemas[0], 10_000, 1 if quick else 3, section)
        await requests(dsn, schemas, n // 2, 2.0 if quick else 3.0, 1 if quick else 5, section)
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        del server
    return section


def run(quick: bool = False) -> Section:
    return asyncio.run(_all(quick))
