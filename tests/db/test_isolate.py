"""The flush safety net against real refusals from PostgreSQL: rows it refuses (constraints added by
the test) are dropped and logged without their values, everything else in the flush is stored, and
the process keeps flushing and maintaining. Errors that are not about data keep every count."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import StoreUnavailableError


async def stored(db: asyncpg.Connection, schema: str) -> dict[tuple[str, str], int]:
    rows = await db.fetch(f'SELECT category, event, value FROM "{schema}".counts WHERE level = 1')
    return {(r["category"], r["event"]): r["value"] for r in rows}


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.getMessage()]


async def test_refused_count_rows_are_dropped_and_the_rest_of_the_flush_stored(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(5)
    expected: dict[tuple[str, str], int] = {}
    async with make_stats() as stats:
        await db.execute(
            f"""ALTER TABLE "{schema}".counts ADD CONSTRAINT reject_some_events CHECK (event NOT LIKE 'evil%')"""
        )
        for i in range(3000):  # more rows than one halving step, the offenders spread among them
            if i in (17, 1500, 2999):
                stats.add(f"evil-{i}", "page", 7)
                continue
            n = rng.randint(1, 9)
            stats.add(f"/e{i}", "page", n)
            expected[("page", f"/e{i}")] = n
        for i in range(300):
            stats.seen_user(f"user-{i}")
        stats.count("2xx", "status")
        expected[("status", "2xx")] = 1
        with caplog.at_level(logging.DEBUG, logger="usage_stats"):
            await stats.flush()
        assert await stored(db, schema) == expected
        assert not stats.pending  # the offenders were dropped, not kept to fail again
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 300

        lines = refusals(caplog)
        assert len(lines) == 1
        assert "refused 3 row(s)" in lines[0]
        assert "3 count row(s): CheckViolationError, SQLSTATE 23514, constraint reject_some_events" in lines[0]
        assert "evil-" not in caplog.text
        assert "/e1" not in caplog.text

        # The process goes on: later flushes (with and without another offender) and maintenance work.
        caplog.clear()
        stats.count("/e1", "page")
        stats.count("evil-again", "page")
        await stats.flush()
        stats.count("/e1", "page")
        await stats.flush()
        expected[("page", "/e1")] += 2
        assert await stored(db, schema) == expected
        assert len(refusals(caplog)) == 1

        clock.advance(days=1, hours=1)
        assert await stats.maintain() == [clock.now.date() - timedelta(days=1)]
        day = (await stats.table("day", start=clock.now - timedelta(days=2))).periods[-1]
        assert day.get("seen", "user", "distinct").value == 300  # type: ignore[union-attr]
        assert day.get("page", "evil-17") is None


async def test_refused_distinct_keys_are_dropped_and_the_others_counted(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_stats(user_ids="database") as stats:
        await db.execute(
            f"""ALTER TABLE "{schema}".seen_keys ADD CONSTRAINT reject_a_key
                CHECK (key <> convert_to('mallory', 'UTF8'))"""
        )
        for i in range(100):
            stats.seen_user(f"user-{i}")
        stats.seen_user("mallory")
        stats.count("/", "page")
        with caplog.at_level(logging.WARNING, logger="usage_stats"):
            await stats.flush()
        assert await stored(db, schema) == {("page", "/"): 1}
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 100
        assert "1 distinct key(s): CheckViolationError" in refusals(caplog)[0]
        assert "mallory" not in caplog.text

        clock.advance(days=1, hours=1)
        await stats.maintain()
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0  # raw IDs deleted
        day = (await stats.table("day", start=clock.now - timedelta(days=2))).periods[-1]
        assert day.get("seen", "user", "distinct").value == 100  # type: ignore[union-attr]


async def test_an_error_that_is_not_about_data_keeps_every_count(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement cancelled (as by a timeout) is no reason to drop rows: the flush fails whole and
    its counts are kept for the next one."""
    async with make_stats() as stats:
        await db.execute(
            f"""CREATE FUNCTION "{schema}".cancel() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'cancelled' USING ERRCODE = '57014'; END $$;
                CREATE TRIGGER cancel BEFORE INSERT ON "{schema}".counts
                FOR EACH ROW WHEN (NEW.event = 'slow') EXECUTE FUNCTION "{schema}".cancel()"""
        )
        stats.count("/", "page")
        stats.add("slow", "page", 3)
        with pytest.raises(StoreUnavailableError, match="QueryCanceled"):
            await stats.flush()
        assert stats.pending.total_counts == 4
        assert await stored(db, schema) == {}
        await db.execute(f'DROP TRIGGER cancel ON "{schema}".counts')
        await stats.flush()
        assert await stored(db, schema) == {("page", "/"): 1, ("page", "slow"): 3}
    assert not refusals(caplog)
