"""Issue 9.4: the database is unreachable when the app starts; the app starts, counts, and saves
everything once the database answers, with one `go-live` mark and one log line for the outage."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from pathlib import Path

import anyio
import asyncpg
import pytest

from tests.conftest import FakeClock
from usage_stats import ConfigError, StoreUnavailableError, UsageConfig, UsageStats

from .proxy import CuttableProxy
from .server import Load, UvicornProcess, app_env, stored_counts


async def _stored_when_there(dsn: str, schema: str) -> dict[tuple[str, str], int]:
    """The stored counts, or nothing while the schema does not exist yet."""
    try:
        return await stored_counts(dsn, schema)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return {}


async def _wait_for_counts(dsn: str, schema: str, key: tuple[str, str], n: int) -> None:
    with anyio.fail_after(60):
        while True:  # another process writes: polling the database is the only way to see it
            if (await _stored_when_there(dsn, schema)).get(key, 0) >= n:
                return
            await anyio.sleep(0.2)


async def _go_live_marks(dsn: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(f'SELECT at FROM "{schema}".marks WHERE name = $1', "go-live")
    finally:
        await conn.close()


async def test_start_without_the_database_counts_and_saves_once_it_answers(
    pg_dsn: str, schema: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="usage_stats")
    with CuttableProxy(pg_dsn) as proxy:
        proxy.cut()  # refused: PostgreSQL is restarting while the app is deployed
        config = UsageConfig(dsn=proxy.dsn, schema=schema, flush_interval=timedelta(milliseconds=100))
        stats = UsageStats(config, clock=clock)
        started_at = clock.now
        with anyio.fail_after(10):
            await stats.start()  # the old code raised StoreUnavailableError here
        for _ in range(100):
            stats.count("/a", "page")
        stats.seen_user("u1")
        stats.seen_user("u1")
        for attempt in (stats.flush(), stats.table(), stats.marks(), stats.mark("deploy")):
            with pytest.raises(StoreUnavailableError):
                await attempt
        clock.advance(minutes=5)  # go-live is when counting began, not when the database answered
        await anyio.sleep(1.6)  # the background retries (after 0.2, 0.4, 0.8 s...) all fail
        stats.count("/a", "page")
        proxy.restore()
        await _wait_for_counts(pg_dsn, schema, ("page", "/a"), 101)
        table = await stats.table("day")
        await stats.stop()
    assert await stored_counts(pg_dsn, schema) == {("page", "/a"): 101}
    assert table.periods[0].get("seen", "user", "distinct").value == 1  # type: ignore[union-attr]
    assert [r["at"] for r in await _go_live_marks(pg_dsn, schema)] == [started_at]

    # The mark is recorded once ever: a later start on the same schema keeps it.
    clock.advance(days=1)
    async with UsageStats(UsageConfig(dsn=pg_dsn, schema=schema), clock=clock):
        pass
    assert [r["at"] for r in await _go_live_marks(pg_dsn, schema)] == [started_at]

    errors = [r.getMessage() for r in caplog.records if r.name.startswith("usage_stats") and r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # one line for the outage, not one per attempt
    assert "database not ready at start" in errors[0]
    back = [r.getMessage() for r in caplog.records if "succeeded again" in r.getMessage()]
    match = re.search(r"after (\d+) failed attempts", back[0])
    assert match is not None
    assert int(match.group(1)) >= 3  # it did retry, quietly
    print(f"\ndatabase refused at start: {match.group(1)} failed attempts logged as one line; all saved")


async def test_start_with_a_hanging_database_returns_and_saves_once_it_answers(
    pg_dsn: str, schema: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="usage_stats")
    with CuttableProxy(pg_dsn) as proxy:
        proxy.freeze()  # a network black hole: connections open, nothing answers
        stats = UsageStats(UsageConfig(dsn=proxy.dsn, schema=schema, flush_interval=timedelta(seconds=1)), clock=clock)
        began = time.monotonic()
        with anyio.fail_after(60):
            await stats.start()  # waits at most START_WAIT for the first answer, then counts in memory
        print(f"\nstart() with the database hanging returned after {time.monotonic() - began:.1f} s")
        for _ in range(10):
            stats.count("/a", "page")
        proxy.thaw()
        await _wait_for_counts(pg_dsn, schema, ("page", "/a"), 10)
        await stats.stop()
    assert await stored_counts(pg_dsn, schema) == {("page", "/a"): 10}
    assert len(await _go_live_marks(pg_dsn, schema)) == 1
    ours = [r for r in caplog.records if r.name.startswith("usage_stats") and r.levelno >= logging.ERROR]
    assert all("database not ready at start" in r.getMessage() for r in ours)


@pytest.mark.slow
async def test_uvicorn_starts_and_serves_while_the_database_is_unreachable(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    with CuttableProxy(pg_dsn) as proxy:
        proxy.cut()
        env = app_env(proxy.dsn, schema, flush_interval=0.5, shutdown_timeout=5)
        server = UvicornProcess(tmp_path / "uvicorn.log", env)
        try:
            server.wait_ready()  # the old code: "Application startup failed", the process exits
            load = Load(server.url, lambda n: (f"/items/{n % 7}", {"x-user": f"user-{n % 5}"}), max_requests=300)
            await load.run(60)
            assert not load.failed, f"{len(load.failed)} requests failed"
            sent = len(load.ok)
            assert sent == 300
            restored = time.monotonic()
            proxy.restore()
            await _wait_for_counts(pg_dsn, schema, ("status", "2xx"), sent)
            saved_after = time.monotonic() - restored
            await anyio.sleep(1.5)  # a few more flushes: nothing is added twice
            stored = await stored_counts(pg_dsn, schema)
        finally:
            server.stop()
    log = server.log()
    print(f"\nuvicorn started with the database refused, served {sent} requests, all saved {saved_after:.1f} s after")
    assert stored[("page", "/items/{item_id}")] == sent
    assert stored[("status", "2xx")] == sent
    assert len(await _go_live_marks(pg_dsn, schema)) == 1
    assert log.count("database not ready at start") == 1
    assert "Application startup failed" not in log


async def _flush_until_the_database_answers(stats: UsageStats) -> Exception | None:
    """Flush until the database answers; returns the error it answered with, if any."""
    with anyio.fail_after(30):
        while True:
            try:
                await stats.flush()
                return None
            except StoreUnavailableError:
                await anyio.sleep(0.1)
            except ConfigError as exc:
                return exc


async def test_a_setting_found_wrong_only_once_the_database_answers_stops_writing_loudly(
    pg_dsn: str, schema: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with UsageStats(UsageConfig(dsn=pg_dsn, schema=schema, timezone="Pacific/Auckland"), clock=clock) as first:
        first.count("/a", "page")
    caplog.set_level(logging.INFO, logger="usage_stats")
    with CuttableProxy(pg_dsn) as proxy:
        proxy.cut()
        config = UsageConfig(dsn=proxy.dsn, schema=schema, flush_interval=timedelta(milliseconds=100))
        wrong = UsageStats(config, clock=clock)  # left at UTC next to an Auckland schema
        with anyio.fail_after(10):
            await wrong.start()  # the database cannot tell yet
        for _ in range(5):
            wrong.count("/a", "page")
        proxy.restore()
        error = await _flush_until_the_database_answers(wrong)
        assert isinstance(error, ConfigError)
        assert "timezone" in str(error)
        for attempt in (wrong.flush(), wrong.table(), wrong.mark("x"), wrong.maintain()):
            with pytest.raises(ConfigError):
                await attempt
        wrong.count("/a", "page")  # recording never raises into the app
        await anyio.sleep(0.3)  # a few flush intervals: what was recorded is discarded, not kept
        assert not wrong.pending
        await wrong.stop()
    assert await stored_counts(pg_dsn, schema) == {("page", "/a"): 1}  # nothing written by the wrong process
    refused = [r.getMessage() for r in caplog.records if "will store nothing" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].startswith("usage_stats: timezone: this process has 'UTC'")
    assert "6 counts and distinct keys were discarded" in caplog.text
