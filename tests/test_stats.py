"""`UsageStats` against PostgreSQL: flush semantics, lifecycle, threads, marks, and the clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import anyio.lowlevel
import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import FakeClock, StatsFactory
from usage_stats import ConfigError, StoreUnavailableError, UsageConfig, UsageMiddleware, UsageStats, UsageStatsError


async def stored(db: asyncpg.Connection, schema: str) -> dict[tuple[str, str], int]:
    rows = await db.fetch(f'SELECT category, event, sum(value)::bigint AS n FROM "{schema}".counts GROUP BY 1, 2')
    return {(r["category"], r["event"]): r["n"] for r in rows}


async def test_counts_are_exact_after_many_flushes(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str
) -> None:
    expected = 0
    async with make_stats() as stats:
        for i in range(60):
            for _ in range(i % 7):
                stats.count("/a", "page")
                expected += 1
            stats.add("bytes", "io", i)
            if i % 10 == 0:
                clock.advance(minutes=25)  # some flushes span several periods
            await stats.flush()
    assert await stored(db, schema) == {("page", "/a"): expected, ("io", "bytes"): sum(range(60))}


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_before_flush_counts_land_in_the_same_flush(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, style: str
) -> None:
    calls: list[int] = []

    def sync_hook(stats: UsageStats) -> None:
        calls.append(1)
        stats.add("hits", "cache", 10)

    async def async_hook(stats: UsageStats) -> None:
        await anyio.lowlevel.checkpoint()
        calls.append(1)
        stats.add("hits", "cache", 10)

    async with make_stats(before_flush=sync_hook if style == "sync" else async_hook) as stats:
        stats.count("/", "page")
        await stats.flush()
        assert await stored(db, schema) == {("page", "/"): 1, ("cache", "hits"): 10}
        await stats.flush()  # nothing else pending: the hook still runs and its count is saved
        assert await stored(db, schema) == {("page", "/"): 1, ("cache", "hits"): 20}
    # ...and once more for the final flush at shutdown
    assert len(calls) == 3
    assert await stored(db, schema) == {("page", "/"): 1, ("cache", "hits"): 30}


async def test_a_failing_before_flush_does_not_stop_the_flush(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(stats: UsageStats) -> None:
        raise RuntimeError("cache unavailable")

    async with make_stats(before_flush=hook) as stats:
        stats.count("/", "page")
        with caplog.at_level(logging.ERROR, logger="usage_stats"):
            await stats.flush()
        assert await stored(db, schema) == {("page", "/"): 1}
    assert "before_flush" in caplog.text


async def test_counts_recorded_during_a_flush_are_not_lost(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        stats.count("/", "page")
        stats.seen_user("u1")
        await stats.flush()  # creates the rows, so the next flush updates them
        stats.count("/", "page")
        lock = db.transaction()
        await lock.start()
        await db.execute(f'LOCK TABLE "{schema}".counts IN ACCESS EXCLUSIVE MODE')
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stats.flush)  # blocks on the lock, holding what it took
                for _ in range(50):
                    await anyio.sleep(0.002)
                    stats.count("/", "page")
                    stats.seen_user("u2")
                assert stats.pending.total_counts == 50  # the flush in progress took only the first one
                await lock.commit()  # the flush goes on
        assert stats.pending.total_counts == 50
        await stats.flush()
        assert await stored(db, schema) == {("page", "/"): 52}
        table = await stats.table("day")
    assert table.periods[0].get("seen", "user", "distinct").value == 2  # type: ignore[union-attr]


async def test_final_flush_at_shutdown_writes_everything(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        for i in range(100):
            stats.count(f"/p{i % 5}", "page")
        stats.seen_visitor("192.0.2.1")
        await anyio.lowlevel.checkpoint()
    assert await stored(db, schema) == {("page", f"/p{i}"): 20 for i in range(5)}
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 1


async def test_a_failed_flush_keeps_the_counts(make_stats: StatsFactory, db: asyncpg.Connection, schema: str) -> None:
    async with make_stats() as stats:
        stats.count("/", "page")
        await stats.flush()
        stats.add("/", "page", 4)
        stats.seen_user("alice")
        await db.execute(f'ALTER TABLE "{schema}".counts RENAME TO counts_away')  # the store breaks
        with pytest.raises(StoreUnavailableError):
            await stats.flush()
        stats.count("/", "page")  # recorded while the store was down
        assert stats.pending.total_counts == 5
        await db.execute(f'ALTER TABLE "{schema}".counts_away RENAME TO counts')
        await stats.flush()
        assert not stats.pending
        table = await stats.table("day")
    assert await stored(db, schema) == {("page", "/"): 6}
    assert table.periods[0].get("seen", "user", "distinct").value == 1  # type: ignore[union-attr]


async def test_start_against_a_closed_port_counts_in_memory(make_config: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(30):
        # Port 1 on loopback: nothing listens there. Statistics never keep the app down.
        stats = UsageStats(make_config(dsn="postgresql://postgres:s3cr3t-pw@127.0.0.1:1/postgres"))
        await stats.start()
        stats.count("/", "page")
        stats.seen_user("alice")
        for attempt in (stats.flush(), stats.table(), stats.marks(), stats.mark("deploy"), stats.maintain()):
            with pytest.raises(StoreUnavailableError) as info:
                await attempt
            assert "127.0.0.1" in str(info.value)
            assert "s3cr3t-pw" not in str(info.value)
        assert (stats.pending.total_counts, stats.pending.total_keys) == (1, 1)  # kept for the next flush
        with pytest.raises(UsageStatsError):
            await stats.start()
        with caplog.at_level(logging.ERROR, logger="usage_stats"):
            await stats.stop()
    assert "s3cr3t-pw" not in repr(stats) + repr(stats.config) + caplog.text
    assert "shutting down with 1 counts and 1 distinct keys not saved" in caplog.text
    with pytest.raises(UsageStatsError):
        await stats.flush()
    stats.count("/", "page")  # recording never raises, whatever the state


async def test_an_unparsable_dsn_raises_config_error_at_start(make_config: Any) -> None:
    stats = UsageStats(make_config(dsn="postgresql://postgres:s3cr3t-pw@[not-an-address/postgres"))
    with anyio.fail_after(30), pytest.raises(ConfigError) as info:
        await stats.start()
    assert "dsn" in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)
    with pytest.raises(UsageStatsError):
        await stats.flush()


async def test_shutdown_with_the_store_gone_logs_what_was_lost(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    stats = make_stats()
    await stats.start()
    stats.add("/", "page", 7)
    await db.execute(f'ALTER TABLE "{schema}".counts RENAME TO counts_away')
    with caplog.at_level(logging.ERROR, logger="usage_stats"):
        await stats.stop()  # must not raise
    assert "7 counts" in caplog.text


async def test_lifecycle_states(make_stats: StatsFactory) -> None:
    stats = make_stats()
    with pytest.raises(UsageStatsError):
        await stats.flush()
    with pytest.raises(UsageStatsError):
        await stats.table()
    async with stats:
        with pytest.raises(UsageStatsError):
            await stats.start()  # already open
        stats.count("/", "page")
    await stats.stop()  # stopping twice is harmless
    with pytest.raises(UsageStatsError):
        await stats.start()  # reopening a stopped instance raises
    with pytest.raises(UsageStatsError):
        async with stats:
            pass
    with pytest.raises(UsageStatsError):
        await stats.mark("x")


async def test_lifespan_runs_start_and_final_flush(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    stats = make_stats()
    app = FastAPI(lifespan=stats.lifespan)
    async with stats.lifespan(app):
        stats.count("/", "page")
        assert "open" in repr(stats)
    assert await stored(db, schema) == {("page", "/"): 1}
    assert "closed" in repr(stats)


async def test_count_from_worker_threads_is_exact(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        app = FastAPI()

        @app.get("/work/{n}")
        def work(n: int) -> dict[str, int]:  # FastAPI runs it in a worker thread
            for _ in range(n):
                stats.count("unit", "business")
            return {"n": n}

        app.add_middleware(UsageMiddleware, stats=stats)
        transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def hit(n: int) -> None:
                assert (await client.get(f"/work/{n}")).json() == {"n": n}

            async with anyio.create_task_group() as tg:
                for i in range(60):
                    tg.start_soon(hit, i % 10 * 10)
        await stats.flush()
    assert await stored(db, schema) == {
        ("business", "unit"): sum(i % 10 * 10 for i in range(60)),
        ("page", "/work/{n}"): 60,
        ("status", "2xx"): 60,
    }


async def test_periodic_flush(make_stats: StatsFactory, db: asyncpg.Connection, schema: str) -> None:
    calls = 0
    second_flush = anyio.Event()

    def hook(stats: UsageStats) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # flushes run one at a time: the first one has finished
            second_flush.set()

    async with make_stats(flush_interval=timedelta(milliseconds=100), before_flush=hook) as stats:
        stats.count("/", "page")
        with anyio.fail_after(10):
            await second_flush.wait()
        assert await stored(db, schema) == {("page", "/"): 1}


async def test_go_live_once_with_two_instances_started_together(make_stats: StatsFactory, clock: FakeClock) -> None:
    first, second = make_stats(), make_stats()
    done = anyio.Event()

    async def serve(stats: UsageStats, ready: anyio.Event) -> None:
        async with stats:  # like two workers starting at the same moment
            ready.set()
            await done.wait()

    ready = [anyio.Event(), anyio.Event()]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve, first, ready[0])
            tg.start_soon(serve, second, ready[1])
            for event in ready:
                await event.wait()
            clock.advance(days=3)
            await first.mark("deploy 1.1", "deploy")
            marks = await second.marks()
            done.set()
    assert [(m.name, m.category) for m in marks] == [("go-live", "timeline"), ("deploy 1.1", "deploy")]
    async with make_stats() as third:  # a restart does not record go-live again
        assert [m.name for m in await third.marks()] == ["go-live", "deploy 1.1"]


async def test_marks_are_aware_in_the_zone_and_oldest_first(make_stats: StatsFactory, clock: FakeClock) -> None:
    zone = ZoneInfo("America/New_York")
    clock.set(datetime(2026, 7, 4, 16, 0, tzinfo=UTC))
    async with make_stats(timezone="America/New_York") as stats:
        clock.advance(hours=2)
        await stats.mark("campaign")
        clock.advance(hours=1)
        await stats.mark("deploy", "release")
        marks = await stats.marks()
    assert [(m.name, m.category, m.at) for m in marks] == [
        ("go-live", "timeline", datetime(2026, 7, 4, 12, tzinfo=zone)),
        ("campaign", "timeline", datetime(2026, 7, 4, 14, tzinfo=zone)),
        ("deploy", "release", datetime(2026, 7, 4, 15, tzinfo=zone)),
    ]
    assert all(m.at.tzinfo is not None and m.at.utcoffset() == timedelta(hours=-4) for m in marks)


@pytest.mark.parametrize("zone_name", ["Europe/London", "America/New_York"])
async def test_counts_land_in_their_own_hour_and_day_across_midnight(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    clock.set(datetime(2026, 7, 15, 22, 30, tzinfo=zone))
    async with make_stats(timezone=zone_name) as stats:
        stats.count("/a", "page")  # 22:xx on the 15th
        stats.seen_user("alice")
        stats.seen_visitor("192.0.2.1")
        clock.advance(minutes=45)  # 23:15
        stats.count("/a", "page")
        stats.count("/b", "page")
        stats.seen_user("alice")  # same day: once
        stats.seen_user("bob")
        clock.advance(hours=1)  # 00:15 on the 16th: a new hour and a new local day
        stats.add("/a", "page", 5)
        stats.seen_user("alice")  # a new day: counted again
        await stats.flush()  # one flush, long after the first counts: each stays in its own period
        base = await stats.table("base")
        day = await stats.table("day")
        day_in_utc_order = await db.fetch(f'SELECT start FROM "{schema}".counts ORDER BY start')
    assert [(p.start, [(r.event, r.value) for r in p.rows]) for p in base.periods] == [
        (datetime(2026, 7, 16, 0, tzinfo=zone), [("/a", 5)]),
        (datetime(2026, 7, 15, 23, tzinfo=zone), [("/a", 1), ("/b", 1)]),
        (datetime(2026, 7, 15, 22, tzinfo=zone), [("/a", 1)]),
    ]
    assert all(p.start.tzinfo is not None and p.start.utcoffset() == zone.utcoffset(p.start) for p in base.periods)
    assert [p.start for p in day.periods] == [datetime(2026, 7, 16, tzinfo=zone), datetime(2026, 7, 15, tzinfo=zone)]
    today, yesterday = day.periods
    assert [(r.category, r.event, r.value, r.kind) for r in today.rows] == [
        ("page", "/a", 5, "count"),
        ("seen", "user", 1, "distinct"),
    ]
    assert [(r.category, r.event, r.value, r.kind) for r in yesterday.rows] == [
        ("page", "/a", 2, "count"),
        ("page", "/b", 1, "count"),
        ("seen", "user", 2, "distinct"),
        ("seen", "visitor", 1, "distinct"),
    ]
    assert len(day_in_utc_order) == 4
    keys = await db.fetch(f'SELECT day, count(*) AS n FROM "{schema}".seen_keys GROUP BY day ORDER BY day')
    assert [(k["day"], k["n"]) for k in keys] == [(date(2026, 7, 15), 3), (date(2026, 7, 16), 1)]


async def test_table_arguments(make_stats: StatsFactory, clock: FakeClock) -> None:
    async with make_stats() as stats:
        stats.count("/a", "page")
        stats.count("x", "api")
        clock.advance(days=1)
        stats.count("/a", "page")
        await stats.flush()
        with pytest.raises(ValueError, match="period"):
            await stats.table("week")
        with pytest.raises(ValueError, match="aware"):
            await stats.table(start=datetime(2026, 3, 10))
        only_api = await stats.table(categories=["api"])
        assert [(r.category, r.event) for p in only_api.periods for r in p.rows] == [("api", "x")]
        assert (await stats.table(categories="api")) == only_api
        later = await stats.table(start=datetime(2026, 3, 11, tzinfo=UTC))
        assert [p.start.date() for p in later.periods] == [date(2026, 3, 11)]
        earlier = await stats.table(end=datetime(2026, 3, 11, tzinfo=UTC))
        assert [p.start.date() for p in earlier.periods] == [date(2026, 3, 10)]
        big = await stats.table(minimum=2)
        assert big.periods == ()
        assert UsageConfig().schema == "usage"


async def test_counts_on_a_dst_change_day_stay_in_their_local_hour_and_day(
    make_stats: StatsFactory, clock: FakeClock
) -> None:
    zone = ZoneInfo("Europe/London")
    clock.set(datetime(2026, 3, 29, 0, 30, tzinfo=UTC))  # 00:30 GMT, half an hour before clocks go forward
    async with make_stats(timezone="Europe/London") as stats:
        stats.count("/a", "page")
        clock.advance(hours=1)  # 01:30 UTC = 02:30 BST: the 01:00 hour does not exist locally
        stats.count("/a", "page")
        stats.count("/a", "page")
        clock.set(datetime(2026, 3, 29, 23, 30, tzinfo=UTC))  # 00:30 BST on the 30th
        stats.count("/a", "page")
        await stats.flush()
        base = await stats.table("base")
        day = await stats.table("day")
    assert [(p.start, p.rows[0].value) for p in base.periods] == [
        (datetime(2026, 3, 30, 0, tzinfo=zone), 1),
        (datetime(2026, 3, 29, 2, tzinfo=zone), 2),
        (datetime(2026, 3, 29, 0, tzinfo=zone), 1),
    ]
    assert [(p.start, p.rows[0].value) for p in day.periods] == [
        (datetime(2026, 3, 30, tzinfo=zone), 1),
        (datetime(2026, 3, 29, tzinfo=zone), 3),
    ]


async def test_an_app_served_on_an_event_loop_in_another_thread(
    make_config: Any, db: asyncpg.Connection, schema: str
) -> None:
    # As under Starlette's TestClient: the UsageStats is made in one thread, and the app with its
    # lifespan runs on an event loop in another; every count must be saved at shutdown.
    stats = UsageStats(make_config())
    app = FastAPI(lifespan=stats.lifespan)

    @app.get("/things/{thing}")
    def thing(thing: str) -> dict[str, str]:
        stats.count("lookup", "business")
        return {"thing": thing}

    app.add_middleware(UsageMiddleware, stats=stats)

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for name in ("a", "b", "c"):
                    assert (await client.get(f"/things/{name}")).json() == {"thing": name}
                stats.count("direct", "business")

    await anyio.to_thread.run_sync(anyio.run, serve)
    assert await stored(db, schema) == {
        ("page", "/things/{thing}"): 3,
        ("business", "lookup"): 3,
        ("business", "direct"): 1,
        ("status", "2xx"): 3,
    }


async def test_a_flush_cancelled_after_its_commit_does_not_count_twice(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shutdown cancels a periodic flush wherever it is. Releasing a pooled connection takes a round
    # trip (asyncpg resets it), so a flush can be cancelled after its transaction committed: the
    # counts it wrote must not be given back and written again.
    async with make_stats() as stats:
        store = stats._store
        assert store is not None
        real = store.connection

        @asynccontextmanager
        async def slow_release() -> AsyncIterator[asyncpg.Connection]:
            async with real() as conn:
                yield conn
                await anyio.sleep(5)  # committed; the release is slow

        stats.add("/", "page", 3)
        monkeypatch.setattr(store, "connection", slow_release)
        with anyio.move_on_after(0.5):
            await stats.flush()
        monkeypatch.setattr(store, "connection", real)
        assert await stored(db, schema) == {("page", "/"): 3}
        await stats.flush()
    assert await stored(db, schema) == {("page", "/"): 3}


async def test_the_periodic_flush_logs_a_failure_and_retries(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    reached: dict[int, anyio.Event] = {n: anyio.Event() for n in (3, 6)}

    def hook(stats: UsageStats) -> None:  # runs before each flush attempt
        nonlocal calls
        calls += 1
        if calls in reached:
            reached[calls].set()

    with caplog.at_level(logging.WARNING, logger="usage_stats"):
        async with make_stats(flush_interval=timedelta(milliseconds=50), before_flush=hook) as stats:
            await db.execute(f'ALTER TABLE "{schema}".counts RENAME TO counts_away')
            stats.add("/", "page", 2)
            with anyio.fail_after(20):
                await reached[3].wait()  # at least two attempts failed
                assert "flush failed" in caplog.text
                await db.execute(f'ALTER TABLE "{schema}".counts_away RENAME TO counts')
                await reached[6].wait()
            assert await stored(db, schema) == {("page", "/"): 2}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "flush failed" in r.getMessage()]
    assert len(errors) == 1  # logged once, not at every retry
    assert "succeeded again" in caplog.text


async def test_maintenance_never_closes_a_day_over_this_process_own_unsaved_keys(
    make_stats: StatsFactory, clock: FakeClock
) -> None:
    # The users of 10 March are still in memory when the day is closed (the clock jumped, or the
    # database was away across midnight): this process saves them first, so they are counted.
    clock.set(datetime(2026, 3, 10, 23, 50, tzinfo=UTC))
    async with make_stats() as stats:
        stats.seen_user("late-evening")
        stats.count("/", "page")
        clock.set(datetime(2026, 3, 11, 12, 0, tzinfo=UTC))
        await stats.maintain()  # (the background maintenance may have closed the day already)
        await stats.flush()
        table = await stats.table("day")
    assert [(p.start.date(), r.event, r.value, r.kind) for p in table.periods for r in p.rows] == [
        (date(2026, 3, 10), "/", 1, "count"),
        (date(2026, 3, 10), "user", 1, "distinct"),
    ]


async def test_mark_names_are_stored_safely(make_stats: StatsFactory) -> None:
    # A NUL or an unpaired surrogate is not a reason to report the database as unavailable.
    async with make_stats() as stats:
        await stats.mark("deploy\x00v2", category="re\ud800lease")
        await stats.mark("x" * 500)
        marks = await stats.marks()
    assert [(m.name, m.category) for m in marks[1:]] == [("deployv2", "re?lease"), ("x" * 200, "timeline")]


async def test_start_and_stop_may_run_in_different_tasks(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    stats = make_stats()
    await asyncio.wait_for(stats.start(), 30)  # on Python 3.11 this runs start() in a task of its own
    stats.count("/x", "page")
    await asyncio.wait_for(stats.stop(), 30)
    assert await db.fetchval(f'SELECT value FROM "{schema}".counts WHERE event = $1', "/x") == 1
