"""Values the database could not store never block a flush: refused at the call, bounded, or saturated.

The three values found to poison a process (issue 9): `add(..., 2**63)`, a 3,000-character user ID in
the `database` scheme, and "✓" on a LATIN1 database; and sums beyond bigint.
"""

from __future__ import annotations

import io
import logging
import random
import string
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
import asyncpg
import pytest

from tests.conftest import FakeClock, StatsFactory
from usage_stats import ConfigError, UsageConfig, UsageStats
from usage_stats.bounds import BIGINT_MAX, BIGINT_MIN, MAX_KEY_BYTES
from usage_stats.cli import EXIT_USAGE, main


async def stored(db: asyncpg.Connection, schema: str) -> dict[tuple[str, str], int]:
    rows = await db.fetch(f'SELECT category, event, value FROM "{schema}".counts WHERE level = 1')
    return {(r["category"], r["event"]): r["value"] for r in rows}


async def test_add_outside_64_bits_raises_at_the_call_and_flushing_goes_on(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    async with make_stats() as stats:
        stats.count("/", "page")
        with pytest.raises(ValueError, match="64-bit"):
            stats.add("bytes", "io", 2**63)
        with pytest.raises(TypeError):
            stats.add("bytes", "io", 1.5)  # type: ignore[arg-type]
        stats.add("bytes", "io", 2**63 - 1)
        await stats.flush()
        assert await stored(db, schema) == {("page", "/"): 1, ("io", "bytes"): 2**63 - 1}


async def test_sums_beyond_64_bits_saturate_in_memory_in_the_database_and_in_roll_ups(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_stats() as stats:
        for _ in range(4):
            stats.add("bytes", "io", 2**62)  # 2**64 in memory
        stats.add("debt", "io", BIGINT_MIN)
        stats.add("debt", "io", -1)
        stats.count("/", "page")
        with caplog.at_level(logging.WARNING, logger="usage_stats"):
            await stats.flush()
        assert await stored(db, schema) == {("io", "bytes"): BIGINT_MAX, ("io", "debt"): BIGINT_MIN, ("page", "/"): 1}
        assert "2 count(s) summed beyond the 64-bit range" in caplog.text

        stats.add("bytes", "io", 5)  # the stored sum would overflow: it stays at the bound
        stats.count("/", "page")
        await stats.flush()
        assert await stored(db, schema) == {("io", "bytes"): BIGINT_MAX, ("io", "debt"): BIGINT_MIN, ("page", "/"): 2}

        clock.advance(hours=2)  # another base period of the same day
        stats.add("bytes", "io", BIGINT_MAX)
        await stats.flush()
        day = (await stats.table("day")).periods[0]  # base rows summed on reading
        assert day.get("io", "bytes").value == BIGINT_MAX  # type: ignore[union-attr]

        clock.advance(days=3)  # base rows roll into day rows: a sum that saturates again
        assert await stats.maintain()
        rolled = await db.fetchval(f'SELECT value FROM "{schema}".counts WHERE level = 2 AND event = $1', "bytes")
        assert rolled == BIGINT_MAX
        stats.count("/", "page")
        await stats.flush()  # and the process goes on
        assert await db.fetchval(f'SELECT value FROM "{schema}".counts WHERE level = 1 AND event = $1', "/") == 1


def long_id(seed: int) -> str:
    """3,000 random characters: pglz cannot compress them below PostgreSQL's index row limit."""
    return "".join(random.Random(seed).choices(string.ascii_letters + string.digits, k=3000))


@pytest.mark.parametrize("scheme", ["hashed", "memory", "database"])
async def test_a_3000_character_user_id_is_stored_and_counted_exactly(
    make_stats: StatsFactory, clock: FakeClock, db: asyncpg.Connection, schema: str, scheme: str
) -> None:
    one_id = long_id(1)
    twin = one_id[:-1] + ("a" if one_id[-1] != "a" else "b")  # differs in the last character only
    wide = "🎉" * 300  # a category of the longest stored kind: 200 four-byte characters
    async with make_stats(user_ids=scheme) as one, make_stats(user_ids=scheme) as two:
        one.seen_user(one_id)
        one.seen_user(twin)
        one.seen_user("short")
        one.seen_user(one_id, category=wide)
        one.count("/", "page")
        two.seen_user(one_id)  # the same user in a second process
        await one.flush()
        await two.flush()
        sizes = [r[0] for r in await db.fetch(f'SELECT octet_length(key) FROM "{schema}".seen_keys')]
        assert sizes
        assert max(sizes) <= MAX_KEY_BYTES + 1
        keys = b"".join(r[0] for r in await db.fetch(f'SELECT key FROM "{schema}".seen_keys'))
        assert one_id[:100].encode() not in keys  # no long ID is stored as it is, in any scheme

        day = (await one.table("day")).periods[0]
        users = 4 if scheme == "memory" else 3  # `memory` counts a user once per process (documented)
        assert day.get("seen", "user", "distinct").value == users  # type: ignore[union-attr]
        assert day.get("seen", "🎉" * 200, "distinct").value == 1  # type: ignore[union-attr]
        assert day.get("page", "/").value == 1  # type: ignore[union-attr]

        clock.advance(days=1, hours=1)
        assert await one.maintain()
        closed = (await one.table("day", start=clock.now - timedelta(days=3))).periods[-1]
        assert closed.get("seen", "user", "distinct").value == users  # type: ignore[union-attr]
        assert await db.fetchval(f'SELECT count(*) FROM "{schema}".seen_keys') == 0


@pytest.fixture
async def latin1_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A LATIN1 database on the test server, dropped afterwards."""
    name = "usage_latin1_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
        parts = urlsplit(pg_dsn)
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_a_latin1_database_is_refused_at_start(latin1_dsn: str, schema: str) -> None:
    stats = UsageStats(UsageConfig(dsn=latin1_dsn, schema=schema))
    with pytest.raises(ConfigError, match="encoding LATIN1") as refused:
        await stats.start()
    assert "needs a UTF8 database" in str(refused.value)
    conn = await asyncpg.connect(latin1_dsn)
    try:  # refused before anything was created
        assert await conn.fetchval("SELECT to_regnamespace($1)", schema) is None
    finally:
        await conn.close()

    err = io.StringIO()
    status = await anyio.to_thread.run_sync(
        lambda: main(["migrate", "--dsn", latin1_dsn, "--schema", schema], stdout=io.StringIO(), stderr=err)
    )
    assert status == EXIT_USAGE
    assert "encoding LATIN1" in err.getvalue()


async def test_a_utf8_database_stores_any_name(make_stats: StatsFactory, db: asyncpg.Connection, schema: str) -> None:
    async with make_stats() as stats:
        stats.count("✓", "page")
        stats.count("😀" * 3000, "😀" * 3000)  # cut to 200 four-byte characters each: within the index limit
        await stats.mark("✓ deploy")
        await stats.flush()
        assert await stored(db, schema) == {("page", "✓"): 1, ("😀" * 200, "😀" * 200): 1}
        assert [m.name for m in await stats.marks()][-1] == "✓ deploy"


async def test_a_name_that_cannot_become_text_is_counted_as_other(
    make_stats: StatsFactory, db: asyncpg.Connection, schema: str
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    async with make_stats() as stats:
        stats.count(Unprintable(), "page")  # type: ignore[arg-type]
        stats.count(42, "page")  # type: ignore[arg-type]
        stats.count("/", "page")
        await stats.flush()
        assert await stored(db, schema) == {("page", "<other>"): 1, ("page", "42"): 1, ("page", "/"): 1}
